"""Typed schema of the Hydra config.

Importing this module registers `Config` in Hydra's ConfigStore as `base_config`, the first
entry of conf/config.yaml's defaults list. Every config group then merges onto a typed
dataclass, so Hydra rejects a misspelt key or a value of the wrong type while composing.
`fashion.validation` checks what types cannot express.

The YAML files hold the default values. The dataclass defaults mirror them, and MISSING
marks a value that a config group must provide.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SCHEMA_NAME = "base_config"


@dataclass
class DataConfig:
    root: str | None = None
    task: str = "superclass"
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_size: int = 6000
    split_seed: int = 0
    verify: bool = True
    download: bool = True
    on_device: bool = True


@dataclass
class ModelConfig:
    name: str = MISSING
    arch: str = MISSING
    dropout: float = 0.0
    batch_norm: bool = False
    l2: float = 0.0
    l2_layers: list[str] = field(default_factory=list)


@dataclass
class AugmentConfig:
    """The fields of fashion.augment.AugmentSettings, which is built from this group."""

    hflip_p: float = 0.0
    vflip_p: float = 0.0
    rotate_p: float = 0.0
    rotate_degrees: float = 0.0
    crop_p: float = 0.0
    crop_padding: int = 0
    cutout_p: float = 0.0
    cutout_size: int = 0


@dataclass
class TrainerConfig:
    """lightning.Trainer arguments; None leaves Lightning's default."""

    accelerator: str = "auto"
    devices: Any = 1  # an int, "auto", or a list of device indices
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Any = "auto"  # a string such as "bf16-mixed", or the int 32
    max_epochs: int | None = 10
    min_epochs: int | None = None
    max_steps: int = -1
    max_time: Any = None  # "DD:HH:MM:SS" or a mapping of timedelta arguments
    limit_train_batches: Any = None  # an int counts batches, a float is a fraction
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int | None = 0
    log_every_n_steps: int | None = 50
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    deterministic: Any = False  # a bool or "warn"
    benchmark: bool | None = None
    enable_progress_bar: bool | None = True
    enable_model_summary: bool | None = True
    enable_checkpointing: bool | None = True
    fast_dev_run: Any = False  # a bool or a number of batches
    overfit_batches: Any = 0.0
    detect_anomaly: bool = False


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    augment: AugmentConfig = MISSING
    trainer: TrainerConfig = MISSING
    seed: int = 0
    experiment: str = MISSING
    run_name: str = MISSING
    tracking_uri: str | None = None
    threads: int | None = None
    channels_last: Any = "auto"  # "auto" or a bool
    compile: bool = False
    resume: str | None = None  # an MLflow run id, or "auto"
    sweep_id: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)


class ConfigError(ValueError):
    """Invalid config: one line per problem, `key=value: what is wrong and what is valid`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def register_configs() -> None:
    """Store `Config` as `base_config`. Storing again replaces the entry, so repeats are safe."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


register_configs()
