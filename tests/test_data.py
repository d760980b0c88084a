"""Tests for the Fashion-MNIST file layer: locating, checking and reading the IDX files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fashion import data, idx
from fashion.data import DataError, candidate_dirs, get_task, locate, read_split, write_idx

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_real_data = pytest.mark.skipif(
    not REAL_DIR.is_dir(),
    reason=f"real Fashion-MNIST not at {REAL_DIR} (install Debian's dataset-fashion-mnist)",
)


def file_path(directory: Path, split: str, kind: str) -> Path:
    images_name, labels_name = data.FILE_NAMES[split]
    return directory / (images_name if kind == "images" else labels_name)


def write_gz(path: Path, content: bytes) -> None:
    path.write_bytes(gzip.compress(content, mtime=0))


def error_lines(directory: Path, split: str, verify: bool = False) -> list[str]:
    with pytest.raises(DataError) as caught:
        read_split(directory, split, verify=verify)
    return str(caught.value).splitlines()


# Reading valid files


def test_read_split_small_files(idx_dir):
    images, labels = read_split(idx_dir, "train", verify=False)

    assert images.shape == (120, 28, 28)
    assert images.dtype == torch.uint8
    assert labels.shape == (120,)
    assert labels.dtype == torch.int64
    assert labels.tolist() == [i % 10 for i in range(120)]
    # The fixture sets pixel (i, r, c) to (i + 28 r + c) mod 256.
    assert images[0, 0, :3].tolist() == [0, 1, 2]
    assert images[5, 2, 1].item() == (5 + 56 + 1) % 256
    assert images[119, 27, 27].item() == (119 + 28 * 27 + 27) % 256


def test_read_split_test_split(idx_dir):
    images, labels = read_split(idx_dir, "test", verify=False)

    assert images.shape == (40, 28, 28)
    assert set(labels.tolist()) == set(range(10))


def test_read_split_unknown_split(idx_dir):
    with pytest.raises(ValueError, match=r"'val'.*train, test"):
        read_split(idx_dir, "val")


def test_load_with_explicit_root(idx_dir):
    images, labels = data.load(idx_dir, split="test", verify=False, download=False)

    assert len(images) == 40
    assert len(labels) == 40


def test_write_idx_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        write_idx(tmp_path, "train", np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8))


# Rejecting bad files


def test_verify_rejects_small_files(idx_dir):
    lines = error_lines(idx_dir, "train", verify=True)

    assert len(lines) == 2
    for kind, line in zip(("images", "labels"), lines, strict=True):
        assert line.startswith(f"{file_path(idx_dir, 'train', kind)}: ")
        assert "120 items, but the official train split has 60000" in line
        assert "verify=False" in line


def test_verify_rejects_right_count_wrong_content(tmp_path):
    images = np.zeros((10000, 28, 28), np.uint8)
    labels = np.arange(10000) % 10
    write_idx(tmp_path, "test", images, labels)

    lines = error_lines(tmp_path, "test", verify=True)

    assert len(lines) == 2
    assert all("not Fashion-MNIST content" in line for line in lines)


def test_truncated_gzip(idx_dir):
    path = file_path(idx_dir, "train", "images")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    lines = error_lines(idx_dir, "train")

    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: truncated gzip stream (header declares 94.1 kB, ")
    assert "`make data`" in lines[0]


def test_content_shorter_than_header(idx_dir):
    path = file_path(idx_dir, "train", "labels")
    write_gz(path, struct.pack(">2I", 2049, 120) + bytes(100))

    lines = error_lines(idx_dir, "train")

    assert lines == [
        f"{path}: content too short (128 bytes declared, 108 found); {idx.FIX_REINSTALL}"
    ]


def test_content_longer_than_header(idx_dir):
    path = file_path(idx_dir, "train", "labels")
    write_gz(path, struct.pack(">2I", 2049, 120) + bytes(125))

    lines = error_lines(idx_dir, "train")

    assert len(lines) == 1
    assert "5 extra bytes" in lines[0]


def test_wrong_magic(idx_dir):
    path = file_path(idx_dir, "test", "images")
    labels_path = file_path(idx_dir, "test", "labels")
    path.write_bytes(labels_path.read_bytes())

    lines = error_lines(idx_dir, "test")

    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: wrong magic number 2049, a label file (expected 2051)")


def test_not_gzip(idx_dir):
    path = file_path(idx_dir, "train", "labels")
    path.write_bytes(b"<html>404 Not Found</html>")

    lines = error_lines(idx_dir, "train")

    assert lines == [f"{path}: not a gzip file; {idx.FIX_REINSTALL}"]


def test_plain_idx_not_gzip(idx_dir):
    path = file_path(idx_dir, "train", "labels")
    path.write_bytes(gzip.decompress(path.read_bytes()))

    lines = error_lines(idx_dir, "train")

    assert len(lines) == 1
    assert "not gzip-compressed" in lines[0]
    assert "gzip " in lines[0].split(";", 1)[1]


def test_image_size_not_28(tmp_path):
    write_idx(tmp_path, "test", np.zeros((4, 32, 32), np.uint8), np.arange(4))

    lines = error_lines(tmp_path, "test")

    assert len(lines) == 1
    assert "images are 32x32, expected 28x28" in lines[0]


def test_label_above_9(tmp_path):
    labels = np.array([0, 1, 12, 3, 14])
    write_idx(tmp_path, "test", np.zeros((5, 28, 28), np.uint8), labels)

    lines = error_lines(tmp_path, "test")

    assert len(lines) == 1
    assert lines[0].startswith(f"{file_path(tmp_path, 'test', 'labels')}: ")
    assert "2 labels above 9 (first 12 at index 2)" in lines[0]


def test_count_mismatch(idx_dir):
    # Train labels (120) next to test images (40).
    labels_path = file_path(idx_dir, "test", "labels")
    labels_path.write_bytes(file_path(idx_dir, "train", "labels").read_bytes())

    lines = error_lines(idx_dir, "test")

    assert len(lines) == 1
    assert lines[0].startswith(f"{labels_path}: 120 labels, but 40 images in ")


def test_missing_file(idx_dir):
    path = file_path(idx_dir, "test", "labels")
    path.unlink()

    lines = error_lines(idx_dir, "test")

    assert lines == [f"{path}: file not found; {idx.FIX_INSTALL}"]


def test_several_bad_files_one_line_each(idx_dir):
    images_path = file_path(idx_dir, "train", "images")
    labels_path = file_path(idx_dir, "train", "labels")
    images_path.unlink()
    labels_path.write_bytes(b"junk")

    lines = error_lines(idx_dir, "train")

    assert len(lines) == 2
    assert lines[0].startswith(f"{images_path}: file not found")
    assert lines[1].startswith(f"{labels_path}: not a gzip file")


# Tasks and label mapping


def test_superclass_of_each_fine_label():
    expected = {
        "T-shirt/top": "Top",
        "Trouser": "Bottom",
        "Pullover": "Top",
        "Dress": "Top",
        "Coat": "Top",
        "Sandal": "Bottom",
        "Shirt": "Top",
        "Sneaker": "Bottom",
        "Bag": "Accessories",
        "Ankle boot": "Bottom",
    }
    task = get_task("superclass")

    mapped = task.map_labels(torch.arange(10, dtype=torch.uint8))

    assert mapped.dtype == torch.int64
    assert task.num_classes == 3
    for fine, superclass in enumerate(mapped.tolist()):
        assert task.class_names[superclass] == expected[data.FINE_CLASSES[fine]]


def test_fine_task_is_identity():
    task = get_task("fine")
    labels = torch.tensor([9, 0, 4, 8], dtype=torch.uint8)

    mapped = task.map_labels(labels)

    assert mapped.dtype == torch.int64
    assert mapped.tolist() == [9, 0, 4, 8]
    assert task.num_classes == 10


def test_get_task_unknown_name():
    with pytest.raises(ValueError) as caught:
        get_task("bogus")

    assert "'bogus'" in str(caught.value)
    assert "fine" in str(caught.value)
    assert "superclass" in str(caught.value)


# Locating the files


def test_candidate_dirs_env_var_first(monkeypatch, tmp_path):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))

    dirs = candidate_dirs(None)

    assert dirs[0] == tmp_path
    assert data.DEBIAN_DIR in dirs


def test_candidate_dirs_explicit_root_only(monkeypatch, tmp_path):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "from-env"))

    assert candidate_dirs(tmp_path / "explicit") == [tmp_path / "explicit"]


def test_locate_uses_env_var(monkeypatch, idx_dir):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(idx_dir))

    assert locate(download=False) == idx_dir


def test_locate_explicit_root_missing_files(idx_dir):
    file_path(idx_dir, "train", "images").unlink()
    file_path(idx_dir, "test", "labels").unlink()

    with pytest.raises(DataError) as caught:
        locate(idx_dir, download=False)

    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{file_path(idx_dir, 'train', 'images')}: file not found; ")
    assert lines[1].startswith(f"{file_path(idx_dir, 'test', 'labels')}: file not found; ")


def test_locate_nothing_found_lists_searched_dirs(monkeypatch, tmp_path):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "PROJECT_ROOT", tmp_path / "project")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    (tmp_path / "debian").mkdir()

    with pytest.raises(DataError) as caught:
        locate(download=False)

    message = str(caught.value)
    assert "`make data`" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "FASHION_MNIST_DIR" in message
    assert "data.root=PATH" in message
    assert f"{tmp_path / 'data' / 'FashionMNIST' / 'raw'}: directory not found" in message
    assert f"{tmp_path / 'project' / 'data' / 'FashionMNIST' / 'raw'}: " in message
    assert f"{tmp_path / 'home' / '.cache' / 'fashion-mnist'}: " in message
    assert f"{tmp_path / 'debian'}: missing train-images-idx3-ubyte.gz" in message
    assert "download skipped" in message


def test_locate_skips_empty_env_dir(monkeypatch, tmp_path, idx_dir):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "DEBIAN_DIR", idx_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "PROJECT_ROOT", tmp_path / "project")

    assert locate(download=False) == idx_dir


# The real dataset


@pytest.fixture(scope="module")
def real_test_split():
    return read_split(REAL_DIR, "test", verify=True)


@needs_real_data
def test_real_test_split_verifies(real_test_split):
    images, labels = real_test_split

    assert images.shape == (10000, 28, 28)
    assert labels.shape == (10000,)


@needs_real_data
def test_real_train_split_superclass_counts():
    _, labels = read_split(REAL_DIR, "train", verify=True)

    counts = get_task("superclass").map_labels(labels).bincount(minlength=3)

    assert labels.shape == (60000,)
    assert counts.tolist() == [30000, 24000, 6000]


@needs_real_data
def test_real_test_split_superclass_counts(real_test_split):
    _, labels = real_test_split

    counts = get_task("superclass").map_labels(labels).bincount(minlength=3)

    assert counts.tolist() == [5000, 4000, 1000]
