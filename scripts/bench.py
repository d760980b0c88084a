"""Measure training throughput of three pipelines in one process, alternating them.

- (a) Our path. A Lightning Trainer fits the Classifier on the FashionDataModule, both
  built from the study config exactly as `python -m fashion.train` builds them.
- (b) A hand-written PyTorch loop over the same in-memory uint8 tensors. It uses the same
  network, batch size, precision, memory format and optimizer as (a).
- (c) The usual first pipeline: torchvision's FashionMNIST with ToTensor and a DataLoader
  without workers, in fp32 with the default memory format.

Each repeat runs all three, rotating their order so that drift in the machine's speed
(clock boost, other load) spreads over all of them. Only the steps after the warm-up are
timed, so trainer construction and data loading are excluded but the per-step overhead
of each pipeline is included. `--precision-sweep` instead times (b) for fp32 and
bf16-mixed, each with and without channels_last: the measurement behind the defaults in
fashion/device.py.

    .venv/bin/python scripts/bench.py --model model_2 --json /tmp/bench.json
"""

import argparse
import gzip
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a file, the package need not be installed
    sys.path.insert(0, str(PROJECT_ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from torch import nn  # noqa: E402

from fashion import data, schema, train, validation  # noqa: E402
from fashion.device import cpu_model  # noqa: E402
from fashion.models import create_network, l2_penalty, l2_weights  # noqa: E402

log = logging.getLogger("bench")

CONFIG_DIR = Path(train.CONFIG_DIR)
MODELS = sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))
CONTENDERS = {
    "a": "(a) Lightning, as fashion.train",
    "b": "(b) hand loop, same tensors",
    "c": "(c) torchvision DataLoader, fp32",
}
AUTOCAST_DTYPES = {
    "32-true": None,
    "32": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}
