"""scripts/bench.py on the small fixture data: a few steps, every figure in the JSON."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
TINY = [
    "--steps",
    "2",
    "--warmup",
    "1",
    "--repeats",
    "2",
    "--batch-size",
    "16",
    "data.val_size=20",
    "data.verify=false",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_writes_every_figure(bench, idx_dir: Path, tmp_path: Path, capsys) -> None:
    before = sorted(path.name for path in idx_dir.iterdir())
    output = tmp_path / "bench.json"
    bench.main(["--data-dir", str(idx_dir), "--device", "cpu", "--json", str(output), *TINY])
    result = json.loads(output.read_text())

    for key in (
        "model",
        "batch_size",
        "device",
        "device_name",
        "torch_threads",
        "precision",
        "channels_last",
        "process_peak_rss_mib",
        "peak_memory",
    ):
        assert key in result
    assert result["model"] == "model_2"
    assert result["batch_size"] == 16
    assert set(result["contenders"]) == {"a", "b", "c"}
    for figures in result["contenders"].values():
        assert len(figures["values"]) == 2
        assert figures["min"] <= figures["median"] <= figures["max"]
        assert figures["min"] > 0

    a_values = result["contenders"]["a"]["values"]
    for other in ("b", "c"):
        other_values = result["contenders"][other]["values"]
        expected = [a / o for a, o in zip(a_values, other_values, strict=True)]
        assert result[f"a/{other}"]["values"] == pytest.approx(expected)
        assert "median" in result[f"a/{other}"]

    # torchvision's copy goes to a scratch folder, never next to the source files
    assert sorted(path.name for path in idx_dir.iterdir()) == before
    printed = capsys.readouterr().out
    assert "a/b" in printed
    assert "(c) torchvision" in printed


def test_skip_usual_drops_c(bench, idx_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    bench.main(
        [
            "--data-dir",
            str(idx_dir),
            "--device",
            "cpu",
            "--skip-usual",
            "--model",
            "model_1",
            "--json",
            str(output),
            *TINY,
        ]
    )
    result = json.loads(output.read_text())

    assert set(result["contenders"]) == {"a", "b"}
    assert "a/c" not in result
    assert "a/b" in result
    assert result["channels_last"] is False  # auto: off for the MLP


def test_precision_sweep_covers_four_settings(bench, idx_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "sweep.json"
    bench.main(
        [
            "--data-dir",
            str(idx_dir),
            "--device",
            "cpu",
            "--precision-sweep",
            "--json",
            str(output),
            *TINY,
        ]
    )
    result = json.loads(output.read_text())

    settings = {(c["precision"], c["channels_last"]) for c in result["combinations"]}
    assert settings == {
        ("32-true", False),
        ("32-true", True),
        ("bf16-mixed", False),
        ("bf16-mixed", True),
    }
    baseline = next(
        c
        for c in result["combinations"]
        if (c["precision"], c["channels_last"]) == ("32-true", False)
    )
    assert baseline["vs_fp32_contiguous"] == pytest.approx(1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_device_exits(bench, idx_dir: Path) -> None:
    with pytest.raises(SystemExit, match="--device cuda"):
        bench.main(["--data-dir", str(idx_dir), "--device", "cuda", *TINY])


def test_unsupported_precision_exits(bench, idx_dir: Path) -> None:
    with pytest.raises(SystemExit, match="bf16-true"):
        bench.main(
            ["--data-dir", str(idx_dir), "--device", "cpu", "--precision", "bf16-true", *TINY]
        )
