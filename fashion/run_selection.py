"""Pick the training runs to compare from MLflow and read them into tables.

A selection is one sweep of one experiment, or all of it. Runs that failed, were killed or
are still running are left out and logged. Earlier comparison runs are never selected.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from fashion.data import get_task

log = logging.getLogger(__name__)

FIX_NO_RUNS = "run `make reproduce` or `python -m fashion.train -m ...` first"
CONDITION_PARAMS = ("accelerator", "precision", "max_epochs", "limit_train_batches")
LOSS_KEYS = ("train/loss", "val/loss")


class SelectionError(Exception):
    """A problem the user can fix, reported as one line and exit code 2."""


@dataclass
class Selection:
    """The training runs chosen for a comparison."""

    experiment: str
    experiment_id: str
    sweep: str  # the compared sweep id, or "all"
    finished: list[Run]
    excluded: list[Run]  # failed, killed, still running, or finished without test/acc


def natural_key(name: str) -> list:
    """Sort key that puts "model_2" before "model_10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def training_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Fetch every active run of the experiment except earlier comparison runs."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        runs += [run for run in page if run.data.tags.get("kind") != "comparison"]
        token = page.token
        if not token:
            return runs


def select_runs(client: MlflowClient, experiment: str, sweep: str) -> Selection:
    """Pick the runs of one sweep ("latest", "all" or a sweep tag) and log those left out."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise SelectionError(
            f"experiment {experiment!r} not found in the store "
            f"{client.tracking_uri} (it has: {names}); {FIX_NO_RUNS}"
        )
    runs = training_runs(client, found.experiment_id)
    finished = [run for run in runs if run.info.status == "FINISHED"]
    if not finished:
        raise SelectionError(
            f"experiment {experiment!r} in {client.tracking_uri} has no "
            f"finished training runs; {FIX_NO_RUNS}"
        )

    if sweep == "latest":
        sweep = max(finished, key=lambda run: run.info.start_time).data.tags.get("sweep", "")
    if sweep != "all":
        sweeps = sorted({run.data.tags.get("sweep", "") for run in finished})
        runs = [run for run in runs if run.data.tags.get("sweep", "") == sweep]
        if not any(run.info.status == "FINISHED" for run in runs):
            raise SelectionError(
                f"sweep {sweep!r} has no finished runs in experiment "
                f"{experiment!r}; pass --sweep latest, all or one of: "
                f"{', '.join(sweeps)}"
            )

    complete = [r for r in runs if r.info.status == "FINISHED" and "test/acc" in r.data.metrics]
    excluded = [run for run in runs if run not in complete]
    for run in excluded:
        log.warning(
            "left out run %s (%s, %s): %s",
            run.info.run_name,
            run.info.run_id,
            run.info.status,
            exclusion_reason(run),
        )
    return Selection(experiment, found.experiment_id, sweep, complete, excluded)


# params that may differ between runs compared as repeats of one model
REPEAT_KEYS = {
    "seed",
    "run_name",
    "resume",
    "sweep_id",
    "tracking_uri",
    "threads",
    "data.root",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
}


def check_same_settings(runs: Iterable[Run]) -> None:
    """Raise SelectionError when runs of one model differ in more than their seed, since
    their spread would then mix settings with chance."""
    by_model: dict[str, list[Run]] = {}
    for run in runs:
        by_model.setdefault(run.data.tags.get("model", "?"), []).append(run)
    for model, group in by_model.items():
        keys = set().union(*(run.data.params for run in group)) - REPEAT_KEYS
        differing = {
            key: sorted({run.data.params.get(key, "(unset)") for run in group})
            for key in sorted(keys)
        }
        differing = {key: values for key, values in differing.items() if len(values) > 1}
        if differing:
            summary = "; ".join(
                f"{key}: {', '.join(values)}" for key, values in list(differing.items())[:3]
            )
            raise SelectionError(
                f"runs of {model} differ in more than the seed ({summary}); compare one "
                "setting at a time with --sweep SWEEP or a separate --experiment"
            )


def exclusion_reason(run: Run) -> str:
    if run.info.status == "FINISHED":
        return "finished without a test/acc metric"
    return run.data.tags.get("failure_reason", "no failure_reason tag")


def run_table(runs: Iterable[Run]) -> pd.DataFrame:
    """Build a table with one row per run: identity, conditions and test/ and time/ metrics."""
    rows = []
    for run in runs:
        tags, params = run.data.tags, run.data.params
        final = {k: v for k, v in run.data.metrics.items() if k.startswith(("test/", "time/"))}
        rows.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "model": tags.get("model") or params.get("model.name") or run.info.run_name,
                "seed": tags.get("seed", params.get("seed", "")),
                "task": tags.get("task") or params.get("data.task", ""),
                "sweep": tags.get("sweep", ""),
                "git_commit": tags.get("git_commit", ""),
                "hardware": tags.get("hardware", ""),
                **{name: params.get(f"trainer.{name}", "") for name in CONDITION_PARAMS},
                **final,
            }
        )
    rows.sort(key=lambda row: (natural_key(row["model"]), natural_key(row["seed"])))
    return pd.DataFrame(rows)


def epoch_values(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """Return the value per epoch (step). Where a step was logged twice, the later one wins."""
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
    return {metric.step: metric.value for metric in history}


def mean_loss_histories(client: MlflowClient, runs: pd.DataFrame) -> dict[str, dict]:
    """Average train and val loss per epoch over each model's runs.

    An epoch that only some runs reached is the mean over those runs.
    """
    histories = {}
    for model in sorted(runs["model"].unique(), key=natural_key):
        run_ids = runs.loc[runs["model"] == model, "run_id"]
        history = {}
        for key in LOSS_KEYS:
            by_step = defaultdict(list)
            for run_id in run_ids:
                for step, value in epoch_values(client, run_id, key).items():
                    by_step[step].append(value)
            history[key] = [float(np.mean(by_step[step])) for step in sorted(by_step)]
        histories[model] = history
    return histories


def single_task(runs: pd.DataFrame) -> str:
    tasks = sorted(set(runs["task"]))
    if len(tasks) != 1:
        raise SelectionError(
            f"the selected runs mix tasks {tasks}; pass --sweep with one "
            "sweep, or keep each task in its own experiment"
        )
    try:
        get_task(tasks[0])
    except ValueError as error:
        raise SelectionError(f"runs are tagged with {error}") from None
    return tasks[0]


def warn_repeated_seeds(runs: pd.DataFrame) -> None:
    for (model, seed), group in runs.groupby(["model", "seed"]):
        if len(group) > 1:
            log.warning(
                "%s has %d runs with seed %s (sweeps: %s); each counts as one sample",
                model,
                len(group),
                seed,
                ", ".join(sorted(set(group["sweep"]))),
            )
