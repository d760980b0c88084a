"""Choices that depend on the hardware: accelerator, precision, threads, memory format."""

import logging
import os
import platform
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# precisions Lightning 2 accepts, plus our "auto"
PRECISIONS = (
    "auto",
    "32-true",
    "32",
    "16-mixed",
    "bf16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "transformer-engine",
)


@cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has bf16 dot-product or AMX tile instructions.

    Without them bf16 autocast on CPU emulates the arithmetic and runs slower than fp32.
    """
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "avx_ne_convert"})


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or what the platform module reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(accelerator: str) -> str:
    """Name the hardware a run trains on, for its tags and reports."""
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_model()} ({os.cpu_count()} logical CPUs)"


def resolve_accelerator(accelerator: str) -> str:
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """Turn "auto" into a concrete Lightning precision for the device that will train."""
    if str(precision) != "auto":
        return str(precision)
    if accelerator in ("gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator == "cpu" and cpu_has_fast_bf16():
        return "bf16-mixed"
    return "32-true"


def resolve_channels_last(setting: str | bool, arch: str, accelerator: str) -> bool:
    """channels_last pays off for convolutions; an MLP gains nothing from it."""
    if setting == "auto":
        return arch == "cnn"
    return bool(setting)


def configure_threads(threads: int | None) -> int:
    """Set intra-op threads; None keeps PyTorch's default (one per physical core)."""
    if threads:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    log.debug("torch threads: %d of %d logical CPUs", used, os.cpu_count() or 0)
    return used
