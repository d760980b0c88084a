"""Train one configuration and track it in MLflow: `python -m fashion.train [overrides]`.

A sweep runs with `-m`, for example `python -m fashion.train -m model=model_1,model_2`;
every job of a sweep becomes one MLflow run in the same experiment, tagged with the sweep.
"""

import logging
import tempfile
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from fashion import device, tracking
from fashion.augment import AugmentSettings
from fashion.data import DataError
from fashion.datamodule import FashionDataModule
from fashion.models import count_trainable, create_network
from fashion.module import Classifier

log = logging.getLogger("fashion.train")

CONFIG_DIR = str(tracking.PROJECT_ROOT / "conf")


def resolve_settings(cfg: DictConfig) -> None:
    """Replace every "auto" with the value this machine will use, so that the logged
    params are the values actually used."""
    accelerator = device.resolve_accelerator(cfg.trainer.accelerator)
    cfg.trainer.accelerator = accelerator
    cfg.trainer.precision = device.resolve_precision(cfg.trainer.precision, accelerator)
    cfg.channels_last = device.resolve_channels_last(cfg.channels_last, cfg.model.arch,
                                                     accelerator)
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
    net = create_network(cfg.model.arch, datamodule.num_classes, dropout=cfg.model.dropout,
                         batch_norm=cfg.model.batch_norm)
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


def sweep_tag() -> str:
    """The sweep directory of a multirun job, or the run directory of a single run."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return str(hydra_cfg.sweep.dir)
    return str(hydra_cfg.run.dir)


def train(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    resolve_settings(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = build(cfg)
    datamodule.load()
    trainable = count_trainable(module.net)

    client = tracking.get_client(cfg.tracking_uri)
    experiment = tracking.experiment_id(client, cfg.experiment)
    run = client.create_run(experiment, run_name=cfg.run_name, tags={
        "model": cfg.model.name,
        "task": cfg.data.task,
        "seed": str(cfg.seed),
        "sweep": sweep_tag(),
        "git_commit": tracking.git_commit(),
        "output_dir": str(output_dir),
        "mlflow.source.name": "fashion.train",
    })
    run_id = run.info.run_id
    log.info("MLflow run %s in experiment %r at %s", run_id, cfg.experiment, client.tracking_uri)

    with tracking.tracked_run(client, run_id):
        resolved = OmegaConf.to_container(cfg, resolve=True)
        tracking.log_params(client, run_id, tracking.flatten(resolved)
                            | {"trainable_params": str(trainable)})
        client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")

        trainer = L.Trainer(
            **trainer_arguments(cfg),
            default_root_dir=output_dir,
            logger=False,
            callbacks=[
                tracking.EpochMetricsCallback(client, run_id),
                ModelCheckpoint(dirpath=output_dir / "checkpoints", save_last=True,
                                save_top_k=0),
            ],
        )
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        fit_seconds = time.perf_counter() - started
        trainer.test(module, datamodule=datamodule, verbose=False)

        from fashion.report import log_test_report  # imports matplotlib only when needed

        metrics = log_test_report(client, run_id, module, datamodule)
        epochs = max(trainer.current_epoch, 1)
        tracking.log_metrics(client, run_id, {
            "time/fit_seconds": fit_seconds,
            "time/epoch_seconds": fit_seconds / epochs,
        })
        with tempfile.TemporaryDirectory() as scratch:
            weights = Path(scratch) / "state_dict.pt"
            torch.save(module.net.state_dict(), weights)
            client.log_artifact(run_id, str(weights), "model")
    log.info("%s: test/acc %.4f, test/loss %.4f (run %s)", cfg.run_name,
             metrics["test/acc"], metrics["test/loss"], run_id)
    return metrics


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = train(cfg, output_dir)
    except DataError as error:
        log.error("%s", error)
        raise SystemExit(2) from None
    return metrics["test/acc"]  # the objective a Hydra sweeper maximises


if __name__ == "__main__":
    main()
