"""Failures and interruptions: runs are closed with a reason, resumed exactly, skipped when
finished; parallel jobs and repeated seeds behave."""

import signal
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from train_cli import run_train, small_overrides

from fashion import train as train_module
from fashion.module import Classifier
from fashion.tracking import PROJECT_ROOT

EXPERIMENT = "fashion-superclass"


def compose_config(idx_dir: Path, tmp_path: Path, *overrides: str):
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                f"data.root={idx_dir}",
                "data.verify=false",
                "data.val_size=20",
                "data.batch_size=16",  # 100 training images: 7 steps per epoch
                "trainer.max_epochs=3",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "sweep_id=test",
                *overrides,
            ],
        )
    train_module.validate(cfg)
    return cfg


def runs(tmp_path: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def epoch_losses(tmp_path: Path, run_id: str) -> list[tuple[int, float]]:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))


@pytest.fixture(autouse=True)
def restore_sigint():
    # Lightning ignores SIGINT while it shuts down after Ctrl-C, so give pytest its handler back
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def fail_at_step(monkeypatch: pytest.MonkeyPatch, step: int, error: BaseException) -> None:
    original = Classifier.training_step

    def failing(self, batch, batch_idx):
        if self.global_step == step:
            raise error
        return original(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", failing)


def test_exception_marks_run_failed_and_keeps_metrics(idx_dir, tmp_path, monkeypatch) -> None:
    fail_at_step(monkeypatch, 10, RuntimeError("disk on fire"))
    cfg = compose_config(idx_dir, tmp_path)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train_module.train(cfg, tmp_path / "out")

    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "RuntimeError: disk on fire"
    assert [step for step, _ in epoch_losses(tmp_path, run.info.run_id)] == [1]
    assert run.data.params["trainable_params"] == "420739"


def test_non_finite_loss_stops_with_epoch_and_step(idx_dir, tmp_path, monkeypatch) -> None:
    original = Classifier.forward

    def poisoned(self, x):
        logits = original(self, x)
        return logits * float("nan") if self.global_step == 9 else logits

    monkeypatch.setattr(Classifier, "forward", poisoned)
    cfg = compose_config(idx_dir, tmp_path)
    with pytest.raises(train_module.NonFiniteLossError, match="nan at epoch 2, step 9"):
        train_module.train(cfg, tmp_path / "out")
    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["failure_reason"]


def test_ctrl_c_marks_run_killed(idx_dir, tmp_path, monkeypatch) -> None:
    fail_at_step(monkeypatch, 10, KeyboardInterrupt())
    cfg = compose_config(idx_dir, tmp_path)
    with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into sys.exit(1)
        train_module.train(cfg, tmp_path / "out")
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
    assert "interrupted" in run.data.tags["failure_reason"]


def test_resume_continues_the_same_run_exactly(idx_dir, tmp_path, monkeypatch) -> None:
    # model_4 has dropout, so this also checks that random state is restored
    full = compose_config(idx_dir, tmp_path, "model=model_4", "run_name=full")
    train_module.train(full, tmp_path / "full")

    with monkeypatch.context() as patch:
        fail_at_step(patch, 16, KeyboardInterrupt())  # third epoch, after two checkpoints
        interrupted = compose_config(idx_dir, tmp_path, "model=model_4", "run_name=part")
        with pytest.raises(SystemExit):
            train_module.train(interrupted, tmp_path / "part")

    killed = runs(tmp_path)[1]
    assert killed.info.status == "KILLED"
    again = compose_config(
        idx_dir, tmp_path, "model=model_4", "run_name=part", f"resume={killed.info.run_id}"
    )
    train_module.train(again, tmp_path / "ignored")

    first, resumed = runs(tmp_path)
    assert resumed.info.run_id == killed.info.run_id
    assert resumed.info.status == "FINISHED"
    assert "failure_reason" not in resumed.data.tags
    assert epoch_losses(tmp_path, resumed.info.run_id) == epoch_losses(tmp_path, first.info.run_id)
    for key in ("test/acc", "test/loss", "val/loss"):
        assert resumed.data.metrics[key] == first.data.metrics[key], key


def test_same_seed_gives_identical_epoch_losses(idx_dir, tmp_path) -> None:
    for name in ("a", "b"):
        cfg = compose_config(idx_dir, tmp_path, "model=model_6", f"run_name={name}")
        train_module.train(cfg, tmp_path / name)
    first, second = runs(tmp_path)
    assert epoch_losses(tmp_path, first.info.run_id) == epoch_losses(tmp_path, second.info.run_id)
    assert first.data.params["seed"] == "0"
    assert first.data.params["trainer.deterministic"] in ("False", "True")


def test_unknown_resume_id_is_a_clear_error(idx_dir, tmp_path) -> None:
    cfg = compose_config(idx_dir, tmp_path, "resume=0123abcd")
    with pytest.raises(train_module.resume.ResumeError, match="resume=0123abcd: no such run"):
        train_module.train(cfg, tmp_path / "out")


KILL_SCRIPT = """
import os, signal, sys
from fashion.module import Classifier
from fashion.train import main
original = Classifier.training_step
def dying(self, batch, batch_idx):
    if self.global_step == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, batch, batch_idx)
Classifier.training_step = dying
main()
"""


def test_kill_9_resume_matches_uninterrupted(idx_dir, tmp_path) -> None:
    five_epochs = [
        *small_overrides(idx_dir, tmp_path, epochs=5),
        "model=model_4",
    ]
    full = run_train(*five_epochs, "run_name=full", f"hydra.run.dir={tmp_path}/full")
    assert full.returncode == 0, full.stderr[-3000:]

    # 7 steps per epoch: global step 16 is the third step of epoch 3
    killed = run_train(
        *five_epochs, "run_name=killed", env={"KILL_AT_STEP": "16"}, script=KILL_SCRIPT
    )
    assert killed.returncode == -signal.SIGKILL
    uninterrupted, run = runs(tmp_path)
    assert run.info.status == "RUNNING"  # nothing could close it
    assert [step for step, _ in epoch_losses(tmp_path, run.info.run_id)] == [1, 2]

    resumed = run_train(*five_epochs, "run_name=killed", "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    uninterrupted, run = runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert epoch_losses(tmp_path, run.info.run_id) == epoch_losses(
        tmp_path, uninterrupted.info.run_id
    )
    for key in ("test/acc", "test/loss"):
        assert run.data.metrics[key] == uninterrupted.data.metrics[key], key


def test_sweep_rerun_skips_finished_jobs(idx_dir, tmp_path) -> None:
    sweep = [
        "-m",
        *small_overrides(idx_dir, tmp_path, epochs=1),
        "model=model_1,model_2",
        "resume=auto",
    ]
    assert run_train(*sweep).returncode == 0
    second = run_train(*sweep)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("already finished") + second.stdout.count("already finished") == 2
    assert len(runs(tmp_path)) == 2


def test_parallel_jobs_into_fresh_store(idx_dir, tmp_path) -> None:
    result = run_train(
        "-m",
        *small_overrides(idx_dir, tmp_path, epochs=1),
        "model=model_1,model_2,model_3",
        "threads=1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    names = [e.name for e in client.search_experiments()]
    assert sorted(names) in (["Default", EXPERIMENT], [EXPERIMENT])
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])
    found = runs(tmp_path)
    assert sorted(r.data.tags["model"] for r in found) == ["model_1", "model_2", "model_3"]
    for run in found:
        assert run.info.status == "FINISHED"
        assert "test/acc" in run.data.metrics
        assert len(epoch_losses(tmp_path, run.info.run_id)) == 1


def test_val_metrics_only_in_validated_epochs(idx_dir, tmp_path) -> None:
    cfg = compose_config(idx_dir, tmp_path, "trainer.check_val_every_n_epoch=2")
    train_module.train(cfg, tmp_path / "out")
    (run,) = runs(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [2]
    assert [step for step, _ in epoch_losses(tmp_path, run.info.run_id)] == [1, 2, 3]


def test_config_hash_ignores_reporting_settings(idx_dir, tmp_path) -> None:
    base = compose_config(idx_dir, tmp_path)
    quiet = compose_config(
        idx_dir, tmp_path, "trainer.enable_progress_bar=true", "threads=1", "resume=auto"
    )
    other = compose_config(idx_dir, tmp_path, "optim.lr=0.01")
    assert train_module.resume.config_hash(base) == train_module.resume.config_hash(quiet)
    assert train_module.resume.config_hash(base) != train_module.resume.config_hash(other)
