"""Compare tracked training runs across models and seeds: `python -m fashion.compare`.

Reads the finished training runs of one experiment (by default its latest sweep) from MLflow
and summarizes the test metrics of each model as mean and sample std over its runs. Writes
tables, figures and study.md, then logs that folder as a run named "comparison" in the same
experiment.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from fashion import study_report, tracking
from fashion.data import get_task
from fashion.metrics import mean_std, slug
from fashion.run_selection import (
    Selection,
    SelectionError,
    check_same_settings,
    exclusion_reason,
    mean_loss_histories,
    natural_key,
    run_table,
    select_runs,
    single_task,
    warn_repeated_seeds,
)

log = logging.getLogger("fashion.compare")

DEFAULT_EXPERIMENT = "fashion-superclass"
SUPERCLASS_EXPERIMENT = "fashion-superclass"  # its runs are set beside fine-trained models

# The course study's test accuracy on the 3-class task after 10 epochs: overall, then
# one-vs-rest per superclass. The study swapped the names Bottom and Accessories; not so here.
REFERENCE_ACC = {
    "model_1": 0.9852, "model_2": 0.9907, "model_3": 0.9860,
    "model_4": 0.9925, "model_5": 0.9841, "model_6": 0.9750,
}  # fmt: skip
REFERENCE_PER_CLASS = {
    "model_1": {"Top": 0.9867, "Bottom": 0.9924, "Accessories": 0.9913},
    "model_2": {"Top": 0.9918, "Bottom": 0.9937, "Accessories": 0.9959},
    "model_3": {"Top": 0.9873, "Bottom": 0.9920, "Accessories": 0.9927},
    "model_4": {"Top": 0.9934, "Bottom": 0.9958, "Accessories": 0.9958},
    "model_5": {"Top": 0.9860, "Bottom": 0.9914, "Accessories": 0.9908},
    "model_6": {"Top": 0.9801, "Bottom": 0.9859, "Accessories": 0.9840},
}


def summarize(runs: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Compute the mean and sample std of each column per model, in natural model order.

    A std from one value is no measure of spread, so it is left empty (NaN).
    """
    rows = {}
    for model, group in runs.groupby("model"):
        row: dict[str, float] = {"runs": len(group), "seeds": group["seed"].nunique()}
        for column in columns:
            values = group[column].dropna().tolist() if column in group else []
            mean, std = mean_std(values) if values else (math.nan, math.nan)
            row[f"{column} mean"] = mean
            row[f"{column} std"] = std if len(values) > 1 else math.nan
        rows[model] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame = frame.loc[sorted(frame.index, key=natural_key)]
    frame.index.name = "model"
    return frame


def rank_models(means: pd.Series, stds: pd.Series) -> pd.DataFrame:
    """Rank models by mean (1 = best) and flag each one whose gap to the next-ranked model is
    smaller than the larger of their two stds, because such neighbours are not distinct."""
    order = means.sort_values(ascending=False, kind="stable").index
    spread = stds.fillna(0.0)
    within = pd.Series(False, index=means.index)
    for upper, lower in zip(order[:-1], order[1:], strict=True):
        within[upper] = means[upper] - means[lower] < max(spread[upper], spread[lower])
    ranks = means.rank(ascending=False, method="min").astype(int)
    return pd.DataFrame({"rank": ranks, "within_spread_of_next": within})


def model_summary(runs: pd.DataFrame, task: str) -> pd.DataFrame:
    """Summarize every final metric per model, with its rank and the study's accuracy."""
    metrics = sorted(c for c in runs.columns if c.startswith(("test/", "time/")))
    summary = summarize(runs, metrics)
    summary = summary.join(rank_models(summary["test/acc mean"], summary["test/acc std"]))
    if task == "superclass":
        summary["reference test/acc"] = [REFERENCE_ACC.get(m, math.nan) for m in summary.index]
        summary["test/acc minus reference"] = (
            summary["test/acc mean"] - summary["reference test/acc"]
        )
    return summary


