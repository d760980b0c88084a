"""The IDX file format of MNIST-style datasets: read and check a split, write one.

Every check works on the decompressed content, since gzip wrappers differ between mirrors.
"""

import gzip
import hashlib
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
FILE_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
OFFICIAL_COUNTS = {"train": 60000, "test": 10000}
# MD5 of the decompressed IDX content, because gzip wrappers differ between mirrors.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
IMAGE_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # IDX: unsigned bytes, 1 dimension
HEADER_SIZE = {IMAGE_MAGIC: 16, LABEL_MAGIC: 8}  # magic number and one uint32 per dimension
IMAGE_SIZE = 28

FIX_REINSTALL = "re-install it with `make data` or delete it"
FIX_INSTALL = "install the dataset with `make data` or `sudo apt-get install dataset-fashion-mnist`"


class DataError(Exception):
    """Raised with a message of one line per bad or missing file: path, reason, fix."""


class _FileCheckError(Exception):
    def __init__(self, reason: str, fix: str = FIX_REINSTALL) -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


def _format_size(num_bytes: int) -> str:
    if num_bytes >= 1_000_000:
        return f"{num_bytes / 1_000_000:.1f} MB"
    if num_bytes >= 1_000:
        return f"{num_bytes / 1_000:.1f} kB"
    return f"{num_bytes} bytes"


