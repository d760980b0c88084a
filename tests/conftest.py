"""Shared fixtures: a small, valid Fashion-MNIST layout written with `fashion.data.write_idx`."""

from pathlib import Path

import numpy as np
import pytest

import fashion.schema  # noqa: F401 (registers the structured config that conf/ builds on)
from fashion.data import write_idx

SMALL_COUNTS = {"train": 120, "test": 40}


def small_split(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Return images whose pixel (i, r, c) is (i + 28 r + c) mod 256, and labels 0..9 cycling."""
    index = np.arange(count)[:, None, None]
    rows = np.arange(28)[None, :, None]
    cols = np.arange(28)[None, None, :]
    images = ((index + 28 * rows + cols) % 256).astype(np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    return images, labels


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A directory holding all four files: 120 train and 40 test images, every class present."""
    directory = tmp_path / "fashion-mnist"
    for split, count in SMALL_COUNTS.items():
        write_idx(directory, split, *small_split(count))
    return directory
