"""Test-set evaluation: loss, accuracy, confusion matrix and per-class scores.

Per-class accuracy is one-vs-rest binary accuracy over the whole test set: for class k, the
fraction of samples where (pred == k) equals (target == k). Each misclassified sample is wrong
for two classes (its true one and its predicted one), so sum_k (1 - ovr_acc_k) = 2 (1 - accuracy).
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multilabel_accuracy,
)

from fashion import plots

log = logging.getLogger(__name__)

REPORT_COLUMNS = ("precision", "recall", "f1", "support")


@dataclass
class Evaluation:
    """Scores of one classifier on one labelled set."""

    class_names: tuple[str, ...]
    loss: float
    accuracy: float
    confusion: torch.Tensor
    per_class_accuracy: dict[str, float]
    report: pd.DataFrame

    def metrics(self, prefix: str = "test") -> dict[str, float]:
        """Flatten the scores into MLflow metric keys such as "test/acc_t_shirt_top"."""
        flat = {f"{prefix}/loss": self.loss, f"{prefix}/acc": self.accuracy}
        for name, value in self.per_class_accuracy.items():
            flat[f"{prefix}/acc_{slug(name)}"] = value
        flat[f"{prefix}/macro_f1"] = float(self.report.loc["macro avg", "f1"])
        flat[f"{prefix}/weighted_f1"] = float(self.report.loc["weighted avg", "f1"])
        return flat

    def write(self, directory: Path, prefix: str = "test") -> list[Path]:
        """Write the report tables and confusion figures into `directory` and return their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []

        report_csv = directory / f"{prefix}_classification_report.csv"
        self.report.to_csv(report_csv, index_label="class")
        paths.append(report_csv)

        report_md = directory / f"{prefix}_classification_report.md"
        samples = int(self.confusion.sum())
        summary = (
            f"Accuracy {self.accuracy:.4f}, cross-entropy loss {self.loss:.4f}, "
            f"{samples} samples.\n\n"
        )
        report_md.write_text(summary + markdown_table(self.report) + "\n")
        paths.append(report_md)

        counts_csv = directory / f"{prefix}_confusion_counts.csv"
        counts = pd.DataFrame(
            self.confusion.numpy(), index=list(self.class_names), columns=list(self.class_names)
        )
        counts.to_csv(counts_csv, index_label="true \\ predicted")
        paths.append(counts_csv)

        figures = {
            "confusion": (None, "Confusion matrix (counts)"),
            "confusion_fraction": ("all", "Confusion matrix (fraction of all samples)"),
            "confusion_normalized": ("true", "Confusion matrix (normalized by true class)"),
        }
        for stem, (normalize, title) in figures.items():
            path = directory / f"{prefix}_{stem}.png"
            figure = plots.confusion_figure(
                self.confusion, self.class_names, normalize=normalize, title=title
            )
            figure.savefig(path, dpi=120, bbox_inches="tight")
            paths.append(path)

        log.info("Wrote %d evaluation files to %s", len(paths), directory)
        return paths


def evaluate(logits: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str]) -> Evaluation:
    """Score logits [N, C] against integer targets [N] with torchmetrics.

    Raises ValueError on mismatched shapes, out-of-range targets or class names that collide
    as metric keys.
    """
    logits, targets = _check_inputs(logits, targets, class_names)
    names = tuple(class_names)
    num_classes = len(names)
    preds = logits.argmax(dim=1)

    loss = F.cross_entropy(logits, targets).item()
    accuracy = multiclass_accuracy(preds, targets, num_classes, average="micro").item()
    confusion = multiclass_confusion_matrix(preds, targets, num_classes).to(torch.int64)

    # Multilabel accuracy over one-hot columns is exactly one-vs-rest accuracy per class.
    one_vs_rest = multilabel_accuracy(
        F.one_hot(preds, num_classes),
        F.one_hot(targets, num_classes),
        num_labels=num_classes,
        average=None,
    )
    per_class_accuracy = {
        name: value.item() for name, value in zip(names, one_vs_rest, strict=True)
    }

    report = _classification_report(preds, targets, names)
    return Evaluation(names, loss, accuracy, confusion, per_class_accuracy, report)