def per_class_summary(summary: pd.DataFrame, class_names: Iterable[str], task: str) -> pd.DataFrame:
    """Collect one-vs-rest test accuracy per model and class, with the study's value."""
    frame = pd.DataFrame(index=summary.index)
    for name in class_names:
        key = f"test/acc_{slug(name)}"
        frame[f"{name} mean"] = summary.get(f"{key} mean", math.nan)
        frame[f"{name} std"] = summary.get(f"{key} std", math.nan)
        if task == "superclass":
            frame[f"{name} reference"] = [
                REFERENCE_PER_CLASS.get(model, {}).get(name, math.nan) for model in frame.index
            ]
    return frame


def transfer_summary(client: MlflowClient, summary: pd.DataFrame) -> pd.DataFrame | None:
    """Set the superclass accuracy of fine-trained models beside that of superclass-trained
    ones, taken from the latest sweep of the superclass experiment if the store has one."""
    if "test/superclass_acc mean" not in summary:
        return None
    frame = summary[["runs", "test/superclass_acc mean", "test/superclass_acc std"]].rename(
        columns=lambda c: f"fine-trained {c.replace('test/superclass_acc ', '')}"
    )
    try:
        coarse = select_runs(client, SUPERCLASS_EXPERIMENT, "latest")
    except SelectionError as error:
        log.info("no superclass-task runs to set beside the fine-trained ones: %s", error)
        return frame
    coarse_summary = summarize(run_table(coarse.finished), ["test/acc"])
    frame = frame.join(
        coarse_summary[["runs", "test/acc mean", "test/acc std"]].rename(
            columns=lambda c: f"superclass-trained {c.replace('test/acc ', '')}"
        )
    )
    frame["fine minus superclass"] = frame["fine-trained mean"] - frame["superclass-trained mean"]
    frame.attrs["superclass_sweep"] = coarse.sweep
    return frame


def log_comparison(client: MlflowClient, selection: Selection, out_dir: Path) -> str:
    """Log the output folder as artifacts of a new run named "comparison" and return its id."""
    run = client.create_run(
        selection.experiment_id,
        run_name="comparison",
        tags={
            "kind": "comparison",
            "sweep": selection.sweep,
            "compared_runs": str(len(selection.finished)),
            "mlflow.source.name": "fashion.compare",
        },
    )
    with tracking.tracked_run(client, run.info.run_id):
        client.log_artifacts(run.info.run_id, str(out_dir))
    return run.info.run_id


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fashion.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help="MLflow experiment to compare (default: %(default)s)",
    )
    parser.add_argument(
        "--sweep",
        default="latest",
        help="sweep tag to compare; 'latest' (default): the sweep of the most "
        "recently started finished run; 'all': every finished run",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: MLFLOW_TRACKING_URI, else "
        "sqlite:///<project>/mlruns/mlflow.db)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <project>/reports/<experiment>/)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    client = tracking.get_client(args.tracking_uri)
    try:
        selection = select_runs(client, args.experiment, args.sweep)
        runs = run_table(selection.finished)
        task = single_task(runs)
        check_same_settings(selection.finished)
        summary = model_summary(runs, task)
        histories = mean_loss_histories(client, runs)
        transfer = transfer_summary(client, summary) if task == "fine" else None
    except SelectionError as error:
        print(f"fashion.compare: error: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(
            f"fashion.compare: error: could not read the MLflow store {client.tracking_uri}: "
            f"{message}; check --tracking-uri or MLFLOW_TRACKING_URI",
            file=sys.stderr,
        )
        return 2
    warn_repeated_seeds(runs)

    class_names = get_task(task).class_names
    study = study_report.Study(
        experiment=selection.experiment,
        sweep=selection.sweep,
        task=task,
        class_names=class_names,
        runs=runs,
        summary=summary,
        per_class=per_class_summary(summary, class_names, task),
        transfer=transfer,
        histories=histories,
        excluded=[
            (r.info.run_name, r.info.status, exclusion_reason(r)) for r in selection.excluded
        ],
    )
    out_dir = args.out or tracking.PROJECT_ROOT / "reports" / args.experiment.replace("/", "_")
    study_path = study_report.write_study(study, out_dir)
    print(study_report.tables_markdown(study))

    run_id = log_comparison(client, selection, out_dir)
    log.info(
        "comparison of %s written to %s and logged as run %s in experiment %r",
        study_report.plural(len(runs), "run"),
        out_dir.resolve(),
        run_id,
        selection.experiment,
    )
    print(f"\nstudy: {study_path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
