"""Test evaluation files and figures that a finished run logs beside its metrics."""

import logging
import tempfile
from pathlib import Path

import torch
from matplotlib.figure import Figure
from mlflow import MlflowClient
from torchmetrics.functional.classification import multiclass_accuracy

from fashion import plots, tracking
from fashion.data import FINE_CLASSES, SUPERCLASSES, get_task
from fashion.datamodule import FashionDataModule
from fashion.metrics import evaluate
from fashion.module import Classifier

log = logging.getLogger(__name__)

DPI = 120


def save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def metric_history(client: MlflowClient, run_id: str, keys: tuple[str, ...]) -> dict:
    """Per-epoch values of each key, ordered by step, latest value per step."""
    history = {}
    for key in keys:
        by_step = {
            m.step: m.value
            for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
        }
        history[key] = [by_step[step] for step in sorted(by_step)]
    return history


def data_figures(datamodule: FashionDataModule, directory: Path) -> list[Path]:
    """Label histograms, example images per class and, with augmentation on, before/after."""
    train_images, train_labels = (t.cpu() for t in datamodule.tensors["train"])
    fine = datamodule.fine_labels["train"].cpu()
    paths = [
        save(
            plots.label_histograms(fine, train_labels, FINE_CLASSES, datamodule.class_names),
            directory / "label_histograms.png",
        ),
        save(
            plots.example_grid(train_images, train_labels, datamodule.class_names),
            directory / "examples.png",
        ),
    ]
    if datamodule.augment is not None:
        before = train_images[:16].unsqueeze(1).float() / 255
        generator_state = torch.get_rng_state()
        after = datamodule.augment(before)
        torch.set_rng_state(generator_state)  # figures must not shift the training draws
        paths.append(
            save(
                plots.augmentation_grid(before, after, "augment: before and after"),
                directory / "augmentation.png",
            )
        )
    return paths


def superclass_accuracy(fine_logits: torch.Tensor, fine_targets: torch.Tensor) -> float:
    """Accuracy on the superclass task of a 10-class model, its predictions mapped up."""
    to_super = get_task("superclass").map_labels
    preds = to_super(fine_logits.argmax(dim=1))
    return multiclass_accuracy(
        preds, to_super(fine_targets), len(SUPERCLASSES), average="micro"
    ).item()


def log_test_report(
    client: MlflowClient, run_id: str, module: Classifier, datamodule: FashionDataModule
) -> dict[str, float]:
    """Evaluate the test predictions the module kept, log metrics and files; return metrics."""
    evaluation = evaluate(module.test_logits, module.test_targets, datamodule.class_names)
    metrics = evaluation.metrics("test")
    if datamodule.task.name == "fine":
        metrics["test/superclass_acc"] = superclass_accuracy(
            module.test_logits, module.test_targets
        )
    tracking.log_metrics(client, run_id, metrics)

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "evaluation").mkdir()
        (folder / "data").mkdir()
        evaluation.write(folder / "evaluation", prefix="test")

        history = metric_history(client, run_id, tracking.EPOCH_METRICS[:4])
        save(
            plots.curves_figure(history, title=f"{datamodule.task.name} task"),
            folder / "evaluation" / "curves.png",
        )

        test_images = datamodule.tensors["test"][0].cpu()
        correct, wrong = plots.prediction_gallery(
            test_images, module.test_logits, module.test_targets, datamodule.class_names
        )
        save(correct, folder / "evaluation" / "gallery_correct.png")
        save(wrong, folder / "evaluation" / "gallery_wrong.png")

        data_figures(datamodule, folder / "data")
        client.log_artifacts(run_id, str(folder))
    log.info("test report logged to run %s", run_id)
    return metrics