def one_vs_rest_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Compute one-vs-rest accuracy per class [C] from a confusion matrix (rows = true class)."""
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(
            f"confusion matrix must be square [C, C], got shape {list(confusion.shape)}"
        )

    counts = confusion.to(torch.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("confusion matrix is all zeros: there are no samples to score")

    true_positives = counts.diagonal()
    false_negatives = counts.sum(dim=1) - true_positives
    false_positives = counts.sum(dim=0) - true_positives
    return 1.0 - (false_negatives + false_positives) / total


def slug(name: str) -> str:
    """Turn a class name into a metric key part: "T-shirt/top" -> "t_shirt_top".

    The name is lowercased, each run of characters other than a-z and 0-9 becomes one "_",
    and leading or trailing "_" are dropped.
    """
    result = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not result:
        raise ValueError(f"class name {name!r} has no letters or digits to build a metric key from")
    return result


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (ddof=1), with std 0.0 for one value."""
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value, got an empty sequence")
    if len(values) == 1:
        return float(values[0]), 0.0
    return statistics.fmean(values), statistics.stdev(values)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f", index: bool = True) -> str:
    """Render `frame` as a GitHub-flavoured Markdown table without the `tabulate` package.

    Floats use `floatfmt`, missing values become empty cells, and numeric columns are
    right-aligned. With `index`, the index is the first column, headed by its name.
    """
    header = [str(column) for column in frame.columns]
    align = ["---:" if _is_numeric(frame[column]) else "---" for column in frame.columns]
    if index:
        header.insert(0, "" if frame.index.name is None else str(frame.index.name))
        align.insert(0, "---")

    rows = []
    for label, values in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = [_format_cell(value, floatfmt) for value in values]
        if index:
            cells.insert(0, _format_cell(label, floatfmt))
        rows.append(cells)

    lines = [_markdown_row(header), _markdown_row(align)]
    lines.extend(_markdown_row(cells) for cells in rows)
    return "\n".join(lines)


def _check_inputs(
    logits: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got {list(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have shape [{logits.shape[0]}] to match the logits, "
            f"got {list(targets.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("cannot evaluate an empty set: logits and targets have no samples")
    if len(class_names) != logits.shape[1]:
        raise ValueError(
            f"logits have {logits.shape[1]} columns but {len(class_names)} class names were "
            f"given ({list(class_names)}); pass one name per class"
        )
    slugs = [slug(name) for name in class_names]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"class names {list(class_names)} give duplicate metric keys {slugs}")

    targets = targets.detach().cpu().to(torch.int64)
    if targets.min() < 0 or targets.max() >= logits.shape[1]:
        raise ValueError(
            f"targets must lie in [0, {logits.shape[1] - 1}], "
            f"got values from {targets.min().item()} to {targets.max().item()}"
        )
    # Cross-entropy in float32 on the CPU, whatever precision and device produced the logits.
    return logits.detach().cpu().float(), targets


def _classification_report(
    preds: torch.Tensor, targets: torch.Tensor, names: tuple[str, ...]
) -> pd.DataFrame:
    num_classes = len(names)
    scorers = {
        "precision": multiclass_precision,
        "recall": multiclass_recall,
        "f1": multiclass_f1_score,
    }
    support = torch.bincount(targets, minlength=num_classes)

    columns = {}
    for column, scorer in scorers.items():
        per_class = scorer(preds, targets, num_classes, average=None).tolist()
        macro = scorer(preds, targets, num_classes, average="macro").item()
        weighted = scorer(preds, targets, num_classes, average="weighted").item()
        columns[column] = [*per_class, macro, weighted]
    total = int(support.sum())
    columns["support"] = [*support.tolist(), total, total]

    report = pd.DataFrame(columns, index=[*names, "macro avg", "weighted avg"])
    report.index.name = "class"
    return report[list(REPORT_COLUMNS)]


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _format_cell(value: object, floatfmt: str) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
