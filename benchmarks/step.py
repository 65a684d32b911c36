"""Optimizer step time and peak memory: every optimlab optimizer and engine against torch.optim.

Cases: (a) 16M float32 parameters in 64 tensors, (b) 2,000 tensors of 1K–10K elements. For each
optimizer, optimlab's engines run beside torch.optim's for-loop, foreach and fused versions of the
same algorithm and beside torch's fused Adam, all in this run, each configuration in a fresh
process (for its peak memory). A bandwidth reference (an in-place kernel moving as many bytes as
the step must) gives each step's fraction of the machine's limit. Also measured: the compiled
engine's cold start for 100- and 1,000-tensor models with an empty compile cache, and warm in a
second process that reuses the cache. Nothing here asserts timings.

    python benchmarks/step.py                 # the full run (minutes)
    python benchmarks/step.py --quick         # small sizes, a smoke test
    python benchmarks/step.py --device cuda   # on a GPU (torch's fused CUDA kernels as baselines)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

# optimlab name → (torch.optim class or None, constructor kwargs shared by both, state buffers)
ALGORITHMS = {
    "sgd": ("SGD", {"lr": 1e-3, "momentum": 0.9}, 1),
    "adagrad": ("Adagrad", {"lr": 1e-2}, 1),
    "adadelta": ("Adadelta", {}, 2),
    "rmsprop": ("RMSprop", {"lr": 1e-3}, 1),
    "adam": ("Adam", {"lr": 1e-3}, 2),
    "adamw": ("AdamW", {"lr": 1e-3}, 2),
    "adamax": ("Adamax", {"lr": 1e-3}, 2),
    "nadam": ("NAdam", {"lr": 1e-3}, 2),
    "nadamax": (None, {"lr": 1e-3}, 2),
    "ftrl": (None, {"lr": 1e-3}, 2),
}
TORCH_FUSED = {"SGD", "Adagrad", "Adam", "AdamW"}
ENGINES = ("reference", "eager", "compiled", "flat", "flat-compiled")


def shapes(case: str, quick: bool) -> list[int]:
    if case == "a":
        total, count = (1 << 18, 16) if quick else (1 << 24, 64)
        return [total // count] * count
    gen = torch.Generator().manual_seed(0)
    count = 100 if quick else 2000
    return torch.randint(1000, 10001, (count,), generator=gen).tolist()


def bytes_per_step(sizes: list[int], state_buffers: int, element: int = 4) -> int:
    """Read p, g and each state buffer; write p and each state buffer."""
    return sum(sizes) * element * (3 + 2 * state_buffers)


def make(impl: str, algorithm: str, params):
    torch_name, kwargs, _ = ALGORITHMS[algorithm]
    if impl.startswith("torch-"):
        mode = impl.split("-", 1)[1]
        name = "Adam" if impl == "torch-fused-adam" else torch_name
        flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True},
                 "fused": {"fused": True}, "fused-adam": {"fused": True}}[mode]
        return getattr(torch.optim, name)(params, **kwargs, **flags)
    import optimlab.optim as oo

    return oo.get(algorithm, params, engine=impl, **kwargs)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> None:
    """Linux: make VmHWM (the peak resident size) restart from the current size."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def state_bytes(opt) -> int:
    """Bytes of the optimizer's state tensors, each storage counted once."""
    seen, total = set(), 0
    for state in opt.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                storage = value.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
    return total


