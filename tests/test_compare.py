"""The comparison against a small MLflow store of fake training runs with known metrics."""

import logging
import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from fashion import compare, run_selection
from fashion.data import FINE_CLASSES, SUPERCLASSES
from fashion.metrics import slug

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SWEEP_OLD = "multirun/2026-01-01/09-00-00"
SWEEP_NEW = "multirun/2026-01-02/09-00-00"
SWEEP_RUNNING = "multirun/2026-01-03/09-00-00"
SWEEP_FINE = "multirun/2026-01-02/12-00-00"

# test/acc per seed 0, 1, 2 of the latest superclass sweep.
ACCURACY = {"model_1": (0.97, 0.98, 0.99), "model_2": (0.94, 0.95, 0.99)}
# Worked by hand: model_1 mean 0.98, std sqrt((0.01^2 + 0 + 0.01^2) / 2) = 0.01;
# model_2 mean 0.96, std sqrt((0.02^2 + 0.01^2 + 0.03^2) / 2) = sqrt(0.0007).
EXPECTED = {"model_1": (0.98, 0.01), "model_2": (0.96, math.sqrt(0.0007))}
# test/superclass_acc per seed 0, 1 of fine-task runs.
FINE_SUPERCLASS_ACC = {"model_1": (0.99, 0.995), "model_2": (0.95, 0.96)}


def add_run(
    client,
    experiment_id,
    model,
    seed,
    sweep,
    acc,
    *,
    task="superclass",
    status="FINISHED",
    start=0,
    extra=None,
    reason=None,
):
    """Create one training run the way fashion.train logs it."""
    run = client.create_run(
        experiment_id,
        start_time=start,
        run_name=f"{model}-seed{seed}",
        tags={
            "model": model,
            "task": task,
            "seed": str(seed),
            "sweep": sweep,
            "git_commit": "abc123",
        },
    )
    params = {
        "trainer.accelerator": "cpu",
        "trainer.precision": "32-true",
        "trainer.max_epochs": "2",
        "trainer.limit_train_batches": "None",
        "data.task": task,
        "model.name": model,
        "seed": str(seed),
    }
    metrics = []
    for epoch in (1, 2):
        # train loss averages to 2.0 and 1.5 over seeds 0, 1, 2
        metrics.append(Metric("train/loss", 2.5 - 0.5 * epoch + seed - 1, 0, epoch))
        metrics.append(Metric("val/loss", 3.0 - epoch, 0, epoch))
    if status == "FINISHED":
        names = SUPERCLASSES if task == "superclass" else FINE_CLASSES
        final = {
            "test/acc": acc,
            "test/loss": 1.0 - acc,
            "time/fit_seconds": 10.0,
            "time/epoch_seconds": 5.0,
        }
        final |= {f"test/acc_{slug(name)}": acc + 0.001 * i for i, name in enumerate(names)}
        metrics += [Metric(key, value, 0, 0) for key, value in (final | (extra or {})).items()]
    run_id = run.info.run_id
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    if reason:
        client.set_tag(run_id, "failure_reason", reason)
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A store with an older sweep, the latest sweep, a failed run and a still-running one."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    artifacts = (root / "artifacts").as_uri()
    superclass = client.create_experiment("fashion-superclass", artifact_location=artifacts)
    fine = client.create_experiment("fashion-fine", artifact_location=artifacts)
    empty = client.create_experiment("empty", artifact_location=artifacts)

    add_run(client, superclass, "model_1", 0, SWEEP_OLD, 0.5, start=1_000)
    for model, accuracies in ACCURACY.items():
        for seed, acc in enumerate(accuracies):
            add_run(client, superclass, model, seed, SWEEP_NEW, acc, start=2_000 + seed)
    add_run(
        client,
        superclass,
        "model_2",
        3,
        SWEEP_NEW,
        0.1,
        status="FAILED",
        start=2_010,
        reason="RuntimeError: CUDA out of memory",
    )
    add_run(client, superclass, "model_1", 5, SWEEP_RUNNING, 0.1, status="RUNNING", start=3_000)

    for model, accuracies in FINE_SUPERCLASS_ACC.items():
        for seed, acc in enumerate(accuracies):
            add_run(
                client,
                fine,
                model,
                seed,
                SWEEP_FINE,
                0.9,
                task="fine",
                start=4_000,
                extra={"test/superclass_acc": acc},
            )
    add_run(client, empty, "model_1", 0, SWEEP_NEW, 0.1, status="FAILED", start=5_000)
    return uri


