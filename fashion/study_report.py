"""Render a comparison of runs: Markdown tables, CSV files, figures and study.md."""

from __future__ import annotations

import datetime
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fashion import study_figures
from fashion.device import cpu_model
from fashion.metrics import markdown_table

log = logging.getLogger(__name__)

DPI = 120
LOSS_FIGURE = "loss_curves.png"
ACCURACY_FIGURE = "test_accuracy.png"

HOW_TO_READ = """\
Each cell is the mean over a model's runs, one run per seed, followed by ± and the sample
standard deviation (ddof = 1) over those runs. A model with a single run shows no spread.
Per-class accuracy is one-vs-rest: for class k, the fraction of test images on which
"predicted k" agrees with "labelled k". Each misclassified image therefore lowers two classes.
Rank 1 is the highest mean test accuracy. "within spread of next" is "yes" where the gap to
the next-ranked model is smaller than the larger of the two standard deviations, so those two
ranks are not distinct. With one seed per model no spread is known and no rank is marked."""

REFERENCE_NOTE = """\
"study" columns are the course study's test results on the 3-class task after 10 epochs, one
run per model without a spread. Its test losses (about 0.56) came from applying softmax twice,
so they are not compared here. Our test loss is plain cross-entropy on logits. Its per-class
table swapped the names of Bottom and Accessories, which are corrected here."""


@dataclass
class Study:
    """Everything a comparison report shows; numbers come from `fashion.compare`."""

    experiment: str
    sweep: str
    task: str
    class_names: tuple[str, ...]
    runs: pd.DataFrame  # one row per compared run
    summary: pd.DataFrame  # one row per model: "<metric> mean" / "<metric> std", rank, reference
    per_class: pd.DataFrame  # one row per model: "<class> mean" / "std" / "reference"
    transfer: pd.DataFrame | None  # fine-trained models scored on superclasses, if logged
    histories: dict[str, dict[str, list[float]]]  # model -> "train/loss" -> mean per epoch
    excluded: list[tuple[str, str, str]]  # (run name, status, reason)


def mean_std_cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    if math.isnan(std):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {std:.4f}"


def mean_std_cells(frame: pd.DataFrame, prefix: str) -> list[str]:
    """Format the columns "<prefix> mean" and "<prefix> std" as "mean ± std" cells."""
    pairs = zip(frame[f"{prefix} mean"], frame[f"{prefix} std"], strict=True)
    return [mean_std_cell(mean, std) for mean, std in pairs]


def signed_cell(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.4f}"


def results_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 1: test loss and accuracy per model, rank, and the study's accuracy if known."""
    table = pd.DataFrame(index=summary.index)
    table["rank"] = summary["rank"]
    table["test loss"] = mean_std_cells(summary, "test/loss")
    table["test accuracy"] = mean_std_cells(summary, "test/acc")
    table["runs"] = summary["runs"]
    epoch_seconds = summary.get("time/epoch_seconds mean", pd.Series(math.nan, summary.index))
    table["s / epoch"] = [f"{s:.2f}" if not math.isnan(s) else "" for s in epoch_seconds]
    if "reference test/acc" in summary:
        table["study accuracy"] = summary["reference test/acc"]
        table["ours minus study"] = summary["test/acc minus reference"].map(signed_cell)
    table["within spread of next"] = summary["within_spread_of_next"].map({True: "yes", False: ""})
    return table


