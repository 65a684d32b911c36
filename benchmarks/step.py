"""Optimizer step time and peak memory: every optimlab optimizer and engine against torch.optim
and the other reference implementations of the same algorithm.

Cases: (a) 16M float32 parameters in 64 matrices of 512×512, (b) 2,000 matrices of 1K–10K
elements (64 columns). For each optimizer, optimlab's engines run beside torch.optim's for-loop,
foreach and fused versions of the same algorithm, the authors' packages and the compile-first
libraries that have it (heavyball, pytorch-optimizer, schedulefree, prodigyopt,
adabelief-pytorch; see :data:`PACKAGES`), and beside torch's fused Adam, all in this run, each
configuration in a fresh process (for its peak memory). For Muon and SOAP it also reports how much
of the step is matrix work (torch.profiler) and its FLOP rate against a plain ``torch.mm`` of the
same shapes. A bandwidth reference (an in-place kernel moving as many bytes as
the step must) gives each step's fraction of the machine's limit. Also measured: the compiled
engine's cold start for 100- and 1,000-tensor models with an empty compile cache, and warm in a
second process that reuses the cache. Nothing here asserts timings.

    python benchmarks/step.py                 # the full run (minutes)
    python benchmarks/step.py --quick         # small sizes, a smoke test
    python benchmarks/step.py --device cuda   # on a GPU (torch's fused CUDA kernels as baselines)
    python benchmarks/step.py --out b.json --skip reference,torch-forloop   # fewer columns

With ``--out`` the file is rewritten after every optimizer, and a second run with the same
``--out`` keeps the optimizers already measured there (same cases and device) and measures only
the rest, so an interrupted run loses nothing finished.

heavyball compiles its step with max-autotune once per tensor shape: case (b)'s 2,000 tensors
have about 140 shapes, and on a 2-core CPU its Adam had not finished warming up after 12
minutes. There, measure case (b) without it, resuming the same file:

    python benchmarks/step.py --cases a --out step.json
    python benchmarks/step.py --cases b --skip heavyball --out step.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
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
    "radam": ("RAdam", {"lr": 1e-3}, 2),
    "rprop": ("Rprop", {"lr": 1e-3}, 2),
    "asgd": ("ASGD", {"lr": 1e-3}, 1),
    "adafactor": ("Adafactor", {"lr": 1e-2}, 1),
    "muon": ("Muon", {"lr": 1e-3}, 1),
    "lion": (None, {"lr": 1e-4}, 1),
    "lamb": (None, {"lr": 1e-3}, 2),
    "lars": (None, {"lr": 1e-3}, 1),
    "yogi": (None, {"lr": 1e-3}, 2),
    "adopt": (None, {"lr": 1e-3}, 2),
    "ademamix": (None, {"lr": 1e-3}, 3),
    "adabelief": (None, {"lr": 1e-3}, 2),
    "soap": (None, {"lr": 3e-3}, 2),
    "schedulefree_adamw": (None, {"lr": 2.5e-3}, 2),
    "schedulefree_sgd": (None, {"lr": 1.0}, 1),
    "prodigy": (None, {"lr": 1.0}, 4),
}
#: optimlab name → {label: ("module:Class", extra keyword arguments)}: the other reference
#: implementations of the same algorithm, run with the same ``lr``.
PACKAGES = {
    "adam": {"heavyball": ("heavyball:AdamW", {"weight_decay": 0.0})},
    "lion": {"pytorch-optimizer": ("pytorch_optimizer:Lion", {})},
    "lamb": {"pytorch-optimizer": ("pytorch_optimizer:Lamb", {})},
    "lars": {"pytorch-optimizer": ("pytorch_optimizer:LARS", {})},
    "yogi": {"pytorch-optimizer": ("pytorch_optimizer:Yogi", {})},
    "adopt": {"pytorch-optimizer": ("pytorch_optimizer:ADOPT", {}),
              "heavyball": ("heavyball:ADOPT", {})},
    "ademamix": {"pytorch-optimizer": ("pytorch_optimizer:AdEMAMix", {}),
                 "heavyball": ("heavyball:AdEMAMix", {})},
    "adabelief": {"adabelief-pytorch": ("adabelief_pytorch:AdaBelief",
                                         {"print_change_log": False})},
    "soap": {"pytorch-optimizer": ("pytorch_optimizer:SOAP", {}),
             "heavyball": ("heavyball:SOAP", {})},
    "muon": {"heavyball": ("heavyball:Muon", {})},
    "schedulefree_adamw": {"schedulefree": ("schedulefree:AdamWScheduleFree", {}),
                           "heavyball": ("heavyball:SFAdamW", {})},
    "schedulefree_sgd": {"schedulefree": ("schedulefree:SGDScheduleFree", {})},
    "prodigy": {"prodigyopt": ("prodigyopt:Prodigy", {})},
}
#: optimizers whose step is matrix work, for the matrix-share report.
MATRIX = ("muon", "soap")
TORCH_FUSED = {"SGD", "Adagrad", "Adam", "AdamW"}
ENGINES = ("reference", "eager", "compiled", "flat", "flat-compiled")


COLUMNS = 64  # of case (b)'s matrices
#: rounds of the interleaved timing: steps of each implementation (quick: as --quick repeats),
#: ROUNDS of them, or as many as fit in ROUND_SECONDS but at least MIN_ROUNDS (a Muon or SOAP
#: round over 64 matrices of 512×512 takes seconds), but 2 once the rounds have taken
#: SLOW_SECONDS: where torch multiplies bfloat16 matrices with its scalar kernel (a CPU without
#: native bfloat16, see optimlab.optim.matmul), torch's and heavyball's Muon steps over case (a)
#: take minutes each. A step of more than WARM_SECONDS is warm after one step (warm-up and the
#: timing of a memory run stop there; the first step pays one-off costs, a compilation).
ROUNDS, MIN_ROUNDS, ROUND_SECONDS, SLOW_SECONDS, WARM_SECONDS = 50, 8, 30.0, 300.0, 2.0


def shapes(case: str, quick: bool, count: int | None = None) -> list[list[int]]:
    """(a): 64 matrices of 512×512 (quick: 16 of 128×128); (b): 2,000 matrices of 1K–10K
    elements, 64 columns each (quick: 20 — heavyball compiles once per shape); ``count``: the
    first ``count`` of them."""
    if case == "a":
        side, n = (128, 16) if quick else (512, 64)
        return [[side, side]] * (n if count is None else min(n, count))
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(1000, 10001, (20 if quick else 2000,), generator=gen).tolist()
    return [[max(1, n // COLUMNS), COLUMNS] for n in sizes][:count]


def numel(shape: list[int]) -> int:
    return math.prod(shape)


def bytes_per_step(shapes: list[list[int]], state_buffers: int, element: int = 4) -> int:
    """Read p, g and each state buffer; write p and each state buffer."""
    return sum(map(numel, shapes)) * element * (3 + 2 * state_buffers)


def make(impl: str, algorithm: str, params):
    """The optimizer ``impl`` (an optimlab engine, ``torch-<mode>`` or a label of
    :data:`PACKAGES`) of ``algorithm``, in train mode where it has one (Schedule-Free)."""
    opt = _make(impl, algorithm, params)
    if callable(getattr(opt, "train", None)):
        opt.train()
    return opt


def _make(impl: str, algorithm: str, params):
    torch_name, kwargs, _ = ALGORITHMS[algorithm]
    if impl in PACKAGES.get(algorithm, {}):
        import importlib

        where, extra = PACKAGES[algorithm][impl]
        module, _, name = where.partition(":")
        return getattr(importlib.import_module(module), name)(params, **kwargs, **extra)
    if impl == "torch-fused-adam":  # the per-byte baseline, beside any algorithm
        return torch.optim.Adam(params, **ALGORITHMS["adam"][1], fused=True)
    if impl == "torch" or impl.startswith("torch-"):
        cls = getattr(torch.optim, torch_name)
        mode = impl.partition("-")[2]
        flags = {"": {}, "forloop": {"foreach": False}, "foreach": {"foreach": True},
                 "fused": {"fused": True}}[mode]
        return cls(params, **kwargs, **flags)
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
    params = [torch.nn.Parameter(torch.randn(shape, device=device)) for shape in spec["sizes"]]
    grads = [torch.randn_like(p) for p in params]

    def feed():  # some libraries (heavyball) consume the gradients: give them back, untimed
        for p, g in zip(params, grads, strict=True):
            if p.grad is None:
                p.grad = g
    feed()
    cuda = device.type == "cuda"
    opt = make(spec["impl"], spec["algorithm"], params)
    for w in range(spec["warmup"]):
        feed()
        start = time.perf_counter()
        opt.step()
        if w and time.perf_counter() - start > WARM_SECONDS:
            break
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
        feed()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if times[-1] > WARM_SECONDS:
            break
    transient = (torch.cuda.max_memory_allocated() if cuda else _status_bytes("VmHWM")) - before
    state = state_bytes(opt)
    result = {"seconds": statistics.median(times), "state_bytes": state,
              "transient_bytes": max(transient, 0), "peak_extra_bytes": state + max(transient, 0),
              "engine": getattr(opt, "engine", None)}
    if spec["algorithm"] in MATRIX:
        result["matrix"] = matrix_work(opt, params, device)
    return result


def run_interleaved(spec: dict) -> dict:
    """Time every implementation of ``spec["impls"]`` in this process, their steps taken in
    turn, round after round, in a new random order each round (a rotated order keeps each
    implementation behind the same one, and a step timed right after a heavy one can run
    slower: Rprop's compiled step, always after its eager one, measured 1.36× fused Adam per
    byte, and 1.13× in random order): each one's median step time and its time in each round.
    This machine's memory bandwidth drifts by tens of per cent between minutes, so ratios
    between implementations come from steps taken within the same seconds (:func:`paired`). An
    implementation that fails to build or step gets its error instead."""
    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    entries, out = [], {}
    for impl in spec["impls"]:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(shape, device=device))
                  for shape in spec["sizes"]]
        grads = [torch.randn_like(p) for p in params]
        try:
            opt = make(impl, spec["algorithm"], params)
            entry = (impl, opt, params, grads)
            for w in range(spec["warmup"]):
                if _step(entry) > WARM_SECONDS and w:
                    break
        except Exception as error:  # noqa: BLE001 - reported per implementation
            out[impl] = {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
            continue
        entries.append(entry)
    times: dict[str, list[float]] = {impl: [] for impl, *_ in entries}
    start = time.perf_counter()
    shuffled = random.Random(0)
    for r in range(spec["repeats"]):
        elapsed = time.perf_counter() - start
        if ((r >= MIN_ROUNDS and elapsed > ROUND_SECONDS)
                or (r >= 2 and elapsed > SLOW_SECONDS)):
            break
        for entry in shuffled.sample(entries, len(entries)):
            if cuda:
                torch.cuda.synchronize()
            times[entry[0]].append(_step(entry, cuda))
    out.update({impl: {"seconds": statistics.median(t), "rounds": t} for impl, t in times.items()})
    return out


def paired(a: dict, b: dict) -> float:
    """a's step time over b's: the median of the per-round ratios where both have rounds (the
    two steps of a round were taken seconds apart, so a drift of the machine's speed between
    rounds cancels), else the ratio of their medians."""
    if "rounds" in a and "rounds" in b and len(a["rounds"]) == len(b["rounds"]):
        return statistics.median(x / y for x, y in zip(a["rounds"], b["rounds"], strict=True))
    return a["seconds"] / b["seconds"]


def _step(entry, cuda: bool = False) -> float:
    """One step of an (impl, optimizer, params, grads) entry, its gradients given back first
    (some libraries, heavyball, consume them); the step's seconds."""
    _, opt, params, grads = entry
    for p, g in zip(params, grads, strict=True):
        if p.grad is None:
            p.grad = g
    start = time.perf_counter()
    opt.step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


