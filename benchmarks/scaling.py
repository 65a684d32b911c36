"""Data-parallel scaling of ``optimlab train`` on this machine: samples per second of the
digits MLP with 1 and 2 processes (torchrun, gloo, DDP) at the same global batch, in one run.

    python benchmarks/scaling.py [--epochs 20] [--batch-sizes 32,256] [--out scaling.json]

Efficiency = samples/s with N processes ÷ (N × samples/s of one process with one thread), so
each process has one core; one process using every core is shown beside it. Rounds alternate
and the median is reported; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CONFIGS = {  # name → (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, all threads": (1, os.cpu_count() or 1),
    "2 processes, 1 thread each": (2, 1),
}


def measure(processes: int, threads: int, batch: int, epochs: int, task: str) -> float:
    """samples/s of one ``optimlab train`` run in fresh processes."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "summary.json")
        argv = [sys.executable, "-m", "optimlab.cli", "train", "--task", task, "--epochs",
                str(epochs), "--batch-size", str(batch), "--quiet", "--json", out]
        if processes > 1:
            argv += ["--nproc-per-node", str(processes)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["samples_per_second"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits_mlp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-sizes", default="32,256")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        samples: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for _ in range(args.rounds):
            for name, (processes, threads) in CONFIGS.items():
                samples[name].append(measure(processes, threads, batch, args.epochs, args.task))
        median = {name: statistics.median(v) for name, v in samples.items()}
        base = median["1 process, 1 thread"]
        for name, (processes, _) in CONFIGS.items():
            rows.append({"batch": batch, "config": name, "processes": processes,
                         "samples_per_second": median[name],
                         "efficiency": median[name] / (processes * base)})
    print(f"{'global batch':>12}  {'configuration':<28} {'samples/s':>10} {'efficiency':>10}")
    for r in rows:
        print(f"{r['batch']:>12}  {r['config']:<28} {r['samples_per_second']:>10.0f} "
              f"{r['efficiency']:>10.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"task": args.task, "epochs": args.epochs, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
