"""The benchmarks run (a smoke test on tiny sizes; timings are reported, never asserted)."""

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_benchmark_quick(tmp_path):
    """heavyball is left out: it compiles with max-autotune once per shape (15-40 s here);
    the next test builds it and every other package's optimizer."""
    out = tmp_path / "step.json"
    step = load("step")
    assert step.main(["--quick", "--algorithms", "adam,sgd", "--skip", "heavyball",
                      "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    rows = results["cases"]["a"]["rows"] + results["cases"]["b"]["rows"]
    impls = {(r["algorithm"], r["impl"]) for r in rows}
    assert ("adam", "compiled") in impls and ("adam", "torch-fused") in impls
    assert ("sgd", "eager") in impls and ("sgd", "torch-foreach") in impls
    assert not any(r["impl"] == "heavyball" for r in rows)  # --skip
    assert all(r["seconds"] > 0 and r["fraction_of_bandwidth"] > 0 for r in rows)
    assert {r["engine"] for r in rows if r["impl"] in ("eager", "compiled")} == {"eager",
                                                                               "compiled"}
    assert results["compile"][0]["cold_seconds"] > 0


def test_step_benchmark_builds_every_package_optimizer():
    """Each implementation of :data:`PACKAGES` (the authors' packages and the compile-first
    libraries timed beside ours) is built from its entry: its module, class and arguments."""
    step = load("step")
    built = [step.make(label, algorithm, [torch.nn.Parameter(torch.zeros(8, 8))])
             for algorithm, packages in step.PACKAGES.items() for label in packages]
    assert len(built) == sum(map(len, step.PACKAGES.values())) > 10
    assert all(isinstance(opt, torch.optim.Optimizer) for opt in built)


def test_loop_benchmark_quick(capsys):
    assert load("loop").main(["--quick"]) == 0
    assert "ratio" in capsys.readouterr().out


def test_scaling_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "scaling.json"
    assert load("scaling").main(["--epochs", "1", "--batch-sizes", "256", "--rounds", "1",
                                 "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["processes"] for r in rows] == [1, 1, 2]
    assert all(r["samples_per_second"] > 0 for r in rows) and rows[0]["efficiency"] == 1.0