MATRIX_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::linalg_eigh",
              "aten::_linalg_eigh", "aten::linalg_qr", "aten::linalg_householder_product")


def matrix_work(opt, params, device: torch.device) -> dict:
    """One step under torch.profiler: the share of its time in matrix operations, their FLOP
    rate, and a plain ``torch.mm`` of each parameter's shape (X·Xᵀ) for comparison."""
    from torch.profiler import ProfilerActivity, profile

    from optimlab.optim.matmul import PROFILED

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    for p in params:  # the gradients of run_one, given back if consumed
        if p.grad is None:
            p.grad = torch.randn_like(p)
    with profile(activities=activities, with_flops=True) as prof:
        start = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key in MATRIX_OPS]
    key = "device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    seconds = sum(getattr(e, key) for e in events) / 1e6
    flops = sum(e.flops for e in events)
    # optimlab's bfloat16 products on a CPU (optimlab.optim.matmul): elementwise operations
    # under one named range, its shape in the name
    for e in prof.key_averages():
        if e.key.startswith(PROFILED + "["):
            m, k, n = map(int, e.key[len(PROFILED) + 1:-1].split("x"))
            seconds += e.cpu_time_total / 1e6
            flops += 2 * m * k * n * e.count
    mats = [p.detach() for p in params if p.dim() == 2]
    for x in mats[:2]:  # warm-up
        torch.mm(x, x.T)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x in mats:
        torch.mm(x, x.T)
    if device.type == "cuda":
        torch.cuda.synchronize()
    mm_seconds = time.perf_counter() - start
    mm_flops = sum(2 * x.shape[0] ** 2 * x.shape[1] for x in mats)
    return {"share_of_step": seconds / total if total else None,
            "flops_per_s": flops / seconds if seconds else None,
            "mm_flops_per_s": mm_flops / mm_seconds if mm_seconds else None}


