"""Figures carry the caller's class names and handle edge cases without raising."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text

from fashion import plots, study_figures

TASK_NAMES = ("Top", "Bottom", "Accessories")
FINE_NAMES = (
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


def texts(figure: Figure) -> set[str]:
    """Return every string drawn on the figure: titles, axis labels, tick labels, cell values."""
    figure.draw_without_rendering()
    return {artist.get_text() for artist in figure.findobj(Text) if artist.get_text()}


def random_images(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize("normalize", [None, "all", "true"])
def test_confusion_figure_names_and_cells(normalize):
    confusion = torch.tensor([[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    figure = plots.confusion_figure(confusion, TASK_NAMES, normalize=normalize, title="run 7")
    drawn = texts(figure)

    assert set(TASK_NAMES) <= drawn
    assert "run 7" in drawn
    assert "predicted class" in drawn
    assert "true class" in drawn
    cell = {None: "2", "all": "0.3333", "true": "0.667"}[normalize]
    assert cell in drawn


def test_confusion_figure_ten_classes_numpy():
    confusion = np.eye(10, dtype=np.int64) * 1000
    drawn = texts(plots.confusion_figure(confusion, FINE_NAMES))
    assert set(FINE_NAMES) <= drawn
    assert "1000" in drawn
    assert "Confusion matrix (counts)" in drawn


def test_confusion_figure_rejects_bad_input():
    with pytest.raises(ValueError, match="normalize"):
        plots.confusion_figure(np.eye(3), TASK_NAMES, normalize="pred")
    with pytest.raises(ValueError, match="2 class names"):
        plots.confusion_figure(np.eye(3), TASK_NAMES[:2])


def test_curves_figure_two_panels():
    history = {
        "train/loss": [0.9, 0.5, 0.3],
        "val/loss": [1.0, 0.6, 0.4],
        "train/acc": [0.6, 0.8, 0.9],
        "val/acc": [0.55, 0.75, 0.85],
    }
    figure = plots.curves_figure(history, title="model_2 seed 0")
    drawn = texts(figure)

    assert len(figure.axes) == 2
    assert set(history) <= drawn
    assert "model_2 seed 0" in drawn
    assert "epoch" in drawn
    loss_line = figure.axes[0].get_lines()[0]
    assert list(loss_line.get_xdata()) == [1, 2, 3]
    assert list(loss_line.get_ydata()) == [0.9, 0.5, 0.3]


def test_curves_figure_without_accuracy():
    drawn = texts(plots.curves_figure({"train/loss": [1.0]}))
    assert "no acc history" in drawn


def test_gallery_figure_captions():
    figure = plots.gallery_figure(
        random_images(2), [0, 2], [0, 1], [0.987, 0.51], TASK_NAMES, title="Gallery"
    )
    drawn = texts(figure)
    assert "true: Top / pred: Top (0.99)" in drawn
    assert "true: Accessories / pred: Bottom (0.51)" in drawn
    assert "Gallery" in drawn


def test_gallery_figure_rejects_length_mismatch():
    with pytest.raises(ValueError, match="3 images"):
        plots.gallery_figure(random_images(3), [0], [0], [0.5], TASK_NAMES, title="x")


def test_prediction_gallery_orders_by_confidence():
    logits = torch.tensor(
        [[5.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 2.0], [3.0, 0.0, 0.0]]
    )
    targets = torch.tensor([0, 0, 1, 0, 1])
    correct, wrong = plots.prediction_gallery(random_images(5), logits, targets, TASK_NAMES, 2)

    correct_titles = [ax.get_title() for ax in correct.axes if ax.get_title()]
    wrong_titles = [ax.get_title() for ax in wrong.axes if ax.get_title()]
    assert len(correct_titles) == 2
    assert correct_titles[0].startswith("true: Bottom / pred: Bottom")
    assert correct_titles[1].startswith("true: Top / pred: Top")
    assert len(wrong_titles) == 2
    assert wrong_titles[0].startswith("true: Bottom / pred: Top")
    assert wrong_titles[1].startswith("true: Top / pred: Accessories")
    assert "Most confident wrong predictions (2 shown, 2 of 5 wrong)" in texts(wrong)


def test_prediction_gallery_zero_wrong():
    targets = torch.tensor([0, 1, 2, 1])
    logits = torch.nn.functional.one_hot(targets, 3).float() * 4.0
    correct, wrong = plots.prediction_gallery(random_images(4), logits, targets, TASK_NAMES)

    assert sum(1 for ax in correct.axes if ax.get_title()) == 4
    drawn = texts(wrong)
    assert "no images" in drawn
    assert "Most confident wrong predictions (0 shown, 0 of 4 wrong)" in drawn


def test_prediction_gallery_float_channel_images():
    images = torch.rand(3, 1, 28, 28)
    logits = torch.randn(3, 10)
    targets = torch.tensor([0, 5, 9])
    correct, wrong = plots.prediction_gallery(images, logits, targets, FINE_NAMES)
    assert isinstance(correct, Figure)
    assert isinstance(wrong, Figure)


def test_label_histograms_counts():
    fine = torch.tensor([0, 1, 1, 8, 9, 9, 9])
    task = torch.tensor([0, 1, 1, 2, 1, 1, 1])
    figure = plots.label_histograms(fine, task, FINE_NAMES, TASK_NAMES)
    drawn = texts(figure)

    assert set(FINE_NAMES) <= drawn
    assert set(TASK_NAMES) <= drawn
    fine_heights = [bar.get_height() for bar in figure.axes[0].patches]
    task_heights = [bar.get_height() for bar in figure.axes[1].patches]
    assert fine_heights == [1, 2, 0, 0, 0, 0, 0, 0, 1, 3]
    assert task_heights == [1, 5, 1]


def test_label_histograms_rejects_unnamed_label():
    with pytest.raises(ValueError, match="label 3 is out of range"):
        plots.label_histograms([0], [3], FINE_NAMES, TASK_NAMES)


def test_example_grid_row_per_class():
    labels = torch.tensor([0, 1, 2] * 4 + [0])
    figure = plots.example_grid(random_images(13), labels, TASK_NAMES, per_class=4, seed=1)
    drawn = texts(figure)

    assert len(figure.axes) == 3 * 4
    assert set(TASK_NAMES) <= drawn
    # every class has at least 4 members, so every cell shows an image
    assert all(len(ax.get_images()) == 1 for ax in figure.axes)


def test_example_grid_short_class_leaves_blank_cells():
    labels = torch.tensor([0, 0, 0, 1])
    figure = plots.example_grid(random_images(4), labels, TASK_NAMES, per_class=2)
    images_per_row = [
        sum(len(ax.get_images()) for ax in figure.axes[row * 2 : row * 2 + 2]) for row in range(3)
    ]
    assert images_per_row == [2, 1, 0]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_augmentation_grid_rows(dtype):
    before = random_images(10)
    after = before.flip(-1)
    if dtype == torch.float32:
        before, after = before.float() / 255, after.float() / 255
    figure = plots.augmentation_grid(before, after, title="flip")
    drawn = texts(figure)

    assert {"before", "after", "flip"} <= drawn
    assert len(figure.axes) == 4 * 8  # 10 images wrap into two before/after pairs of rows
    assert sum(len(ax.get_images()) for ax in figure.axes) == 20


def test_augmentation_grid_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        plots.augmentation_grid(random_images(2), random_images(3))


def test_loss_curves_by_model_panels():
    histories = {
        f"model_{k}": {"train/loss": [0.5, 0.3], "val/loss": [0.6, 0.4]} for k in range(1, 5)
    }
    figure = study_figures.loss_curves_by_model(histories)
    visible = [ax for ax in figure.axes if ax.get_visible()]

    assert len(visible) == 4
    assert [ax.get_title() for ax in visible] == list(histories)
    assert all(len(ax.get_lines()) == 2 for ax in visible)


def test_loss_curves_by_model_rejects_empty():
    with pytest.raises(ValueError, match="at least one"):
        study_figures.loss_curves_by_model({})


def test_accuracy_bars_with_reference():
    names = ["model_1", "model_2", "model_3"]
    figure = study_figures.accuracy_bars(
        names, [0.985, 0.990, 0.986], [0.001, 0.0005, 0.0], reference={"model_2": 0.9907}
    )
    drawn = texts(figure)
    axes = figure.axes[0]

    assert set(names) <= drawn
    assert "0.9900" in drawn
    assert len(axes.collections) >= 1  # the reference marker
    low, high = axes.get_ylim()
    assert low > 0.9
    assert high > 0.9907


def test_accuracy_bars_rejects_length_mismatch():
    with pytest.raises(ValueError, match="equal lengths"):
        study_figures.accuracy_bars(["a", "b"], [0.9], [0.0])
