"""Continue interrupted runs: find the run to resume, its config and its checkpoint.

`resume=<run id>` continues that run. `resume=auto` looks for a run of the same config in
the experiment: a finished one is skipped, and an unfinished one continues from its last
checkpoint. When there is none, a new run starts. The run's config is identified by a hash of
the composed config, so re-running a sweep command finds each job's earlier run.
"""

import hashlib
import json
import logging
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# keys that set where a run is tracked or how it reports, not what it computes
UNHASHED_KEYS = ("resume", "sweep_id", "tracking_uri", "threads")
UNHASHED_TRAINER_KEYS = ("enable_progress_bar", "enable_model_summary")
CHECKPOINT_NAME = "last.ckpt"


class ResumeError(RuntimeError):
    pass


def config_hash(cfg: DictConfig) -> str:
    values = OmegaConf.to_container(cfg, resolve=True)
    for key in UNHASHED_KEYS:
        values.pop(key, None)
    for key in UNHASHED_TRAINER_KEYS:
        values.get("trainer", {}).pop(key, None)
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def warn_ignored_overrides(requested: DictConfig, stored: DictConfig) -> None:
    """Log the settings of this command that a resumed run does not take: it continues
    with the config it started with."""
    ignored = []
    requested_values = OmegaConf.to_container(requested, resolve=True)
    used = OmegaConf.to_container(stored, resolve=True)
    for group, values in requested_values.items():
        if group in UNHASHED_KEYS or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if value not in ("auto", None) and used.get(group, {}).get(key) != value:
                ignored.append(f"{group}.{key}={value}")
    if ignored:
        log.warning("resuming with the run's own config; ignored: %s", ", ".join(ignored))


def checkpoint_path(run: Run) -> Path:
    return Path(run.data.tags.get("output_dir", "")) / "checkpoints" / CHECKPOINT_NAME


def find_run(client: MlflowClient, experiment_id: str, cfg: DictConfig) -> Run | None:
    """Return the run that cfg.resume names, or for "auto" the latest run of the same config."""
    if cfg.resume != "auto":
        try:
            return client.get_run(cfg.resume)
        except MlflowException:
            raise ResumeError(
                f"resume={cfg.resume}: no such run in {client.tracking_uri}; pass a run id "
                "from the MLflow UI, or resume=auto to match runs by config"
            ) from None
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.config_hash = '{config_hash(cfg)}'",
        order_by=["attributes.start_time DESC"],
    )
    finished = [run for run in runs if run.info.status == "FINISHED"]
    if finished:
        return finished[0]
    resumable = [run for run in runs if checkpoint_path(run).is_file()]
    return resumable[0] if resumable else None


def load_config(client: MlflowClient, run: Run) -> DictConfig:
    """Read the resolved config that the run started with from its config.yaml artifact."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = client.download_artifacts(run.info.run_id, "config.yaml", scratch)
        except (MlflowException, OSError) as error:
            raise ResumeError(
                f"run {run.info.run_id} has no readable config.yaml artifact ({error}); "
                "it cannot be resumed, start it again without resume"
            ) from None
        return OmegaConf.load(path)


def reopen(client: MlflowClient, run: Run) -> Path:
    """Mark an unfinished run RUNNING again and return the checkpoint to continue from."""
    checkpoint = checkpoint_path(run)
    if not checkpoint.is_file():
        raise ResumeError(
            f"run {run.info.run_id} has no checkpoint at {checkpoint}; "
            "start it again without resume"
        )
    client.update_run(run.info.run_id, status="RUNNING")
    if "failure_reason" in run.data.tags:
        client.delete_tag(run.info.run_id, "failure_reason")
    log.info("resuming run %s from %s", run.info.run_id, checkpoint)
    return checkpoint


class RandomStateCallback(L.Callback):
    """Store the global random generators in each checkpoint and restore them on resume,
    so dropout and augmentation draw the same numbers as an uninterrupted run."""

    def state_dict(self) -> dict[str, Any]:
        # numpy's key array goes in as a tensor, so checkpoints load with weights_only=True
        name, keys, position, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            "torch": torch.get_rng_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        name, keys, position, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
