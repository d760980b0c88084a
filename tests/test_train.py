"""End to end: training runs on generated data leave complete MLflow runs."""

from pathlib import Path

import pytest
from mlflow import MlflowClient
from train_cli import run_train, small_overrides

from fashion.data import DEBIAN_DIR

EPOCH_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")


def finished_runs(tmp_path: Path, experiment: str = "fashion-superclass") -> list:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment} missing"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def test_training_run_is_complete_in_mlflow(idx_dir: Path, tmp_path: Path) -> None:
    result = run_train(*small_overrides(idx_dir, tmp_path, epochs=2), "model=model_6")
    assert result.returncode == 0, result.stderr[-3000:]

    (run,) = finished_runs(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "model_6"
    assert run.data.tags["task"] == "superclass"
    assert len(run.data.tags["git_commit"]) >= 7
    params = run.data.params
    assert params["trainable_params"] == "420867"
    assert params["model.l2_layers"] == "['conv2', 'fc1', 'fc2']"
    assert params["trainer.precision"] != "auto"  # the value actually used is logged
    assert params["data.val_size"] == "20"

    for key in EPOCH_KEYS:
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2], key
    metrics = run.data.metrics
    for key in ("test/loss", "test/acc", "test/acc_top", "test/acc_bottom", "test/acc_accessories"):
        assert key in metrics
    # each error costs two one-vs-rest decisions
    ovr_errors = sum(1 - metrics[f"test/acc_{c}"] for c in ("top", "bottom", "accessories"))
    assert ovr_errors == pytest.approx(2 * (1 - metrics["test/acc"]), abs=1e-6)

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    for name in (
        "test_confusion.png",
        "test_confusion_counts.csv",
        "curves.png",
        "test_classification_report.md",
        "gallery_wrong.png",
    ):
        assert f"evaluation/{name}" in artifacts
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model", "data", "evaluation"} <= top


def test_two_job_sweep_shares_experiment_and_sweep_tag(idx_dir: Path, tmp_path: Path) -> None:
    result = run_train(
        "-m",
        *small_overrides(idx_dir, tmp_path, epochs=2),
        "model=model_1,model_2",
        "trainer.max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]

    runs = finished_runs(tmp_path)
    assert sorted(r.data.tags["model"] for r in runs) == ["model_1", "model_2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["sweep"] for r in runs}) == 1
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])


def test_missing_data_gives_one_line_per_file(tmp_path: Path) -> None:
    result = run_train(
        f"data.root={tmp_path}",
        f"tracking_uri=sqlite:///{tmp_path}/db.sqlite",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [
        line for line in (result.stderr + result.stdout).splitlines() if "file not found" in line
    ]
    assert len(lines) == 4
    assert f"{tmp_path}/train-images-idx3-ubyte.gz" in lines[0]


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="real Fashion-MNIST not installed")
def test_short_run_on_real_data(tmp_path: Path) -> None:
    result = run_train(
        f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"data.root={DEBIAN_DIR}",
        "model=model_2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=60",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = finished_runs(tmp_path)
    # 60 batches of 128 images already separate the three superclasses well
    assert run.data.metrics["test/acc"] > 0.9
    assert run.data.params["data.verify"] == "True"


def test_bad_trainer_argument_creates_no_run(tmp_path: Path) -> None:
    result = run_train(
        "trainer.strategy=nonsense",
        f"tracking_uri=sqlite:///{tmp_path}/db.sqlite",
        f"hydra.run.dir={tmp_path}/run",
    )
    output = result.stderr + result.stdout
    assert result.returncode == 2
    assert "Traceback" not in output
    assert "trainer settings rejected by Lightning" in output
    client = MlflowClient(f"sqlite:///{tmp_path}/db.sqlite")
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