SWEEP = (("32-true", False), ("32-true", True), ("bf16-mixed", False), ("bf16-mixed", True))

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class StepClock:
    """Step counter that times the images of the training steps after the warm-up."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.total, self.device = warmup, warmup + steps, device
        self.done = self.images = 0
        self.started: float | None = None
        self.stopped: float | None = None

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # kernels run asynchronously
        return time.perf_counter()

    def step_done(self, batch_size: int) -> bool:
        """Record one finished step and return True once the last timed step has finished."""
        self.done += 1
        if self.done > self.warmup:
            self.images += batch_size
        if self.done == self.warmup:
            self.started = self._now()
        elif self.done == self.total:
            self.stopped = self._now()
        return self.done >= self.total

    def images_per_second(self) -> float:
        if self.started is None or self.stopped is None:
            raise RuntimeError(f"only {self.done} of {self.total} training steps ran")
        return self.images / (self.stopped - self.started)


class ClockCallback(L.Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.clock.step_done(len(batch[1]))


def compose_config(args: argparse.Namespace) -> DictConfig:
    """Compose the study config with the benchmark's overrides and resolve every "auto"."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch finds no CUDA device. Use --device cpu or auto.")
    accelerator = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}[args.device]
    overrides = [
        f"model={args.model}",
        f"data.batch_size={args.batch_size}",
        f"trainer.precision={args.precision}",
        f"trainer.accelerator={accelerator}",
        f"channels_last={args.channels_last}",
        f"compile={str(args.compile).lower()}",
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    if args.data_dir is not None:
        cfg.data.root = str(args.data_dir)
    try:
        validation.validate(cfg)
    except schema.ConfigError as error:
        raise SystemExit(f"invalid config:\n{error}") from None
    train.resolve_settings(cfg)

    if cfg.trainer.precision not in AUTOCAST_DTYPES:
        raise SystemExit(
            f"precision {cfg.trainer.precision!r} is not supported by the hand "
            f"loop. Use one of {', '.join(AUTOCAST_DTYPES)}."
        )
    if cfg.optim.name != "adam":
        raise SystemExit(
            f"optim.name={cfg.optim.name} is not supported because the hand loop "
            "and the usual pipeline train with Adam. Drop that override."
        )
    return cfg


def new_network(
    cfg: DictConfig, num_classes: int, device: torch.device, channels_last: bool
) -> nn.Module:
    torch.manual_seed(cfg.seed)
    net = create_network(
        cfg.model.arch, num_classes, dropout=cfg.model.dropout, batch_norm=cfg.model.batch_norm
    ).to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def fit_loop(
    net: nn.Module,
    batches: Batches,
    clock: StepClock,
    cfg: DictConfig,
    precision: str,
    compiled: bool,
) -> None:
    """Train as Classifier.training_step does: autocast around forward and loss only."""
    dtype, device_type = AUTOCAST_DTYPES[precision], clock.device.type
    penalized = l2_weights(net, cfg.model.l2_layers) if cfg.model.l2 else []
    optimizer = torch.optim.Adam(
        net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    scaler = torch.amp.GradScaler(device_type, enabled=dtype is torch.float16)
    model = torch.compile(net) if compiled else net
    model.train()
    for x, y in batches:
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        if penalized:
            loss = loss + l2_penalty(penalized, cfg.model.l2)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if clock.step_done(len(y)):
            return


def tensor_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, channels_last: bool
) -> Batches:
    """(b): batches cut by index from a fresh permutation each epoch, scaled per batch."""
    while True:
        for index in torch.randperm(len(labels), device=images.device).split(batch_size):
            x = images[index].unsqueeze(1).float().div_(255)  # (B, 1, 28, 28) in [0, 1]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels[index]


def loader_batches(loader, task: data.Task, device: torch.device) -> Batches:
    while True:
        for x, y in loader:
            yield x.to(device), task.map_labels(y).to(device)


def usual_root(directory: Path, scratch: Path) -> Path:
    """Write the files into a scratch folder in the layout a torchvision download leaves.

    torchvision reads decompressed files from root/FashionMNIST/raw and decompresses only
    after a download, so this function decompresses them itself. Nothing is downloaded, and
    nothing is written next to the source files.
    """
    raw = scratch / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in data.SPLITS:
        for name in data.FILE_NAMES[split]:
            content = gzip.decompress((directory / name).read_bytes())
            (raw / name.removesuffix(".gz")).write_bytes(content)
    return scratch


def train_tensors(cfg: DictConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the training split that (a) trains on, with a DataModule of its own."""
    datamodule, _ = train.build(cfg)
    datamodule.setup("fit")  # no trainer attached, so the tensors stay on the CPU
    images, labels = datamodule.tensors["train"]
    return images.to(device), labels.to(device)


def measure(
    run: Callable[[StepClock], None], warmup: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """Run one contender and return its images/s and its peak memory in MiB.

    The memory is the CUDA allocator's peak on a GPU. On the CPU it is how far the run
    raised the process's max RSS, which is 0 once an earlier run has reached a higher peak.
    NOTE: the CUDA branches here and in StepClock have not been run on a GPU yet.
    """
    clock = StepClock(warmup, steps, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(clock)
    if device.type == "cuda":
        return clock.images_per_second(), torch.cuda.max_memory_allocated(device) / 2**20
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return clock.images_per_second(), (rss_after - rss_before) / 1024  # ru_maxrss is in KiB


def summarize(values: list[float]) -> dict:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return {
        "values": values,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": quartiles[0],
        "q3": quartiles[2],
    }


def rotations(names: list[str], repeats: int) -> Iterator[tuple[int, list[str]]]:
    for repeat in range(repeats):
        shift = repeat % len(names)
        yield repeat, names[shift:] + names[:shift]


def compare(args: argparse.Namespace, cfg: DictConfig, device: torch.device, scratch: Path) -> dict:
    datamodule, _ = train.build(cfg)  # data for (a), moved to the device by its first fit
    images, labels = train_tensors(cfg, device)
    num_classes, batch_size = datamodule.num_classes, cfg.data.batch_size
    trainer_overrides = {
        "max_steps": args.warmup + args.steps,
        "max_epochs": -1,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "default_root_dir": str(scratch),
    }

    def run_lightning(clock: StepClock) -> None:
        L.seed_everything(cfg.seed, verbose=False)
        _, module = train.build(cfg)
        trainer = L.Trainer(
            **(train.trainer_arguments(cfg) | trainer_overrides), callbacks=[ClockCallback(clock)]
        )
        trainer.fit(module, datamodule=datamodule)

    def run_hand_loop(clock: StepClock) -> None:
        net = new_network(cfg, num_classes, device, cfg.channels_last)
        batches = tensor_batches(images, labels, batch_size, cfg.channels_last)
        fit_loop(net, batches, clock, cfg, cfg.trainer.precision, cfg.compile)

    runners = {"a": run_lightning, "b": run_hand_loop}
    if not args.skip_usual:
        from torch.utils.data import DataLoader
        from torchvision.datasets import FashionMNIST
        from torchvision.transforms import ToTensor

        root = usual_root(data.locate(cfg.data.root, download=False), scratch / "usual")
        dataset = FashionMNIST(str(root), train=True, transform=ToTensor(), download=False)

        def run_usual(clock: StepClock) -> None:
            net = new_network(cfg, num_classes, device, channels_last=False)
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
            batches = loader_batches(loader, datamodule.task, device)
            fit_loop(net, batches, clock, cfg, "32-true", compiled=False)

        runners["c"] = run_usual

    speeds: dict[str, list[float]] = {name: [] for name in runners}
    memory: dict[str, list[float]] = {name: [] for name in runners}
    for repeat, order in rotations(list(runners), args.repeats):
        for name in order:
            speed, peak = measure(runners[name], args.warmup, args.steps, device)
            speeds[name].append(speed)
            memory[name].append(peak)
            log.info(
                "repeat %d/%d %s: %.0f images/s", repeat + 1, args.repeats, CONTENDERS[name], speed
            )

    result = {"contenders": {}}
    for name in runners:
        result["contenders"][name] = summarize(speeds[name]) | {
            "label": CONTENDERS[name],
            "peak_memory_mib": max(memory[name]),
        }
    for other in ("b", "c"):
        if other in speeds:
            ratios = [a / o for a, o in zip(speeds["a"], speeds[other], strict=True)]
            result[f"a/{other}"] = summarize(ratios)
    return result


def precision_sweep(args: argparse.Namespace, cfg: DictConfig, device: torch.device) -> dict:
    images, labels = train_tensors(cfg, device)
    num_classes = data.get_task(cfg.data.task).num_classes

    def runner(precision: str, channels_last: bool) -> Callable[[StepClock], None]:
        def run(clock: StepClock) -> None:
            net = new_network(cfg, num_classes, device, channels_last)
            batches = tensor_batches(images, labels, cfg.data.batch_size, channels_last)
            fit_loop(net, batches, clock, cfg, precision, cfg.compile)

        return run

    speeds: dict[tuple[str, bool], list[float]] = {combo: [] for combo in SWEEP}
    for repeat, order in rotations(list(SWEEP), args.repeats):
        for combo in order:
            speed, _ = measure(runner(*combo), args.warmup, args.steps, device)
            speeds[combo].append(speed)
            log.info(
                "repeat %d/%d %s, channels_last %s: %.0f images/s",
                repeat + 1,
                args.repeats,
                *combo,
                speed,
            )

    baseline = speeds[SWEEP[0]]
    combinations = []
    for (precision, channels_last), values in speeds.items():
        ratios = [v / b for v, b in zip(values, baseline, strict=True)]
        combinations.append(
            summarize(values)
            | {
                "precision": precision,
                "channels_last": channels_last,
                "vs_fp32_contiguous": statistics.median(ratios),
            }
        )
    return {"combinations": combinations}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Fixed-width columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def report(result: dict) -> str:
    r = result
    lines = [
        f"{r['model']}, batch {r['batch_size']}: {r['steps']} timed steps after "
        f"{r['warmup']} warm-up steps, {r['repeats']} repeats in rotating order",
        f"device: {r['device']} ({r['device_name']}), {r['torch_threads']} torch threads, "
        f"torch {r['torch']}, lightning {r['lightning']}",
        f"1-minute load average: {r['load_average_before'][0]:.2f} at the start, "
        f"{r['load_average_after'][0]:.2f} at the end",
    ]
    memory = "peak MiB" if r["device"] == "cuda" else "max RSS growth MiB"
    if r["mode"] == "precision-sweep":
        lines += [f"hand loop (b), compile {str(r['compile']).lower()}", ""]
        rows = [
            [
                c["precision"],
                str(c["channels_last"]).lower(),
                f"{c['median']:,.0f}",
                f"{c['min']:,.0f}-{c['max']:,.0f}",
                f"{c['vs_fp32_contiguous']:.2f}",
            ]
            for c in r["combinations"]
        ]
        header = ["precision", "channels_last", "images/s", "min-max", "vs 32-true, off"]
        return "\n".join([*lines, format_table(header, rows)])

    lines += [
        f"(a) and (b): precision {r['precision']}, channels_last "
        f"{str(r['channels_last']).lower()}, compile {str(r['compile']).lower()}",
        "",
    ]
    rows = [
        [
            c["label"],
            f"{c['median']:,.0f}",
            f"{c['min']:,.0f}-{c['max']:,.0f}",
            f"{c['peak_memory_mib']:,.0f}",
        ]
        for c in r["contenders"].values()
    ]
    lines += [format_table(["contender", "images/s", "min-max", memory], rows), ""]
    ratios = [
        [key, f"{r[key]['median']:.2f}", f"{r[key]['min']:.2f}-{r[key]['max']:.2f}"]
        for key in ("a/b", "a/c")
        if key in r
    ]
    lines.append(format_table(["ratio", "median", "min-max"], ratios))
    if r["device"] == "cpu":
        lines.append(f"process peak RSS: {r['process_peak_rss_mib']:,.0f} MiB")
    return "\n".join(lines)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: must be at least 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="model_2", choices=MODELS)
    parser.add_argument("--batch-size", type=positive, default=128)
    parser.add_argument(
        "--precision",
        default="auto",
        help="Lightning precision for (a) and (b); auto as fashion.train",
    )
    parser.add_argument("--channels-last", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--compile", action="store_true", help="torch.compile for (a) and (b)")
    parser.add_argument("--steps", type=positive, default=150, help="timed steps per run")
    parser.add_argument(
        "--warmup", type=positive, default=20, help="untimed steps before the timed ones"
    )
    parser.add_argument("--repeats", type=positive, default=5)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the four IDX .gz files; default: where fashion.train finds them",
    )
    parser.add_argument("--skip-usual", action="store_true", help="leave out (c)")
    parser.add_argument(
        "--precision-sweep",
        action="store_true",
        help="time (b) for {32-true, bf16-mixed} x {channels_last off, on}",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of the study config, e.g. data.verify=false"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # hides the device banner of each fit

    cfg = compose_config(args)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    result = {
        "mode": "precision-sweep" if args.precision_sweep else "compare",
        "model": cfg.model.name,
        "batch_size": cfg.data.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "device": device.type,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "precision": cfg.trainer.precision,
        "channels_last": cfg.channels_last,
        "compile": cfg.compile,
        "load_average_before": os.getloadavg(),
        "peak_memory": "CUDA allocator peak" if device.type == "cuda" else "growth of max RSS",
    }
    with tempfile.TemporaryDirectory(prefix="fashion-bench-") as scratch:
        if args.precision_sweep:
            result |= precision_sweep(args, cfg, device)
        else:
            result |= compare(args, cfg, device, Path(scratch))
    result["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_average_after"] = os.getloadavg()  # a busy machine skews every figure

    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        log.info("figures written to %s", args.json)
    return result


if __name__ == "__main__":
    main()