def bandwidth(footprint: int, device: str, repeats: int) -> float:
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
    sizes = [[1000]] * tensors
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
    parser.add_argument("--tensors", type=int,
                        help="only the first N tensors of each case (a shorter run where steps "
                             "take seconds each: Muon over case (a) on a CPU without native "
                             "bfloat16)")
    parser.add_argument("--out", help="write the results as JSON here (after each optimizer; "
                                      "a run with the same file resumes)")
    parser.add_argument("--skip", default="",
                        help="implementations to leave out, comma-separated (e.g. "
                             "reference,torch-forloop)")
    parser.add_argument("--no-memory", action="store_true",
                        help="time only: leave out each implementation's memory, measured alone "
                             "in a fresh process")
    parser.add_argument("--no-compile-start", action="store_true",
                        help="leave out the compile cold-start measurement")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(run_interleaved(spec) if "impls" in spec else run_one(spec)))
        return 0
    import optimlab.optim as oo

    algorithms = args.algorithms.split(",")
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        parser.error(f"--algorithms: unknown {', '.join(unknown)}; known: "
                     f"{', '.join(ALGORITHMS)}")
    skip = {s for s in args.skip.split(",") if s}
    if args.tensors is not None and args.tensors < 1:
        parser.error(f"--tensors {args.tensors}: must be at least 1")
    warmup, repeats = (2, 3) if args.quick else (3, 10)
    results = {"device": args.device, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "quick": args.quick, "tensors": args.tensors,
               "cases": {}}
    if args.out and os.path.exists(args.out):
        with open(args.out) as f:
            previous = json.load(f)
        if all(previous.get(k) == results[k] for k in ("device", "torch", "quick", "tensors")):
            results = previous
            print(f"resuming {args.out}: keeping what it has measured", flush=True)

    def save():
        if args.out:
            tmp = args.out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(results, f, indent=2)
            os.replace(tmp, args.out)

    for case in args.cases.split(","):
        sizes = shapes(case, args.quick, args.tensors)
        n = sum(map(numel, sizes))

        def run(impl, algorithm, sizes=sizes, warmup=warmup, repeats=repeats):
            """``impl`` alone in a fresh process (its memory), or, given a list, the
            implementations interleaved in one (their times)."""
            many = isinstance(impl, list)
            spec = {("impls" if many else "impl"): impl, "algorithm": algorithm,
                    "sizes": sizes, "device": args.device, "warmup": warmup,
                    "repeats": (repeats if args.quick else ROUNDS) if many else repeats}
            if args.quick:
                return run_interleaved(spec) if many else run_one(spec)
            return in_subprocess(spec)

        done = results["cases"].get(case)
        if done is None:  # torch's fused Adam is timed beside every algorithm (see measure)
            bw = bandwidth(bytes_per_step(sizes, 2), args.device, repeats)
            done = results["cases"][case] = {
                "tensors": len(sizes), "parameters": n, "bandwidth_bytes_per_s": bw, "rows": []}
        bw = done["bandwidth_bytes_per_s"]
        print(f"case {case}: {len(sizes)} tensors, {n:,} parameters; in-place kernel "
              f"{bw / 1e9:.1f} GB/s", flush=True)
        measured_before = {r["algorithm"] for r in done["rows"]}
        for algorithm in algorithms:
            if algorithm in measured_before:
                continue
            if algorithm not in oo.names():
                print(f"  {algorithm:9s} not in optimlab's registry: skipped", flush=True)
                continue
            rows = measure(algorithm, run, case, sizes, bw, skip, not args.no_memory)
            done["rows"].extend(rows)
            save()
    if not args.no_compile_start and "compile" not in results:
        results["compile"] = [cold_start(args.device, tensors)
                              for tensors in ((20,) if args.quick else (100, 1000))]
        save()
    for row in results.get("compile", []):
        print(f"compile: cold {row['cold_seconds']:.2f} s, warm cache "
              f"{row['warm_seconds']:.2f} s ({row['tensors']} tensors, first step)", flush=True)
    return 0


