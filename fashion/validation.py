"""Checks on a composed config that run before any MLflow run starts.

They cover what the typed schema cannot express: names from a fixed set, ranges,
combinations of values, and keys added with `+` that nothing reads.
"""

import dataclasses
import inspect
import typing
from functools import cache
from typing import Any

import lightning as L
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from fashion.data import OFFICIAL_COUNTS, TASKS
from fashion.device import PRECISIONS
from fashion.models import ARCHITECTURES, MLP, ConvNet
from fashion.module import OPTIMIZERS
from fashion.schema import Config, ConfigError, TrainerConfig

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
L2_LAYERS = {"mlp": MLP.l2_layers, "cnn": ConvNet.l2_layers}
# fashion.train passes these to lightning.Trainer itself, so trainer.<name> would clash
TRAINER_ARGS_SET_BY_TRAIN = ("default_root_dir", "logger", "callbacks")
TRAIN_IMAGES = OFFICIAL_COUNTS["train"]

PROBABILITIES = ("hflip_p", "vflip_p", "rotate_p", "crop_p", "cutout_p")
BATCH_COUNTS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches")
# (full key, choices, what a valid value is)
CHOICES = [
    ("data.task", tuple(TASKS), "a task of fashion.data"),
    ("model.arch", ARCHITECTURES, "an architecture of fashion.models"),
    ("optim.name", OPTIMIZERS, "an optimizer of fashion.module"),
    ("trainer.accelerator", ACCELERATORS, "an accelerator Lightning knows"),
]
# (full key, test a number must pass, the rule that the message states)
RANGES = [
    ("data.batch_size", lambda v: v >= 1, "must be >= 1"),
    ("data.eval_batch_size", lambda v: v >= 1, "must be >= 1"),
    (
        "data.val_size",
        lambda v: 0 <= v < TRAIN_IMAGES,
        f"must be in [0, {TRAIN_IMAGES}) because the training split has {TRAIN_IMAGES} images",
    ),
    ("model.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("model.l2", lambda v: v >= 0, "must be >= 0"),
    *(
        (f"augment.{name}", lambda v: 0 <= v <= 1, "must be in [0, 1] because it is a probability")
        for name in PROBABILITIES
    ),
    *(
        (f"augment.{name}", lambda v: v >= 0, "must be >= 0")
        for name in ("rotate_degrees", "crop_padding", "cutout_size")
    ),
    ("optim.lr", lambda v: v > 0, "must be > 0"),
    ("optim.weight_decay", lambda v: v >= 0, "must be >= 0"),
    ("trainer.max_epochs", lambda v: v == -1 or v >= 1, "must be >= 1, or -1 for no limit"),
    ("trainer.max_steps", lambda v: v >= -1, "must be >= -1, where -1 is no limit"),
    ("trainer.accumulate_grad_batches", lambda v: v >= 1, "must be >= 1"),
    ("trainer.check_val_every_n_epoch", lambda v: v is None or v >= 1, "must be >= 1"),
    ("threads", lambda v: v >= 1, "must be >= 1, or null for PyTorch's default"),
]


@cache
def lightning_trainer_arguments() -> frozenset[str]:
    """Names that `trainer.<name>` may add with `+`: lightning.Trainer's own arguments."""
    names = inspect.signature(L.Trainer.__init__).parameters
    return frozenset(names) - {"self", *TRAINER_ARGS_SET_BY_TRAIN}


def validate(cfg: DictConfig) -> None:
    """Check a composed config and raise ConfigError listing every problem found.

    Works on a config composed without the schema too, because keys are compared with the
    dataclasses here. Types are then left unchecked, except that numbers must be numbers.
    """
    report = _Report()
    _collect(cfg, Config, "", report)
    _check_choices(report)
    _check_ranges(report)
    _check_model(report)
    _check_batch_counts(report)
    if report.problems:
        raise ConfigError(report.problems)


class _Report:
    """The config flattened to full keys, and the problems found so far."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.problems: list[str] = []

    def add(self, key: str, value: Any, rule: str) -> None:
        self.problems.append(f"{key}={value!r}: {rule}")

    def fail(self, key: str, rule: str) -> None:
        self.add(key, self.values[key], rule)


def _collect(node: DictConfig, schema: type, prefix: str, report: _Report) -> None:
    """Flatten `node` into `report.values` by full key, following the schema's fields.

    Report keys that the schema lacks, missing values and interpolations that fail to resolve.
    """
    types = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    raw = OmegaConf.to_container(node, resolve=False)
    is_trainer = schema is TrainerConfig
    extras_allowed = lightning_trainer_arguments() if is_trainer else frozenset()

    for key in node:
        if key in names or key in extras_allowed or (not prefix and key == "hydra"):
            continue
        if is_trainer and key in TRAINER_ARGS_SET_BY_TRAIN:
            rule = "fashion.train sets this lightning.Trainer argument itself; remove it"
        else:
            where = f"under {prefix[:-1]}" if prefix else "at the top level"
            others = ", or another lightning.Trainer argument" if is_trainer else ""
            rule = (
                f"unknown key, so nothing would read it; remove it or use a valid key "
                f"{where}: {', '.join(names)}{others}"
            )
        report.add(prefix + key, raw[key], rule)

    for name in names:
        key = prefix + name
        if name not in node or OmegaConf.is_missing(node, name):
            report.problems.append(
                f"{key}=???: missing; set it in its config file or as an override"
            )
            continue
        try:
            value = node[name]
            if isinstance(value, DictConfig) and dataclasses.is_dataclass(types[name]):
                _collect(value, types[name], key + ".", report)
                continue
            if isinstance(value, DictConfig | ListConfig):
                value = OmegaConf.to_container(value, resolve=True)
        except InterpolationResolutionError as error:
            reason = str(error).splitlines()[0]
            report.add(key, raw[name], f"interpolation failed to resolve: {reason}")
            continue
        report.values[key] = value


def _check_choices(report: _Report) -> None:
    # a key absent from report.values was reported as missing or unresolvable
    for key, choices, description in CHOICES:
        if key in report.values and report.values[key] not in choices:
            report.fail(key, f"not {description}; choose one of {', '.join(choices)}")

    precision = report.values.get("trainer.precision", "auto")
    if str(precision) not in PRECISIONS:
        report.fail(
            "trainer.precision",
            f"not a precision Lightning knows; choose one of {', '.join(PRECISIONS)}",
        )
    channels_last = report.values.get("channels_last", "auto")
    if channels_last != "auto" and not isinstance(channels_last, bool):
        report.fail("channels_last", "choose one of auto, true, false")


def _check_ranges(report: _Report) -> None:
    # null passes, because the typed schema rejects it where a field is not optional
    for key, test, rule in RANGES:
        value = report.values.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            report.fail(key, "must be a number")
        elif not test(value):
            report.fail(key, rule)


def _check_model(report: _Report) -> None:
    arch = report.values.get("model.arch")
    if arch not in ARCHITECTURES:
        return

    allowed = ", ".join(L2_LAYERS[arch])
    layers = report.values.get("model.l2_layers", ())
    l2 = report.values.get("model.l2")
    unknown = [name for name in layers if name not in L2_LAYERS[arch]]
    if unknown:
        report.fail(
            "model.l2_layers",
            f"model.arch={arch} has no layer {', '.join(unknown)}; choose from {allowed}",
        )
    elif not layers and isinstance(l2, int | float) and l2 > 0:
        report.fail(
            "model.l2_layers",
            f"empty, so model.l2={l2} penalizes nothing; "
            f"name layers from {allowed} or set model.l2=0",
        )

    if arch == "mlp" and report.values.get("model.dropout"):
        report.fail(
            "model.dropout",
            "model.arch=mlp has no dropout; set model.dropout=0 or use model.arch=cnn",
        )
    if arch == "mlp" and report.values.get("model.batch_norm"):
        report.fail(
            "model.batch_norm",
            "model.arch=mlp has no batch norm; set model.batch_norm=false or use model.arch=cnn",
        )


def _check_batch_counts(report: _Report) -> None:
    # Lightning reads an int as a number of batches and a float as a fraction of them
    for name in BATCH_COUNTS:
        key = f"trainer.{name}"
        value = report.values.get(key)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int) and value < 0:
            report.fail(key, "must be >= 0 batches")
        elif isinstance(value, float) and not 0 <= value <= 1:
            report.fail(key, "must be in [0.0, 1.0] as a fraction; use an int to count batches")
        elif not isinstance(value, int | float):
            report.fail(key, "must be an int (batches), a float in [0.0, 1.0] or null")
