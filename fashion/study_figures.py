"""Matplotlib figures that compare models: loss curves and test accuracy with spread."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def loss_curves_by_model(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Plot train and val loss per epoch, one panel per model, with a shared loss axis."""
    if not histories:
        raise ValueError("loss_curves_by_model needs at least one model's history, got none")

    columns = min(len(histories), 3)
    rows = math.ceil(len(histories) / columns)
    fig = Figure(figsize=(4.5 * columns, 3.5 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for ax, (model, history) in zip(axes, histories.items(), strict=False):
        for stage in ("train", "val"):
            values = list(history.get(f"{stage}/loss", []))
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=stage)
        ax.set_title(model)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("cross-entropy loss")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes[len(histories) :]:
        ax.set_visible(False)
    fig.suptitle("Train and validation loss by model")
    return fig


def accuracy_bars(
    names: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """Plot mean test accuracy per model with std error bars and optional reference markers.

    The y axis is zoomed to the data, because accuracies near 0.99 are indistinguishable on an
    axis starting at 0.
    """
    if not len(names) == len(means) == len(stds):
        raise ValueError(
            f"names, means and stds must have equal lengths, got "
            f"{len(names)}, {len(means)} and {len(stds)}"
        )
    reference = reference or {}
    means_array, stds_array = np.asarray(means, float), np.asarray(stds, float)

    fig = Figure(figsize=(max(5.0, 1.1 * len(names) + 2.0), 4.5), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    ax.bar(positions, means_array, yerr=stds_array, capsize=4, label="mean ± std")
    for position, mean, std in zip(positions, means_array, stds_array, strict=True):
        offset = {"xytext": (0, 3), "textcoords": "offset points"}
        ax.annotate(f"{mean:.4f}", (position, mean + std), ha="center", fontsize=8, **offset)

    marked = [(i, reference[name]) for i, name in enumerate(names) if name in reference]
    if marked:
        x, y = zip(*marked, strict=True)
        ax.scatter(x, y, marker="D", color="tab:red", zorder=3, label="course study")

    values = np.concatenate([means_array - stds_array, means_array + stds_array])
    values = np.concatenate([values, [value for _, value in marked]])
    if len(values):
        low, high = float(values.min()), float(values.max())
        margin = max(high - low, 0.002) * 0.3
        ax.set_ylim(max(0.0, low - margin), high + margin)
    ax.set_xticks(positions, labels=list(names), rotation=30, ha="right")
    ax.set_xlabel("model")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy (mean ± sample std)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
