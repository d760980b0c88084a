"""Run `python -m fashion.train` in a subprocess on small generated data."""

import os
import subprocess
import sys
from pathlib import Path

from fashion.tracking import PROJECT_ROOT


def run_train(
    *args: str, env: dict | None = None, script: str | None = None
) -> subprocess.CompletedProcess:
    """Run the training command, or `script` (Python source that calls it), with `args`."""
    command = [sys.executable, "-c", script] if script else [sys.executable, "-m", "fashion.train"]
    return subprocess.run(
        [*command, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
    )


def small_overrides(idx_dir: Path, tmp_path: Path, epochs: int) -> list[str]:
    """Return overrides for a quick run on the fixture data with its store under tmp_path."""
    return [
        f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"data.root={idx_dir}",
        "data.verify=false",
        "data.val_size=20",
        "data.batch_size=16",  # 100 training images: 7 steps per epoch
        f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"hydra.run.dir={tmp_path}/run",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]