def run_one(spec: dict) -> dict:
    """Time one configuration in this process (called in a fresh subprocess)."""
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    sizes = spec["sizes"]
    params = [torch.nn.Parameter(torch.randn(n, device=device)) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    cuda = device.type == "cuda"
    opt = make(spec["impl"], spec["algorithm"], params)
    for _ in range(spec["warmup"]):
        opt.step()
    # memory beyond parameters and gradients: the state, plus what a step allocates and frees
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        before = _status_bytes("VmRSS")
    times = []
    for _ in range(spec["repeats"]):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    transient = (torch.cuda.max_memory_allocated() if cuda else _status_bytes("VmHWM")) - before
    state = state_bytes(opt)
    return {"seconds": statistics.median(times), "state_bytes": state,
            "transient_bytes": max(transient, 0), "peak_extra_bytes": state + max(transient, 0),
            "engine": getattr(opt, "engine", None)}


def bandwidth(sizes: list[int], footprint: int, device: str, repeats: int) -> float:
    """Bytes/s of an in-place kernel (x ← x·a + b) reading and writing ``footprint`` bytes."""
    x = torch.randn(footprint // 8, device=device)
    times = []
    for _ in range(repeats + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        x.mul_(0.999)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return footprint / statistics.median(times[2:])


def in_subprocess(spec: dict, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_start(device: str, tensors: int) -> dict:
    """First compiled step of an Adam over ``tensors`` tensors of 1,000 elements with an empty
    compile cache, then in a second process with the cache warm."""
    sizes = [1000] * tensors
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        spec = {"impl": "compiled", "algorithm": "adam", "sizes": sizes, "device": device,
                "warmup": 0, "repeats": 1}
        cold = in_subprocess(spec, env)
        warm = in_subprocess(spec, env)
    return {"cold_seconds": cold.get("seconds"), "warm_seconds": warm.get("seconds"),
            "tensors": len(sizes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, in this process: a smoke test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    warmup, repeats = (2, 3) if args.quick else (3, 10)
    results = {"device": args.device, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "cases": {}}
    for case in args.cases.split(","):
        sizes = shapes(case, args.quick)
        n = sum(sizes)
        rows = []

        def run(impl, algorithm, sizes=sizes):
            spec = {"impl": impl, "algorithm": algorithm, "sizes": sizes, "device": args.device,
                    "warmup": warmup, "repeats": repeats}
            return run_one(spec) if args.quick else in_subprocess(spec)

        adam_fused = run("torch-fused-adam", "adam")
        adam_bytes = bytes_per_step(sizes, 2)
        bw = bandwidth(sizes, adam_bytes, args.device, repeats)
        print(f"case {case}: {len(sizes)} tensors, {n:,} parameters; in-place kernel "
              f"{bw / 1e9:.1f} GB/s; torch fused Adam {adam_fused['seconds'] * 1e3:.2f} ms",
              flush=True)
        adam_per_byte = adam_fused["seconds"] / adam_bytes
        for algorithm in args.algorithms.split(","):
            torch_name, _, buffers = ALGORITHMS[algorithm]
            moved = bytes_per_step(sizes, buffers)
            impls = list(ENGINES)
            if torch_name:
                impls += ["torch-forloop", "torch-foreach"]
                if torch_name in TORCH_FUSED:
                    impls.append("torch-fused")
            measured = {impl: run(impl, algorithm) for impl in impls}
            torch_times = [m["seconds"] for k, m in measured.items()
                           if k.startswith("torch") and "seconds" in m]
            for impl, m in measured.items():
                if "seconds" not in m:
                    print(f"  {algorithm:9s} {impl:14s} failed: {m.get('error')}", flush=True)
                    continue
                row = {"case": case, "algorithm": algorithm, "impl": impl, **m,
                       "bytes": moved, "fraction_of_bandwidth": moved / m["seconds"] / bw,
                       "per_byte_vs_fused_adam": (m["seconds"] / moved) / adam_per_byte}
                if torch_times:
                    row["vs_fastest_torch"] = m["seconds"] / min(torch_times)
                if "torch-foreach" in measured and "seconds" in measured["torch-foreach"]:
                    row["speedup_vs_foreach"] = measured["torch-foreach"]["seconds"] / m["seconds"]
                rows.append(row)
                print(f"  {algorithm:9s} {impl:14s} {m['seconds'] * 1e3:9.2f} ms  "
                      f"{row['fraction_of_bandwidth']:5.0%} of bandwidth  "
                      f"per byte ×{row['per_byte_vs_fused_adam']:.2f} fused Adam  "
                      + (f"×{row['speedup_vs_foreach']:.2f} vs foreach  "
                         if "speedup_vs_foreach" in row else "")
                      + f"state {m['state_bytes'] / 2**20:.0f} MiB + transient "
                        f"{m['transient_bytes'] / 2**20:.0f} MiB", flush=True)
        results["cases"][case] = {"tensors": len(sizes), "parameters": n,
                                  "bandwidth_bytes_per_s": bw,
                                  "torch_fused_adam_seconds": adam_fused["seconds"], "rows": rows}
    results["compile"] = [cold_start(args.device, tensors)
                          for tensors in ((20,) if args.quick else (100, 1000))]
    for row in results["compile"]:
        print(f"compile: cold {row['cold_seconds']:.2f} s, warm cache "
              f"{row['warm_seconds']:.2f} s ({row['tensors']} tensors, first step)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
