"""Train one configuration and track it in MLflow: `python -m fashion.train [overrides]`.

A sweep runs with `-m`, for example `python -m fashion.train -m model=model_1,model_2`;
every job of a sweep becomes one MLflow run in the same experiment, tagged with the sweep.
"""

import logging
import signal
import tempfile
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf

from fashion import device, resume, tracking
from fashion.augment import AugmentSettings
from fashion.data import DataError
from fashion.datamodule import FashionDataModule
from fashion.models import count_trainable, create_network
from fashion.module import Classifier, NonFiniteLossError
from fashion.schema import ConfigError  # importing registers the schema
from fashion.validation import validate

log = logging.getLogger("fashion.train")

CONFIG_DIR = str(tracking.PROJECT_ROOT / "conf")


def resolve_settings(cfg: DictConfig) -> None:
    """Replace every "auto" with the value this machine will use, so that the logged
    params are the values actually used."""
    accelerator = device.resolve_accelerator(cfg.trainer.accelerator)
    cfg.trainer.accelerator = accelerator
    cfg.trainer.precision = device.resolve_precision(cfg.trainer.precision, accelerator)
    cfg.channels_last = device.resolve_channels_last(cfg.channels_last, cfg.model.arch, accelerator)
    cfg.threads = device.configure_threads(cfg.threads)


def build(cfg: DictConfig) -> tuple[FashionDataModule, Classifier]:
    datamodule = FashionDataModule(
        root=cfg.data.root,
        task=cfg.data.task,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        val_size=cfg.data.val_size,
        split_seed=cfg.data.split_seed,
        shuffle_seed=cfg.seed,
        verify=cfg.data.verify,
        download=cfg.data.download,
        augment=AugmentSettings(**cfg.augment),
        channels_last=cfg.channels_last,
        data_on_device=cfg.data.on_device,
    )
    net = create_network(
        cfg.model.arch,
        datamodule.num_classes,
        dropout=cfg.model.dropout,
        batch_norm=cfg.model.batch_norm,
    )
    module = Classifier(
        net,
        datamodule.class_names,
        lr=cfg.optim.lr,
        optimizer=cfg.optim.name,
        weight_decay=cfg.optim.weight_decay,
        l2=cfg.model.l2,
        l2_layers=list(cfg.model.l2_layers),
        channels_last=cfg.channels_last,
    )
    if cfg.compile:
        module.net = torch.compile(module.net)
    return datamodule, module


def trainer_arguments(cfg: DictConfig) -> dict:
    return {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if v is not None}


def sweep_tag(cfg: DictConfig) -> str:
    """sweep_id if set, else the sweep directory of a multirun job or a single run's folder."""
    if cfg.get("sweep_id"):
        return str(cfg.sweep_id)
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return str(hydra_cfg.sweep.dir)
    return str(hydra_cfg.run.dir)


def start_run(client: MlflowClient, experiment: str, cfg: DictConfig, tags: dict) -> str:
    run = client.create_run(experiment, run_name=cfg.run_name, tags=tags)
    return run.info.run_id


def skip_finished(client: MlflowClient, run: Run, sweep: str) -> dict[str, float]:
    client.set_tag(run.info.run_id, "sweep", sweep)  # the re-run sweep includes this run
    log.info("%s already finished as run %s; skipped", run.info.run_name, run.info.run_id)
    return dict(run.data.metrics)


