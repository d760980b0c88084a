"""Fashion-MNIST files: find the four IDX .gz files, check them, read them into tensors.

Also defines the label tasks: the 10 fine classes, and the 3 superclasses of the study.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from fashion.idx import (  # noqa: F401 (re-exported: the file layer is used through data)
    FILE_NAMES,
    OFFICIAL_COUNTS,
    OFFICIAL_MD5,
    SPLITS,
    DataError,
    read_split,
    write_idx,
)

log = logging.getLogger(__name__)

ENV_VAR = "FASHION_MNIST_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist

FIX_SEARCH = (
    "run `make data`, or `sudo apt-get install dataset-fashion-mnist`, "
    f"or set {ENV_VAR} or data.root=PATH to a directory that contains the four files"
)

FINE_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SUPERCLASSES = ("Top", "Bottom", "Accessories")
SUPERCLASS_OF_FINE = (0, 1, 0, 0, 0, 1, 0, 1, 2, 1)


@dataclass(frozen=True)
class Task:
    """A labelling of Fashion-MNIST: the class names and the class of each fine label."""

    name: str
    class_names: tuple[str, ...]
    fine_to_class: tuple[int, ...] = tuple(range(len(FINE_CLASSES)))

    def map_labels(self, fine_labels: torch.Tensor) -> torch.Tensor:
        """Map fine labels (0-9, any integer dtype) to this task's int64 class ids."""
        table = torch.tensor(self.fine_to_class, dtype=torch.int64, device=fine_labels.device)
        return table[fine_labels.long()]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


TASKS = {
    "fine": Task("fine", FINE_CLASSES),
    "superclass": Task("superclass", SUPERCLASSES, SUPERCLASS_OF_FINE),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def candidate_dirs(root: str | os.PathLike | None) -> list[Path]:
    """List the directories to search, in order: only `root` if given, else the
    FASHION_MNIST_DIR directory followed by the usual places."""
    if root is not None:
        return [Path(root).expanduser().absolute()]

    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser().absolute())
    dirs += [
        Path.cwd() / "data" / "FashionMNIST" / "raw",  # torchvision layout
        PROJECT_ROOT / "data" / "FashionMNIST" / "raw",
        Path.home() / ".cache" / "fashion-mnist",
        DEBIAN_DIR,
    ]

    unique, seen = [], set()
    for directory in dirs:
        if directory.resolve() not in seen:
            seen.add(directory.resolve())
            unique.append(directory)
    return unique


def _missing_files(directory: Path) -> list[str]:
    names = [name for split in SPLITS for name in FILE_NAMES[split]]
    return [name for name in names if not (directory / name).is_file()]


def _download() -> tuple[Path | None, str]:
    """Download with torchvision into <project root>/data; return (raw dir or None, outcome)."""
    target = PROJECT_ROOT / "data"
    log.info("Fashion-MNIST not found locally; downloading it into %s", target)
    try:
        from torchvision.datasets import FashionMNIST

        dataset = FashionMNIST(str(target), download=True)
    except ImportError:
        return None, "download skipped because torchvision is not installed"
    # URLError is an OSError; torchvision raises RuntimeError once every mirror has failed.
    except (OSError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:200]
        log.warning("Fashion-MNIST download failed: %s", reason)
        return None, f"download into {target} failed ({reason})"
    return Path(dataset.raw_folder), f"downloaded into {dataset.raw_folder}"


def locate(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the first candidate directory that contains all four files, downloading them
    when none does and `download` is true. Raise DataError when nothing is found."""
    dirs = candidate_dirs(root)

    if root is not None:
        missing = _missing_files(dirs[0])
        if missing:
            fix = "put the four files there, or set data.root=null to search the usual places"
            raise DataError(
                "\n".join(f"{dirs[0] / name}: file not found; {fix}" for name in missing)
            )
        return dirs[0]

    report = []
    for directory in dirs:
        missing = _missing_files(directory)
        if not missing:
            if report and os.environ.get(ENV_VAR):
                env_dir = os.environ[ENV_VAR]
                log.warning("%s=%s lacks the four files; using %s", ENV_VAR, env_dir, directory)
            log.info("Fashion-MNIST found in %s", directory)
            return directory
        reason = (
            "directory not found" if not directory.is_dir() else f"missing {', '.join(missing)}"
        )
        report.append(f"  {directory}: {reason}")

    outcome = "download skipped (download=False)"
    if download:
        raw_dir, outcome = _download()
        if raw_dir is not None and not _missing_files(raw_dir):
            return raw_dir
    report.append(f"  {outcome}")

    header = f"Fashion-MNIST not found in any directory searched; {FIX_SEARCH}. Searched:"
    raise DataError("\n".join([header, *report]))


def load(
    root: str | os.PathLike | None = None,
    split: str = "train",
    verify: bool = True,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Locate the files and read one split; see `locate` and `read_split`."""
    return read_split(locate(root, download), split, verify)


def main(argv: list[str] | None = None) -> int:
    """`python -m fashion.data`: find the files, verify both splits, print the directory."""
    parser = argparse.ArgumentParser(description="Find and verify the Fashion-MNIST files.")
    parser.add_argument("--root", help="directory holding the four IDX .gz files")
    parser.add_argument("--no-download", action="store_true", help="never try a download")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        directory = locate(args.root, download=not args.no_download)
        for split in SPLITS:
            read_split(directory, split, verify=True)
    except DataError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"Fashion-MNIST verified in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
