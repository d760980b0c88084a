"""Matplotlib figures for one run: its evaluation and its data.

Every function builds a `matplotlib.figure.Figure` directly, without pyplot, so no global state
or interactive backend is involved. Save with `fig.savefig(path, dpi=120, bbox_inches="tight")`.
Class labels always come from the caller's `class_names`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

NORMALIZATIONS = (None, "all", "true")
Labels = Sequence[int] | torch.Tensor | np.ndarray


def confusion_figure(
    confusion: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    normalize: str | None = None,
    title: str = "",
) -> Figure:
    """Draw a confusion matrix (rows = true class) as a heatmap with a value in each cell.

    `normalize` is None for counts, "all" for the fraction of all samples, or "true" for the
    fraction of each true class, so rows sum to 1. A class without samples gets a row of zeros.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    counts = _to_numpy(confusion).astype(np.float64)
    size = len(class_names)
    if counts.shape != (size, size):
        raise ValueError(
            f"confusion matrix has shape {counts.shape} but {size} class names were given: "
            "pass one name per row"
        )

    if normalize == "all":
        values, fmt = counts / max(counts.sum(), 1.0), ".4f"
    elif normalize == "true":
        values, fmt = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0), ".3f"
    else:
        values, fmt = counts, ".0f"

    side = max(4.5, 0.75 * size + 2.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)

    font = 10 if size <= 6 else 8
    threshold = values.max() / 2 if values.max() > 0 else 1.0
    for (row, col), value in np.ndenumerate(values):
        color = "white" if value > threshold else "black"
        ax.text(col, row, format(value, fmt), ha="center", va="center", color=color, fontsize=font)

    ax.set_xticks(range(size), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(size), labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    default_title = {None: "counts", "all": "fraction of all samples", "true": "row-normalized"}
    ax.set_title(title or f"Confusion matrix ({default_title[normalize]})")
    return fig


def curves_figure(history: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Plot per-epoch loss and accuracy side by side, with epochs counted from 1.

    Keys whose last part starts with "loss" ("train/loss") go left, "acc" ("val/acc") right.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, kind, label in ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "acc", "accuracy")):
        keys = [key for key in history if key.rsplit("/", 1)[-1].startswith(kind)]
        for key in keys:
            values = list(history[key])
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=key)
        if keys:
            ax.legend()
        else:
            _write_note(ax, f"no {kind} history")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(label.capitalize())
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Training curves")
    return fig