def run_compare(store: str, out: Path, *args: str) -> int:
    return compare.main(["--tracking-uri", store, "--out", str(out), *args])


def read_summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "comparison.csv", index_col="model")


def test_latest_sweep_mean_and_std(store, tmp_path):
    assert run_compare(store, tmp_path) == 0
    summary = read_summary(tmp_path)

    assert list(summary.index) == ["model_1", "model_2"]
    for model, (mean, std) in EXPECTED.items():
        assert summary.loc[model, "runs"] == 3
        assert summary.loc[model, "test/acc mean"] == pytest.approx(mean)
        assert summary.loc[model, "test/acc std"] == pytest.approx(std)
        assert summary.loc[model, "test/loss mean"] == pytest.approx(1.0 - mean)
    assert summary.loc["model_1", "reference test/acc"] == pytest.approx(0.9852)
    assert summary.loc["model_1", "test/acc minus reference"] == pytest.approx(0.98 - 0.9852)


def test_ranking_and_spread_marker(store, tmp_path):
    assert run_compare(store, tmp_path) == 0
    summary = read_summary(tmp_path)

    assert summary.loc["model_1", "rank"] == 1
    assert summary.loc["model_2", "rank"] == 2
    # gap 0.02 is smaller than model_2's std of 0.0265
    assert bool(summary.loc["model_1", "within_spread_of_next"])
    assert not bool(summary.loc["model_2", "within_spread_of_next"])


def test_per_class_csv(store, tmp_path):
    assert run_compare(store, tmp_path) == 0
    per_class = pd.read_csv(tmp_path / "per_class.csv", index_col="model")

    assert per_class.loc["model_1", "Top mean"] == pytest.approx(0.98)
    assert per_class.loc["model_1", "Bottom mean"] == pytest.approx(0.981)
    assert per_class.loc["model_2", "Accessories std"] == pytest.approx(math.sqrt(0.0007))
    assert per_class.loc["model_2", "Accessories reference"] == pytest.approx(0.9959)