def measure(algorithm: str, run, case: str, sizes, bw: float, skip: set[str],
            memory: bool = True) -> list[dict]:
    """Every implementation of ``algorithm`` on one case: its rows, printed as they come. torch's
    fused Adam runs interleaved with them, the per-byte baseline of this algorithm's rows."""
    torch_name, _, buffers = ALGORITHMS[algorithm]
    moved = bytes_per_step(sizes, buffers)
    impls = list(ENGINES)
    if torch_name and hasattr(torch.optim, torch_name):
        if "foreach" in inspect.signature(getattr(torch.optim, torch_name)).parameters:
            impls += ["torch-forloop", "torch-foreach"]
        else:  # torch has one implementation (Muon)
            impls.append("torch")
        if torch_name in TORCH_FUSED:
            impls.append("torch-fused")
    impls += list(PACKAGES.get(algorithm, {}))
    impls = [impl for impl in impls if impl not in skip]
    timed = run([*impls, "torch-fused-adam"], algorithm)
    if "error" in timed:  # the interleaved process itself failed
        timed = {impl: timed for impl in [*impls, "torch-fused-adam"]}
    fused_adam = timed["torch-fused-adam"].get("seconds")
    measured = {}
    for impl in impls:  # memory (and matrix work) each alone, in a fresh process
        if not memory:
            measured[impl] = timed[impl]
            continue
        alone = run(impl, algorithm, warmup=1, repeats=2)
        measured[impl] = ({**alone, "seconds_alone": alone["seconds"], **timed[impl]}
                          if "seconds" in alone and "seconds" in timed[impl]
                          else {"error": timed[impl].get("error") or alone.get("error")})
    references = [m for k, m in measured.items() if k not in ENGINES and "seconds" in m]
    fastest = min(references, key=lambda m: m["seconds"]) if references else None
    foreach = measured.get("torch-foreach", {})
    rows = []
    for impl, m in measured.items():
        if "seconds" not in m:
            print(f"  {algorithm:9s} {impl:14s} failed: {m.get('error')}", flush=True)
            continue
        # ratios: medians of per-round ratios (paired); "..._of_medians": the ratio of medians
        row = {"case": case, "algorithm": algorithm, "impl": impl, **m,
               "torch_fused_adam_seconds": fused_adam,
               "bytes": moved, "fraction_of_bandwidth": moved / m["seconds"] / bw}
        if fused_adam:
            per_byte = bytes_per_step(sizes, 2) / moved
            row["per_byte_vs_fused_adam"] = paired(m, timed["torch-fused-adam"]) * per_byte
            row["per_byte_vs_fused_adam_of_medians"] = m["seconds"] / fused_adam * per_byte
        if fastest is not None:
            row["vs_fastest_reference"] = paired(m, fastest)
            row["vs_fastest_reference_of_medians"] = m["seconds"] / fastest["seconds"]
        if "seconds" in foreach:
            row["speedup_vs_foreach"] = 1 / paired(m, foreach)
            row["speedup_vs_foreach_of_medians"] = foreach["seconds"] / m["seconds"]
        rows.append(row)
        matrix = m.get("matrix")
        if matrix and matrix["share_of_step"] is not None and matrix["flops_per_s"]:
            print(f"  {algorithm:9s} {impl:14s} matrix work {matrix['share_of_step']:.0%}"
                  f" of the step at {matrix['flops_per_s'] / 1e9:.1f} GFLOP/s (torch.mm "
                  f"of the same shapes {matrix['mm_flops_per_s'] / 1e9:.1f})", flush=True)
        print(f"  {algorithm:9s} {impl:14s} {m['seconds'] * 1e3:9.2f} ms  "
              f"{row['fraction_of_bandwidth']:5.0%} of bandwidth  "
              + (f"per byte ×{row['per_byte_vs_fused_adam']:.2f} fused Adam  "
                 if "per_byte_vs_fused_adam" in row else "")
              + (f"×{row['speedup_vs_foreach']:.2f} vs foreach  "
                 if "speedup_vs_foreach" in row else "")
              + (f"×{row['vs_fastest_reference']:.2f} of the fastest reference  "
                 if "vs_fastest_reference" in row else "")
              + (f"state {m['state_bytes'] / 2**20:.0f} MiB + transient "
                 f"{m['transient_bytes'] / 2**20:.0f} MiB" if "state_bytes" in m else ""),
              flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
