"""Config schema: Hydra rejects misspelt keys and wrong types, `validate` the rest."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from fashion import schema, validation
from fashion.augment import AugmentSettings
from fashion.models import ARCHITECTURES, create_network
from fashion.schema import ConfigError
from fashion.tracking import PROJECT_ROOT
from fashion.validation import validate

MODELS = sorted(path.stem for path in (PROJECT_ROOT / "conf" / "model").glob("*.yaml"))
AUGMENTS = sorted(path.stem for path in (PROJECT_ROOT / "conf" / "augment").glob("*.yaml"))


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def problems_of(*overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(compose_config(*overrides))
    lines = str(caught.value).splitlines()
    assert lines == caught.value.problems
    return lines


def error_chain(error: BaseException | None) -> str:
    """Messages of an exception and of every exception it was raised from."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


def test_study_config_is_valid() -> None:
    validate(compose_config())


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_is_valid(model: str) -> None:
    validate(compose_config(f"model={model}"))


@pytest.mark.parametrize("augment", AUGMENTS)
def test_every_augment_config_is_valid(augment: str) -> None:
    validate(compose_config(f"augment={augment}"))


@pytest.mark.parametrize(
    "overrides",
    [
        ("data.task=fine",),
        ("trainer.precision=32", "trainer.accelerator=cpu"),
        ("trainer.max_epochs=-1", "trainer.max_steps=100"),
        ("trainer.limit_train_batches=20", "trainer.limit_val_batches=0.5"),
        ("trainer.devices=[0,1]", "trainer.max_time={days:1}"),
        ("channels_last=false", "threads=2", "resume=auto", "sweep_id=study-1"),
        ("+trainer.gradient_clip_algorithm=norm",),
    ],
)
def test_valid_overrides_pass(overrides: tuple[str, ...]) -> None:
    validate(compose_config(*overrides))


def test_group_fields_are_typed() -> None:
    cfg = compose_config()
    assert OmegaConf.get_type(cfg) is schema.Config
    assert OmegaConf.get_type(cfg.trainer) is schema.TrainerConfig
    assert OmegaConf.get_type(cfg.optim) is schema.OptimConfig


def test_misspelt_key_rejected_by_hydra() -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config("trainer.max_epoch=3")
    message = error_chain(caught.value)
    assert "trainer.max_epoch" in message
    assert "not in 'TrainerConfig'" in message


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs", "'abc'"),
        ("optim.lr=fast", "optim.lr", "'fast'"),
        ("data.verify=maybe", "data.verify", "'maybe'"),
    ],
)
def test_wrong_type_rejected_by_hydra(override: str, key: str, value: str) -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(override)
    message = error_chain(caught.value)
    assert f"full_key: {key}" in message
    assert value in message


def test_unknown_model_lists_options() -> None:
    with pytest.raises(MissingConfigException) as caught:
        compose_config("model=model_9")
    message = str(caught.value)
    assert "model/model_9" in message
    for model in MODELS:
        assert model in message


@pytest.mark.parametrize(
    ("override", "line_start", "valid"),
    [
        ("+foo=1", "foo=1: unknown key", "seed, experiment"),
        ("+model.extra=2", "model.extra=2: unknown key", "name, arch, dropout"),
        ("+augment.blur_p=0.5", "augment.blur_p=0.5: unknown key", "hflip_p"),
        ("+optim.momentum=0.9", "optim.momentum=0.9: unknown key", "name, lr, weight_decay"),
        ("+trainer.not_an_arg=1", "trainer.not_an_arg=1: unknown key", "lightning.Trainer"),
        ("+trainer.logger=false", "trainer.logger=False: fashion.train sets", "remove it"),
    ],
)
def test_added_key_nothing_reads(override: str, line_start: str, valid: str) -> None:
    (line,) = problems_of(override)
    assert line.startswith(line_start)
    assert valid in line


