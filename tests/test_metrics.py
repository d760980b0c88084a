"""Metrics against small cases worked out by hand."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from fashion.metrics import (
    evaluate,
    markdown_table,
    mean_std,
    one_vs_rest_accuracy,
    slug,
)

NAMES = ("Top", "Bottom", "Accessories")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Six samples with supports 3 / 2 / 1, as (true, pred) pairs
# (0,0) (0,0) (0,1) (1,1) (1,2) (2,2). Four are right and two wrong.
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2])
PREDS = torch.tensor([0, 0, 1, 1, 2, 2])
CONFUSION = [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
ACCURACY = 4 / 6
# Class k is wrong one-vs-rest on its false negatives plus its false positives,
# which are Top 1 + 0, Bottom 1 + 1 and Accessories 0 + 1.
ONE_VS_REST = {"Top": 5 / 6, "Bottom": 4 / 6, "Accessories": 5 / 6}
# (precision, recall, f1, support), with f1 = 2 p r / (p + r).
REPORT = {
    "Top": (2 / 2, 2 / 3, 0.8, 3),
    "Bottom": (1 / 2, 1 / 2, 0.5, 2),
    "Accessories": (1 / 2, 1 / 1, 2 / 3, 1),
    "macro avg": ((1 + 0.5 + 0.5) / 3, (2 / 3 + 0.5 + 1) / 3, (0.8 + 0.5 + 2 / 3) / 3, 6),
    "weighted avg": (
        (3 * 1 + 2 * 0.5 + 1 * 0.5) / 6,
        (3 * 2 / 3 + 2 * 0.5 + 1 * 1) / 6,
        (3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6,
        6,
    ),
}


def logits_for(preds: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(preds, num_classes).float() * 3.0


@pytest.fixture
def evaluation():
    return evaluate(logits_for(PREDS), TARGETS, NAMES)


def test_evaluate_confusion_and_accuracy(evaluation):
    assert evaluation.class_names == NAMES
    assert evaluation.confusion.dtype == torch.int64
    assert evaluation.confusion.tolist() == CONFUSION
    assert evaluation.accuracy == pytest.approx(ACCURACY)


def test_evaluate_one_vs_rest_accuracy(evaluation):
    assert list(evaluation.per_class_accuracy) == list(NAMES)
    for name, expected in ONE_VS_REST.items():
        assert evaluation.per_class_accuracy[name] == pytest.approx(expected), name


def test_one_vs_rest_from_confusion():
    values = one_vs_rest_accuracy(torch.tensor(CONFUSION))
    assert values.tolist() == pytest.approx(list(ONE_VS_REST.values()))


def test_one_vs_rest_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        one_vs_rest_accuracy(torch.zeros(2, 3, dtype=torch.int64))


def test_one_vs_rest_errors_sum_to_twice_error():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 10, generator=generator)
    targets = torch.randint(0, 10, (500,), generator=generator)
    result = evaluate(logits, targets, [f"class {k}" for k in range(10)])

    from_confusion = one_vs_rest_accuracy(result.confusion)
    assert from_confusion.tolist() == pytest.approx(list(result.per_class_accuracy.values()))
    assert (1 - from_confusion).sum().item() == pytest.approx(2 * (1 - result.accuracy))


def test_evaluate_classification_report(evaluation):
    report = evaluation.report
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    assert list(report.index) == [*NAMES, "macro avg", "weighted avg"]
    for row, (precision, recall, f1, support) in REPORT.items():
        assert report.loc[row, "precision"] == pytest.approx(precision), row
        assert report.loc[row, "recall"] == pytest.approx(recall), row
        assert report.loc[row, "f1"] == pytest.approx(f1), row
        assert report.loc[row, "support"] == support, row


def test_evaluate_cross_entropy_by_hand():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    targets = torch.tensor([0, 2])
    # loss_i = log(sum_j exp z_ij) - z_i,target
    first = math.log(math.e + 2) - 1.0
    second = math.log(2 + math.e**2) - 0.0
    result = evaluate(logits, targets, NAMES)
    assert result.loss == pytest.approx((first + second) / 2, rel=1e-6)
    assert result.accuracy == pytest.approx(0.5)


def test_evaluate_accepts_bfloat16_logits():
    result = evaluate(logits_for(PREDS).bfloat16(), TARGETS, NAMES)
    assert result.accuracy == pytest.approx(ACCURACY)


def test_metrics_keys_and_values(evaluation):
    flat = evaluation.metrics()
    assert set(flat) == {
        "test/loss",
        "test/acc",
        "test/acc_top",
        "test/acc_bottom",
        "test/acc_accessories",
        "test/macro_f1",
        "test/weighted_f1",
    }
    assert flat["test/acc"] == pytest.approx(ACCURACY)
    assert flat["test/acc_bottom"] == pytest.approx(4 / 6)
    assert flat["test/macro_f1"] == pytest.approx(REPORT["macro avg"][2])
    assert flat["test/weighted_f1"] == pytest.approx(REPORT["weighted avg"][2])
    assert all(isinstance(value, float) for value in flat.values())


def test_metrics_slugs_fine_names():
    names = ["T-shirt/top", "Trouser", "Ankle boot"]
    flat = evaluate(logits_for(torch.tensor([0, 1, 2])), torch.tensor([0, 1, 2]), names).metrics()
    assert "test/acc_t_shirt_top" in flat
    assert "test/acc_ankle_boot" in flat


@pytest.mark.parametrize(
    ("logits", "targets", "names", "message"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), NAMES, r"\[N, C\]"),
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), NAMES, "targets must have shape"),
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), NAMES[:2], "2 class names"),
        (torch.zeros(4, 3), torch.full((4,), 3), NAMES, r"lie in \[0, 2\]"),
        (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), ["A b", "a-B"], "duplicate"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), NAMES, "empty"),
    ],
)
def test_evaluate_rejects_bad_input(logits, targets, names, message):
    with pytest.raises(ValueError, match=message):
        evaluate(logits, targets, names)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("T-shirt/top", "t_shirt_top"),
        ("Ankle boot", "ankle_boot"),
        ("Accessories", "accessories"),
        ("  Bag (small)!", "bag_small"),
        ("Class 10", "class_10"),
    ],
)
def test_slug(name, expected):
    assert slug(name) == expected


def test_slug_rejects_symbols_only():
    with pytest.raises(ValueError, match="'/-'"):
        slug("/-")


def test_mean_std_three_values():
    mean, std = mean_std([0.97, 0.98, 0.99])
    assert mean == pytest.approx(0.98)
    # deviations -0.01, 0, 0.01: sum of squares 2e-4 over n - 1 = 2 gives variance 1e-4
    assert std == pytest.approx(0.01)


def test_mean_std_one_value():
    assert mean_std([0.5]) == (0.5, 0.0)


def test_mean_std_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        mean_std([])


def test_markdown_table_output():
    frame = pd.DataFrame(
        {"model": ["mlp", "cnn|bn"], "acc": [0.98519, float("nan")], "runs": [3, 1]},
        index=pd.Index(["a", "b"], name="key"),
    )
    expected = (
        "| key | model | acc | runs |\n"
        "| --- | --- | ---: | ---: |\n"
        "| a | mlp | 0.9852 | 3 |\n"
        "| b | cnn\\|bn |  | 1 |"
    )
    assert markdown_table(frame) == expected


def test_markdown_table_without_index_and_floatfmt():
    frame = pd.DataFrame({"acc": [0.5]})
    assert markdown_table(frame, floatfmt=".1%", index=False) == "| acc |\n| ---: |\n| 50.0% |"


def test_write_creates_every_file(evaluation, tmp_path: Path):
    directory = tmp_path / "artifacts"
    paths = evaluation.write(directory, prefix="test")

    expected = {
        "test_classification_report.csv",
        "test_classification_report.md",
        "test_confusion_counts.csv",
        "test_confusion.png",
        "test_confusion_fraction.png",
        "test_confusion_normalized.png",
    }
    assert {path.name for path in paths} == expected
    assert sorted(path.name for path in directory.iterdir()) == sorted(expected)
    for path in paths:
        assert path.stat().st_size > 0, path.name
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_SIGNATURE, path.name


def test_write_tables_content(evaluation, tmp_path: Path):
    evaluation.write(tmp_path, prefix="val")

    report = pd.read_csv(tmp_path / "val_classification_report.csv", index_col="class")
    assert list(report.index) == [*NAMES, "macro avg", "weighted avg"]
    assert report.loc["Top", "recall"] == pytest.approx(2 / 3)

    counts = pd.read_csv(tmp_path / "val_confusion_counts.csv", index_col=0)
    assert list(counts.columns) == list(NAMES)
    assert counts.to_numpy().tolist() == CONFUSION

    markdown = (tmp_path / "val_classification_report.md").read_text()
    assert "Accuracy 0.6667" in markdown
    assert "| Accessories | 0.5000 | 1.0000 | 0.6667 | 1 |" in markdown