def test_failed_run_excluded_and_logged(store, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert run_compare(store, tmp_path) == 0

    notes = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("model_2-seed3" in note and "FAILED" in note for note in notes)
    assert any("CUDA out of memory" in note for note in notes)
    assert read_summary(tmp_path).loc["model_2", "runs"] == 3
    study = (tmp_path / "study.md").read_text()
    assert "model_2-seed3: FAILED" in study


def test_sweep_all_includes_older_sweep(store, tmp_path):
    assert run_compare(store, tmp_path, "--sweep", "all") == 0
    summary = read_summary(tmp_path)

    assert summary.loc["model_1", "runs"] == 4
    assert summary.loc["model_1", "test/acc mean"] == pytest.approx((0.5 + 0.97 + 0.98 + 0.99) / 4)
    assert summary.loc["model_2", "runs"] == 3


def test_named_sweep(store, tmp_path):
    assert run_compare(store, tmp_path, "--sweep", SWEEP_OLD) == 0
    summary = read_summary(tmp_path)

    assert list(summary.index) == ["model_1"]
    assert summary.loc["model_1", "test/acc mean"] == pytest.approx(0.5)
    assert math.isnan(summary.loc["model_1", "test/acc std"])


def test_files_written_and_logged(store, tmp_path, capsys):
    client = MlflowClient(tracking_uri=store)
    experiment_id = client.get_experiment_by_name("fashion-superclass").experiment_id
    assert run_compare(store, tmp_path) == 0

    names = {
        "study.md",
        "comparison.csv",
        "per_class.csv",
        "runs.csv",
        compare.study_report.LOSS_FIGURE,
        compare.study_report.ACCURACY_FIGURE,
    }
    for name in names:
        assert (tmp_path / name).is_file(), name
    for figure in (compare.study_report.LOSS_FIGURE, compare.study_report.ACCURACY_FIGURE):
        assert (tmp_path / figure).read_bytes().startswith(PNG_SIGNATURE)
    study = (tmp_path / "study.md").read_text()
    assert f"]({compare.study_report.LOSS_FIGURE})" in study
    assert f"`{SWEEP_NEW}`" in study
    assert "0.9800 ± 0.0100" in study

    latest = client.search_runs(
        [experiment_id],
        "tags.kind = 'comparison'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert latest.info.run_name == "comparison"
    assert latest.info.status == "FINISHED"
    assert latest.data.tags["sweep"] == SWEEP_NEW
    assert {a.path for a in client.list_artifacts(latest.info.run_id)} >= names

    printed = capsys.readouterr().out
    assert "| model_1 |" in printed
    assert printed.rstrip().endswith(str((tmp_path / "study.md").resolve()))


def test_comparison_runs_ignored(store, tmp_path):
    """A second comparison neither counts the first one nor takes its sweep for "latest"."""
    assert run_compare(store, tmp_path / "first") == 0
    assert run_compare(store, tmp_path / "second") == 0
    summary = read_summary(tmp_path / "second")

    assert list(summary.index) == ["model_1", "model_2"]
    assert summary.loc["model_1", "runs"] == 3


def test_loss_histories_mean_over_seeds(store):
    client = MlflowClient(tracking_uri=store)
    selection = run_selection.select_runs(client, "fashion-superclass", SWEEP_NEW)
    histories = run_selection.mean_loss_histories(
        client, run_selection.run_table(selection.finished)
    )

    assert list(histories) == ["model_1", "model_2"]
    assert histories["model_1"]["train/loss"] == pytest.approx([2.0, 1.5])
    assert histories["model_1"]["val/loss"] == pytest.approx([2.0, 1.0])


def test_fine_runs_beside_superclass_runs(store, tmp_path):
    assert run_compare(store, tmp_path, "--experiment", "fashion-fine") == 0
    transfer = pd.read_csv(tmp_path / "superclass_transfer.csv", index_col="model")

    assert transfer.loc["model_1", "fine-trained mean"] == pytest.approx(0.9925)
    assert transfer.loc["model_1", "superclass-trained mean"] == pytest.approx(0.98)
    assert transfer.loc["model_1", "fine minus superclass"] == pytest.approx(0.0125)
    assert transfer.loc["model_2", "fine minus superclass"] == pytest.approx(0.955 - 0.96)
    study = (tmp_path / "study.md").read_text()
    assert "Does training on fine labels help the coarse task?" in study
    assert "Ankle boot" in study
    assert "(study)" not in study


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--experiment", "nope"], "experiment 'nope' not found"),
        (["--experiment", "empty"], "no finished training runs"),
        (["--sweep", "multirun/missing"], SWEEP_OLD),
    ],
)
def test_user_errors_exit_2(store, tmp_path, capsys, args, expected):
    assert run_compare(store, tmp_path, *args) == 2

    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert expected in error
    assert "Traceback" not in error
    assert not (tmp_path / "study.md").exists()


def test_missing_experiment_names_fix(store, tmp_path, capsys):
    run_compare(store, tmp_path, "--experiment", "nope")
    error = capsys.readouterr().err
    assert "make reproduce" in error
    assert "fashion-superclass" in error


def test_rank_models_marks_close_neighbours():
    means = pd.Series({"a": 0.95, "b": 0.90, "c": 0.80, "d": 0.70})
    stds = pd.Series({"a": 0.01, "b": 0.06, "c": 0.01, "d": math.nan})
    ranked = compare.rank_models(means, stds)

    assert ranked["rank"].to_dict() == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert ranked.loc["a", "within_spread_of_next"]  # gap 0.05 < 0.06
    assert not ranked.loc["b", "within_spread_of_next"]  # gap 0.10 > 0.06
    assert not ranked.loc["c", "within_spread_of_next"]  # gap 0.10 > 0.01, NaN std counts as 0
    assert not ranked.loc["d", "within_spread_of_next"]  # last: no next model


def test_natural_model_order():
    names = ["model_10", "model_2", "model_1"]
    assert sorted(names, key=run_selection.natural_key) == ["model_1", "model_2", "model_10"]