def per_class_table(per_class: pd.DataFrame, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Table 2: one-vs-rest accuracy per model and class, the study's value beside ours."""
    table = pd.DataFrame(index=per_class.index)
    for name in class_names:
        table[name] = mean_std_cells(per_class, name)
        if f"{name} reference" in per_class:
            table[f"{name} (study)"] = per_class[f"{name} reference"]
    return table


def transfer_table(transfer: pd.DataFrame) -> pd.DataFrame:
    """Table 3: superclass accuracy of fine-trained models beside superclass-trained ones."""
    table = pd.DataFrame(index=transfer.index)
    table["trained on fine labels"] = mean_std_cells(transfer, "fine-trained")
    table["runs (fine)"] = transfer["fine-trained runs"]
    if "superclass-trained mean" in transfer:
        table["trained on superclasses"] = mean_std_cells(transfer, "superclass-trained")
        table["runs (superclass)"] = transfer["superclass-trained runs"]
        table["fine minus superclass"] = transfer["fine minus superclass"].map(signed_cell)
    return table


def tables_markdown(study: Study) -> str:
    """Render the report's tables as Markdown, each under a heading."""
    parts = [
        "## Test loss and accuracy per model",
        markdown_table(results_table(study.summary)),
        "## One-vs-rest test accuracy per class",
        markdown_table(per_class_table(study.per_class, study.class_names)),
    ]
    if study.transfer is not None:
        parts += [
            "## Does training on fine labels help the coarse task?",
            transfer_note(study.transfer),
            markdown_table(transfer_table(study.transfer)),
        ]
    return "\n\n".join(parts)


def transfer_note(transfer: pd.DataFrame) -> str:
    note = (
        "Accuracy on the 3 superclasses (Top, Bottom, Accessories) after mapping each "
        "fine prediction to its superclass."
    )
    sweep = transfer.attrs.get("superclass_sweep")
    if sweep is None:
        return note + " The store has no finished superclass-task runs to compare with."
    return note + f" Superclass-trained runs: experiment `fashion-superclass`, sweep `{sweep}`."


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def distinct(runs: pd.DataFrame, column: str) -> str:
    values = sorted({str(v) for v in runs[column] if str(v) not in ("", "None", "nan")})
    return ", ".join(values) or "not recorded"


def hardware(runs: pd.DataFrame) -> str:
    """Describe the hardware: the runs' `hardware` tags, else this machine, marked as such."""
    recorded = distinct(runs, "hardware")
    if recorded != "not recorded":
        return recorded
    name = cpu_model()
    if set(runs["accelerator"]) & {"gpu", "cuda"}:
        import torch  # only here: importing torch costs seconds

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "a CUDA GPU"
    return f"{name} (not recorded by the runs; this is the machine that wrote this report)"


def conditions(study: Study) -> list[str]:
    runs = study.runs
    seeds = sorted({str(seed) for seed in runs["seed"]}, key=lambda s: (len(s), s))
    sweep = (
        f"all finished runs, from {plural(runs['sweep'].nunique(), 'sweep')}"
        if study.sweep == "all"
        else f"`{study.sweep}`"
    )
    fit_seconds = float(runs.get("time/fit_seconds", pd.Series(dtype=float)).sum())
    lines = [
        f"Experiment `{study.experiment}`, sweep {sweep}",
        f"Task: {study.task} ({len(study.class_names)} classes: {', '.join(study.class_names)})",
        f"Runs: {plural(len(runs), 'finished run')} of {plural(runs['model'].nunique(), 'model')}"
        f", seeds {', '.join(seeds)}; {len(study.excluded)} left out (listed at the end)",
        f"Epochs (`trainer.max_epochs`): {distinct(runs, 'max_epochs')}",
        f"Accelerator (`trainer.accelerator`): {distinct(runs, 'accelerator')}; "
        f"precision (`trainer.precision`): {distinct(runs, 'precision')}",
        f"Hardware: {hardware(runs)}",
        f"Total training wall time (sum of `time/fit_seconds`): {fit_seconds:.0f} s "
        f"({fit_seconds / 3600:.2f} h)",
        f"Code: git commit {distinct(runs, 'git_commit')}",
    ]
    limit = distinct(runs, "limit_train_batches")
    if limit != "not recorded":
        lines.append(
            f"Train batches per epoch limited to {limit} "
            "(`trainer.limit_train_batches`): short runs, not the full study"
        )
    return [f"- {line}" for line in lines]


def write_figures(study: Study, out_dir: Path) -> list[Path]:
    summary = study.summary
    reference = {}
    if "reference test/acc" in summary:
        reference = summary["reference test/acc"].dropna().to_dict()
    bars = study_figures.accuracy_bars(
        list(summary.index),
        summary["test/acc mean"].tolist(),
        summary["test/acc std"].fillna(0.0).tolist(),
        reference,
    )
    figures = {
        LOSS_FIGURE: study_figures.loss_curves_by_model(study.histories),
        ACCURACY_FIGURE: bars,
    }
    paths = []
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=DPI, bbox_inches="tight")
        paths.append(out_dir / name)
    return paths


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    columns = ["run_name", "model", "seed", "sweep", "test/acc", "test/loss", "run_id"]
    table = runs.reindex(columns=columns).set_index("run_name")
    table.index.name = "run"
    return table


def study_markdown(study: Study) -> str:
    lines = [
        f"# Model comparison: {study.experiment}",
        "",
        f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
        "`python -m fashion.compare`.",
        "",
        "## Conditions",
        "",
        *conditions(study),
        "",
        "## How to read this",
        "",
        HOW_TO_READ,
        "",
        tables_markdown(study),
        "",
    ]
    if study.task == "superclass":
        lines += [REFERENCE_NOTE, ""]
    lines += [
        "## Figures",
        "",
        f"![Train and validation loss per epoch, mean over seeds]({LOSS_FIGURE})",
        "",
        f"![Test accuracy per model, mean and sample std]({ACCURACY_FIGURE})",
        "",
        "## Runs compared",
        "",
        markdown_table(runs_table(study.runs)),
        "",
    ]
    lines += ["## Runs left out", ""]
    lines += [f"- {name}: {status} ({reason})" for name, status, reason in study.excluded]
    lines += ["" if study.excluded else "None.", ""]
    return "\n".join(lines)


def write_study(study: Study, out_dir: Path) -> Path:
    """Write the CSV files, figures and study.md into `out_dir` and return the study.md path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    study.summary.to_csv(out_dir / "comparison.csv")
    study.per_class.to_csv(out_dir / "per_class.csv")
    study.runs.to_csv(out_dir / "runs.csv", index=False)
    if study.transfer is not None:
        study.transfer.to_csv(out_dir / "superclass_transfer.csv")
    write_figures(study, out_dir)

    path = out_dir / "study.md"
    path.write_text(study_markdown(study))
    log.info("wrote study.md, CSV files and figures to %s", out_dir)
    return path