@pytest.mark.parametrize(
    ("override", "line_start", "choices"),
    [
        ("data.task=coarse", "data.task='coarse': ", "fine, superclass"),
        ("model.arch=rnn", "model.arch='rnn': ", "mlp, cnn"),
        ("optim.name=rmsprop", "optim.name='rmsprop': ", "adam, adamw, sgd"),
        ("trainer.precision=bf16", "trainer.precision='bf16': ", "auto, 32-true"),
        ("trainer.precision=16", "trainer.precision=16: ", "16-mixed"),
        (
            "trainer.accelerator=xpu",
            "trainer.accelerator='xpu': ",
            "auto, cpu, gpu, cuda, mps, tpu",
        ),
        ("channels_last=sometimes", "channels_last='sometimes': ", "auto, true, false"),
    ],
)
def test_unknown_name_lists_choices(override: str, line_start: str, choices: str) -> None:
    (line,) = problems_of(override)
    assert line.startswith(line_start)
    assert choices in line


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optim.lr=-0.1"], "optim.lr=-0.1: must be > 0"),
        (["optim.lr=0"], "optim.lr=0.0: must be > 0"),
        (["optim.weight_decay=-1e-4"], "optim.weight_decay=-0.0001: must be >= 0"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be >= 1, or -1"),
        (["trainer.max_epochs=-2"], "trainer.max_epochs=-2: must be >= 1, or -1"),
        (["trainer.max_steps=-5"], "trainer.max_steps=-5: must be >= -1"),
        (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5: must be in [0.0"),
        (["trainer.limit_val_batches=-3"], "trainer.limit_val_batches=-3: must be >= 0"),
        (["model.dropout=1.0"], "model.dropout=1.0: must be in [0, 1)"),
        (["model.dropout=-0.1"], "model.dropout=-0.1: must be in [0, 1)"),
        (["model.l2=-1e-3"], "model.l2=-0.001: must be >= 0"),
        (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
        (["data.eval_batch_size=0"], "data.eval_batch_size=0: must be >= 1"),
        (["data.val_size=-1"], "data.val_size=-1: must be in [0, 60000)"),
        (["data.val_size=60000"], "data.val_size=60000: must be in [0, 60000)"),
        (["augment.hflip_p=1.5"], "augment.hflip_p=1.5: must be in [0, 1]"),
        (["augment.cutout_p=-0.5"], "augment.cutout_p=-0.5: must be in [0, 1]"),
        (["augment.rotate_degrees=-15"], "augment.rotate_degrees=-15.0: must be >= 0"),
        (["augment.crop_padding=-1"], "augment.crop_padding=-1: must be >= 0"),
        (["augment.cutout_size=-8"], "augment.cutout_size=-8: must be >= 0"),
        (["threads=0"], "threads=0: must be >= 1"),
    ],
)
def test_out_of_range_names_key_and_rule(overrides: list[str], expected: str) -> None:
    (line,) = problems_of(*overrides)
    assert line.startswith(expected)


def test_l2_without_layers_rejected() -> None:
    (line,) = problems_of("model=model_1", "model.l2=0.1")
    assert line.startswith("model.l2_layers=[]: empty, so model.l2=0.1 penalizes nothing")
    assert "fc1, fc2" in line


def test_l2_layer_missing_from_arch() -> None:
    (line,) = problems_of("model=model_3", "model.l2_layers=[fc1,conv3]")
    assert line.startswith("model.l2_layers=['fc1', 'conv3']: model.arch=cnn has no layer conv3")
    assert "conv1, conv2, fc1, fc2" in line


def test_mlp_rejects_cnn_only_settings() -> None:
    lines = problems_of("model=model_6", "model.arch=mlp")
    assert len(lines) == 3
    assert lines[0].startswith(
        "model.l2_layers=['conv2', 'fc1', 'fc2']: model.arch=mlp has no "
        "layer conv2; choose from fc1, fc2"
    )
    assert lines[1].startswith("model.dropout=0.25: model.arch=mlp has no dropout")
    assert lines[2].startswith("model.batch_norm=True: model.arch=mlp has no batch norm")


def test_every_problem_gets_a_line() -> None:
    lines = problems_of("+foo=1", "optim.lr=-1", "data.task=coarse", "augment.vflip_p=2")
    assert len(lines) == 4
    assert lines[0].startswith("foo=1:")
    assert any(line.startswith("optim.lr=-1.0:") for line in lines)
    assert any(line.startswith("data.task='coarse':") for line in lines)
    assert any(line.startswith("augment.vflip_p=2.0:") for line in lines)


def test_missing_value_named() -> None:
    (line,) = problems_of("model.arch=???")
    assert line.startswith("model.arch=???: missing")


def test_unresolvable_interpolation_named() -> None:
    (line,) = problems_of("experiment=${nope}")
    assert line.startswith("experiment='${nope}': interpolation failed to resolve")


def test_untyped_config_checked_against_schema() -> None:
    # a config rebuilt from a logged YAML file has no dataclass types
    plain = OmegaConf.create(OmegaConf.to_container(compose_config()))
    validate(plain)

    plain.model.extra = 1
    plain.optim.lr = "fast"
    del plain.data.batch_size
    with pytest.raises(ConfigError) as caught:
        validate(plain)
    assert caught.value.problems == [
        "data.batch_size=???: missing; set it in its config file or as an override",
        "model.extra=1: unknown key, so nothing would read it; remove it or use a valid key under "
        "model: name, arch, dropout, batch_norm, l2, l2_layers",
        "optim.lr='fast': must be a number",
    ]


def test_register_configs_is_idempotent() -> None:
    schema.register_configs()
    schema.register_configs()
    validate(compose_config("model=model_1"))


def test_augment_schema_matches_settings() -> None:
    # fashion.train builds AugmentSettings(**cfg.augment)
    fields = [field.name for field in dataclasses.fields(schema.AugmentConfig)]
    assert fields == [field.name for field in dataclasses.fields(AugmentSettings)]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_l2_layers_match_networks(arch: str) -> None:
    assert validation.L2_LAYERS[arch] == create_network(arch, 3).l2_layers


def test_train_rejects_bad_config_before_mlflow(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashion.train",
            "optim.lr=-1",
            f"tracking_uri=sqlite:///{db}",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "optim.lr=-1.0: must be > 0" in output
    assert "Traceback" not in output

    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        assert client.search_runs(experiments) == []