def train(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    client = tracking.get_client(cfg.tracking_uri)
    experiment = tracking.experiment_id(client, cfg.experiment)
    fingerprint = resume.config_hash(cfg)
    sweep = sweep_tag(cfg)
    previous = resume.find_run(client, experiment, cfg) if cfg.resume else None
    if previous is not None:
        if previous.data.tags.get("mlflow.source.name") != "fashion.train":
            raise resume.ResumeError(
                f"resume={cfg.resume}: run {previous.info.run_id} is not a training run of "
                "fashion.train; pass the id of a training run"
            )
        if previous.info.status == "FINISHED":
            return skip_finished(client, previous, sweep)
        resume_mode, requested = cfg.resume, cfg
        cfg = resume.load_config(client, previous)
        cfg.resume = resume_mode
        resume.warn_ignored_overrides(requested, cfg)
        output_dir = Path(previous.data.tags["output_dir"])

    resolve_settings(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = build(cfg)
    datamodule.load()  # bad data fails here, before a run is created
    trainer = build_trainer(cfg, client, output_dir)
    trainable = count_trainable(module.net)

    if previous is None:
        run_id = start_run(
            client,
            experiment,
            cfg,
            tags={
                "model": cfg.model.name,
                "task": cfg.data.task,
                "seed": str(cfg.seed),
                "sweep": sweep,
                "config_hash": fingerprint,
                "git_commit": tracking.git_commit(),
                "hardware": device.describe(cfg.trainer.accelerator),
                "output_dir": str(output_dir.absolute()),
                "mlflow.source.name": "fashion.train",
            },
        )
        checkpoint = None
    else:
        run_id = previous.info.run_id
        checkpoint = resume.reopen(client, previous)
        client.set_tag(run_id, "sweep", sweep)
    log.info("MLflow run %s in experiment %r at %s", run_id, cfg.experiment, client.tracking_uri)

    with tracking.tracked_run(client, run_id):
        if checkpoint is None:
            resolved = OmegaConf.to_container(cfg, resolve=True)
            tracking.log_params(
                client, run_id, tracking.flatten(resolved) | {"trainable_params": str(trainable)}
            )
            client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        metrics = fit_and_test(trainer, client, run_id, datamodule, module, checkpoint)
    log.info(
        "%s: test/acc %.4f, test/loss %.4f (run %s)",
        cfg.run_name,
        metrics["test/acc"],
        metrics["test/loss"],
        run_id,
    )
    return metrics


def build_trainer(cfg: DictConfig, client: MlflowClient, output_dir: Path) -> L.Trainer:
    """Build the Trainer before any run exists, so a bad trainer.* value costs no run."""
    try:
        return L.Trainer(
            **trainer_arguments(cfg),
            default_root_dir=output_dir,
            logger=False,
            callbacks=[
                tracking.EpochMetricsCallback(client),
                resume.RandomStateCallback(),
                # saved after the epoch's metrics are logged, so a resumed run never
                # misses an epoch in its curves
                ModelCheckpoint(
                    dirpath=output_dir / "checkpoints",
                    filename="last",
                    save_top_k=1,
                    enable_version_counter=False,
                    save_on_train_epoch_end=True,
                ),
            ],
        )
    except (MisconfigurationException, ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(
            [f"trainer settings rejected by Lightning: {message}; check the trainer.* overrides"]
        ) from None


def fit_and_test(
    trainer: L.Trainer,
    client: MlflowClient,
    run_id: str,
    datamodule: FashionDataModule,
    module: Classifier,
    checkpoint: Path | None,
) -> dict[str, float]:
    epoch_metrics = next(
        c for c in trainer.callbacks if isinstance(c, tracking.EpochMetricsCallback)
    )
    epoch_metrics.bind(run_id)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
    fit_seconds = time.perf_counter() - started
    trainer.test(module, datamodule=datamodule, verbose=False)

    from fashion.report import log_test_report  # imports matplotlib only when needed

    metrics = log_test_report(client, run_id, module, datamodule)
    tracking.log_metrics(
        client,
        run_id,
        {
            "time/fit_seconds": fit_seconds,
            "time/epoch_seconds": fit_seconds / max(epoch_metrics.epochs_trained, 1),
        },
    )
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "state_dict.pt"
        net = getattr(module.net, "_orig_mod", module.net)  # unwrap torch.compile
        torch.save(net.state_dict(), weights)
        client.log_artifact(run_id, str(weights), "model")
    return metrics


def interrupt_on_sigterm(signum: int, frame: object) -> None:
    # a scheduler's SIGTERM (preemption, `kill`) closes the run as KILLED, like Ctrl-C
    raise KeyboardInterrupt


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate(cfg)
        metrics = train(cfg, output_dir)
    except (ConfigError, DataError, resume.ResumeError, NonFiniteLossError) as error:
        log.error("%s", error)
        raise SystemExit(2) from None
    return metrics.get("test/acc", float("nan"))  # the objective a Hydra sweeper maximises


if __name__ == "__main__":
    main()