def _decompressed_prefix(raw: bytes) -> bytes:
    """Return whatever a truncated gzip stream still decompresses to."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)
    except zlib.error:
        return b""


def _declared_size(content: bytes, magic: int) -> int | None:
    """Return the content size that the IDX header declares, or None without a full header."""
    size = HEADER_SIZE[magic]
    if len(content) < size:
        return None
    dims = struct.unpack(f">{(size - 4) // 4}I", content[4:size])
    return size + math.prod(dims)


def _decompress(path: Path, magic: int) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _FileCheckError("file not found", FIX_INSTALL) from None
    except OSError as error:
        reason = f"cannot be read ({error.strerror})"
        raise _FileCheckError(reason, "make it a readable file") from None

    try:
        return gzip.decompress(raw)
    except gzip.BadGzipFile as error:
        if raw[:4] in (struct.pack(">I", IMAGE_MAGIC), struct.pack(">I", LABEL_MAGIC)):
            plain = path.with_suffix("")
            fix = f"compress it with `mv {path} {plain} && gzip {plain}`"
            raise _FileCheckError("not gzip-compressed (plain IDX content)", fix) from None
        if raw[:2] != b"\x1f\x8b":
            raise _FileCheckError("not a gzip file") from None
        raise _FileCheckError(f"corrupt gzip stream ({error})") from None
    except EOFError:
        prefix = _decompressed_prefix(raw)
        declared = _declared_size(prefix, magic)
        expected = f"header declares {_format_size(declared)}, " if declared else ""
        read = f"{_format_size(len(prefix))} decompressed"
        raise _FileCheckError(f"truncated gzip stream ({expected}{read})") from None
    except zlib.error as error:
        raise _FileCheckError(f"corrupt gzip stream ({error})") from None


def _parse_idx(content: bytes, magic: int) -> np.ndarray:
    """Parse IDX content: a big-endian header (magic number, dimensions), then uint8 data."""
    size = HEADER_SIZE[magic]
    if len(content) < size:
        raise _FileCheckError(f"content is {len(content)} bytes, too short for an IDX header")

    (found,) = struct.unpack(">I", content[:4])
    if found != magic:
        kind = {IMAGE_MAGIC: ", an image file", LABEL_MAGIC: ", a label file"}.get(found, "")
        raise _FileCheckError(f"wrong magic number {found}{kind} (expected {magic})")

    dims = struct.unpack(f">{(size - 4) // 4}I", content[4:size])
    if magic == IMAGE_MAGIC and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise _FileCheckError(f"images are {dims[1]}x{dims[2]}, expected 28x28")

    declared = size + math.prod(dims)
    if len(content) < declared:
        raise _FileCheckError(
            f"content too short ({declared} bytes declared, {len(content)} found)"
        )
    if len(content) > declared:
        raise _FileCheckError(
            f"content longer than declared ({len(content) - declared} extra bytes)"
        )

    return np.frombuffer(content, dtype=np.uint8, offset=size).reshape(dims)


def _read_file(path: Path, split: str, magic: int, verify: bool) -> np.ndarray:
    """Read and check one file on its own; raise _FileCheckError with its first problem."""
    content = _decompress(path, magic)
    array = _parse_idx(content, magic)

    if magic == LABEL_MAGIC and array.size and array.max() > 9:
        bad = np.flatnonzero(array > 9)
        value = int(array[bad[0]])
        raise _FileCheckError(f"{bad.size} labels above 9 (first {value} at index {bad[0]})")

    if verify:
        official = OFFICIAL_COUNTS[split]
        if len(array) != official:
            reason = f"{len(array)} items, but the official {split} split has {official}"
            raise _FileCheckError(reason, "load a subset with verify=False, or run `make data`")
        digest = hashlib.md5(content, usedforsecurity=False).hexdigest()
        if digest != OFFICIAL_MD5[path.name]:
            raise _FileCheckError(
                f"content MD5 {digest} is not the official one: not Fashion-MNIST content"
            )

    return array


def read_split(
    directory: Path, split: str, verify: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split: images uint8 [N, 28, 28] and fine labels int64 [N].

    Every file is checked before anything is returned. One DataError lists every bad file of
    the split, one line each with the path, its first problem and the fix. With `verify`,
    the counts and the MD5 of the decompressed content must match the official files.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    directory = Path(directory)

    images_path, labels_path = (directory / name for name in FILE_NAMES[split])
    problems: dict[Path, _FileCheckError] = {}
    arrays: dict[Path, np.ndarray] = {}
    for path, magic in ((images_path, IMAGE_MAGIC), (labels_path, LABEL_MAGIC)):
        try:
            arrays[path] = _read_file(path, split, magic, verify)
        except _FileCheckError as problem:
            problems[path] = problem

    if not problems and len(arrays[images_path]) != len(arrays[labels_path]):
        counts = f"{len(arrays[labels_path])} labels, but {len(arrays[images_path])} images"
        problems[labels_path] = _FileCheckError(
            f"{counts} in {images_path.name}",
            "re-install both files of the split with `make data`",
        )

    if problems:
        lines = [f"{path}: {p.reason}; {p.fix}" for path, p in problems.items()]
        raise DataError("\n".join(lines))

    images, labels = arrays.values()
    log.debug("read %d %s images from %s", len(images), split, directory)
    # frombuffer arrays are read-only views of the decompressed bytes, so copy before torch.
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def write_idx(directory: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write a split's two .gz files in the IDX format, for test fixtures and subsets.

    `images` is [N, H, W] and `labels` is [N], both with values in 0-255. Any H and W are
    written, though `read_split` accepts only 28x28.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        shapes = f"images {images.shape}, labels {labels.shape}"
        raise ValueError(f"expected images [N, H, W] and labels [N], got {shapes}")
    for name, array in (("images", images), ("labels", labels)):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{name} must lie in 0-255, got {array.min()}..{array.max()}")

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = FILE_NAMES[split]
    headers = {
        images_name: (struct.pack(">4I", IMAGE_MAGIC, *images.shape), images),
        labels_name: (struct.pack(">2I", LABEL_MAGIC, len(labels)), labels),
    }
    for name, (header, array) in headers.items():
        content = header + array.astype(np.uint8).tobytes()
        # mtime=0 makes the bytes reproducible. The rename keeps readers from seeing half a file.
        partial = directory / f"{name}.partial"
        partial.write_bytes(gzip.compress(content, mtime=0))
        partial.replace(directory / name)