def gallery_figure(
    images: torch.Tensor,
    targets: Labels,
    preds: Labels,
    confidences: Sequence[float] | torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    title: str,
) -> Figure:
    """Show images captioned "true: X / pred: Y (0.99)", with wrong predictions in red."""
    pixels = _to_images(images)
    targets, preds = _to_numpy(targets).astype(int), _to_numpy(preds).astype(int)
    confidences = _to_numpy(confidences).astype(float)
    count = len(pixels)
    if not len(targets) == len(preds) == len(confidences) == count:
        raise ValueError(
            f"gallery needs one target, prediction and confidence per image: got {count} images, "
            f"{len(targets)} targets, {len(preds)} predictions, {len(confidences)} confidences"
        )

    columns = max(1, min(count, 4))
    rows = max(1, math.ceil(count / columns))
    fig = Figure(figsize=(3.2 * columns, 3.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    if count == 0:
        _write_note(axes[0], "no images")

    for ax, image, target, pred, confidence in zip(
        axes, pixels, targets, preds, confidences, strict=False
    ):
        _show(ax, image)
        caption = f"true: {class_names[target]} / pred: {class_names[pred]} ({confidence:.2f})"
        ax.set_title(caption, fontsize=8, color="black" if target == pred else "tab:red")
    fig.suptitle(title)
    return fig


def prediction_gallery(
    images: torch.Tensor,
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_names: Sequence[str],
    count: int = 16,
) -> tuple[Figure, Figure]:
    """Build galleries of the most confident correct and the most confident wrong predictions.

    Confidence is the softmax probability of the predicted class. Either gallery may hold fewer
    than `count` images, or none.
    """
    pixels = _to_images(images)
    probabilities = torch.softmax(logits.detach().cpu().float(), dim=1)
    confidences, preds = probabilities.max(dim=1)
    targets = targets.detach().cpu().long()
    correct = preds == targets

    figures = []
    for mask, kind in ((correct, "correct"), (~correct, "wrong")):
        indices = mask.nonzero().flatten()
        indices = indices[confidences[indices].argsort(descending=True)][:count]
        tally = f"{len(indices)} shown, {int(mask.sum())} of {len(mask)} {kind}"
        title = f"Most confident {kind} predictions ({tally})"
        selected = (pixels[indices.numpy()], targets[indices], preds[indices], confidences[indices])
        figures.append(gallery_figure(*selected, class_names, title))
    return figures[0], figures[1]


def label_histograms(
    fine_labels: Labels, task_labels: Labels, fine_names: Sequence[str], task_names: Sequence[str]
) -> Figure:
    """Plot sample counts per Fashion-MNIST label and per task class, one bar panel each."""
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[len(fine_names), max(len(task_names), 3)])
    panels = ((fine_labels, fine_names, "Fashion-MNIST labels"), (task_labels, task_names, "Task"))
    for ax, (labels, names, title) in zip(axes, panels, strict=True):
        counts = np.bincount(_to_numpy(labels).astype(int), minlength=len(names))
        if len(counts) > len(names):
            raise ValueError(
                f"label {len(counts) - 1} is out of range for {len(names)} class names "
                f"{list(names)}: pass a name for every label"
            )
        bars = ax.bar(range(len(names)), counts, color="tab:blue")
        ax.bar_label(bars, fontsize=8)
        ax.set_xticks(range(len(names)), labels=list(names), rotation=45, ha="right")
        ax.set_xlabel("class")
        ax.set_ylabel("samples")
        ax.set_title(f"{title} ({int(counts.sum())} samples)")
    return fig


def example_grid(
    images: torch.Tensor,
    labels: Labels,
    class_names: Sequence[str],
    per_class: int = 8,
    seed: int = 0,
) -> Figure:
    """Show `per_class` randomly drawn images of each class, one labelled row per class."""
    pixels = _to_images(images)
    labels = torch.as_tensor(_to_numpy(labels)).long()
    if len(labels) != len(pixels):
        raise ValueError(f"example_grid got {len(pixels)} images but {len(labels)} labels")
    generator = torch.Generator().manual_seed(seed)

    rows = len(class_names)
    fig = Figure(figsize=(1.1 * per_class + 1.5, 1.1 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, per_class, squeeze=False)
    for row, name in enumerate(class_names):
        members = (labels == row).nonzero().flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        _draw_image_row(axes[row], pixels[chosen.numpy()], name)
    fig.suptitle(f"Random examples per class (seed {seed})")
    return fig


def augmentation_grid(before: torch.Tensor, after: torch.Tensor, title: str = "") -> Figure:
    """Show images before and after augmentation in alternating rows, up to 8 per row."""
    original, augmented = _to_images(before), _to_images(after)
    if original.shape != augmented.shape:
        raise ValueError(
            f"before and after must have the same shape, got {original.shape} and {augmented.shape}"
        )

    count = len(original)
    columns = max(1, min(count, 8))
    blocks = max(1, math.ceil(count / columns))
    fig = Figure(figsize=(1.2 * columns + 1.2, 2.5 * blocks + 0.6), layout="constrained")
    axes = fig.subplots(2 * blocks, columns, squeeze=False)
    for block in range(blocks):
        part = slice(block * columns, (block + 1) * columns)
        _draw_image_row(axes[2 * block], original[part], "before")
        _draw_image_row(axes[2 * block + 1], augmented[part], "after")
    fig.suptitle(title or "Augmentation: before and after")
    return fig


def _to_numpy(values: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()  # NumPy has no bfloat16
        return values.numpy()
    return np.asarray(values)


def _to_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return grayscale images [K, H, W] as float in [0, 1], from uint8 or float [0, 1] input."""
    pixels = _to_numpy(images)
    if pixels.ndim == 4 and pixels.shape[1] == 1:
        pixels = pixels[:, 0]
    if pixels.ndim != 3:
        raise ValueError(f"images must have shape [K, H, W] or [K, 1, H, W], got {pixels.shape}")
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    return pixels.astype(np.float32)


def _write_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _show(ax: Axes, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)


def _draw_image_row(axes: Sequence[Axes], pixels: np.ndarray, label: str) -> None:
    """Fill a row of axes with images, leaving spare axes blank, and name the row."""
    for ax, image in zip(axes, pixels, strict=False):
        _show(ax, image)
    # Ticks and spines are hidden instead of the whole axes, which would hide the row name too.
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
