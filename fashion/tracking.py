"""MLflow tracking: where the store is, one run per training job, per-epoch metrics."""

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.experimental.callback import Callback
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STORE_DIR = PROJECT_ROOT / "mlruns"
EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "train/l2_penalty")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value


def tracking_uri(explicit: str | None = None) -> str:
    """Return an explicit URI, else MLFLOW_TRACKING_URI, else the SQLite store of the project."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    STORE_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{STORE_DIR / 'mlflow.db'}"


def get_client(uri: str | None = None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri(uri))


def experiment_id(client: MlflowClient, name: str) -> str:
    """Return the experiment's id, creating it if needed, also when parallel jobs race."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:///"):
        # anchor artifacts beside the database, whatever the working directory
        database = Path(client.tracking_uri.removeprefix("sqlite:///"))
        location = (database.parent / "artifacts" / name.replace("/", "_")).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; lists stay whole, as their string form."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(
    client: MlflowClient, run_id: str, values: Mapping[str, float], step: int = 0
) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])


def was_interrupted(error: BaseException) -> bool:
    """True for Ctrl-C or SIGTERM, also when Lightning turned it into sys.exit(1)."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False


@contextlib.contextmanager
def tracked_run(client: MlflowClient, run_id: str) -> Iterator[str]:
    """Close the run as FINISHED, FAILED or KILLED, with the reason as a tag.

    Whatever the run logged before a failure stays in the store; the exception goes on.
    A process killed with SIGKILL cannot close its run: it stays RUNNING until resumed.
    """
    try:
        yield run_id
    except BaseException as error:
        if was_interrupted(error):
            status, reason = RunStatus.KILLED, "interrupted by Ctrl-C or SIGTERM"
        else:
            status, reason = RunStatus.FAILED, f"{type(error).__name__}: {error}"
        client.set_tag(run_id, "failure_reason", reason.splitlines()[0][:500])
        client.set_terminated(run_id, RunStatus.to_string(status))
        log.error("run %s marked %s: %s", run_id, RunStatus.to_string(status), reason)
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


class PrepareStore(Callback):
    """Hydra callback: create the store and the experiment once, in the launching process,
    so that parallel jobs do not race to initialise a fresh SQLite database."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        experiment_id(get_client(config.tracking_uri), config.experiment)


class EpochMetricsCallback(L.Callback):
    """Log each epoch's aggregated train and val metrics to MLflow with step = epoch number.

    Epochs already in the run (a resumed run re-entering its last epoch) are not logged
    twice.
    """

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.run_id = ""
        self.logged_epochs: set[int] = set()
        self.epochs_trained = 0  # in this process; a resumed run counts from its checkpoint
        self.validated = False  # whether validation ran in the current epoch

    def bind(self, run_id: str) -> None:
        self.run_id = run_id
        history = self.client.get_metric_history(run_id, "train/loss")
        self.logged_epochs = {m.step for m in history}

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.validated = self.validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self.epochs_trained += 1
        epoch = trainer.current_epoch + 1
        if epoch in self.logged_epochs:
            return
        # callback_metrics keeps the last validation values, so val/* are logged only in
        # epochs that ran validation (check_val_every_n_epoch may skip some)
        values = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key in EPOCH_METRICS and (self.validated or not key.startswith("val/"))
        }
        self.validated = False
        log_metrics(self.client, self.run_id, values, step=epoch)
        self.logged_epochs.add(epoch)
