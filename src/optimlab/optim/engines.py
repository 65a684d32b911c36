"""How a chain of transforms is executed; the math is the same in every engine.

* ``reference``: one parameter tensor at a time, the ground truth (torch's ``_single_tensor_*``).
* ``eager``: parameters, gradients and state of a param group live in one flat buffer per
  (device, dtype); the chain runs over cache-sized chunks of it, so temporaries stay in cache.
* ``compiled``: the same chain over the whole flat buffer under ``torch.compile``, one fused
  kernel per step; hyper-parameters and the step count enter as 0-d tensors, so a learning-rate
  schedule never recompiles.

The flat engines make each ``p.data``, ``p.grad`` and ``optimizer.state[p][key]`` a view into
their buffers, so ``state_dict`` keeps torch's format and backward accumulates straight into the
flat gradient. Parameters the flat buffers cannot hold (complex ones, sparse ones, DTensor shards)
run on the reference path; parameters that already tile one storage (ZeroRedundancyOptimizer's
buckets) are adopted in place.
A flat bucket steps all its parameters together: one whose ``.grad`` is None gets a zero gradient.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .transforms import Chain, Hyper

if torch.distributed.is_available():
    from torch.distributed.tensor import DTensor
else:  # a torch build without distributed support has no sharded tensors
    DTensor = ()

if TYPE_CHECKING:
    from .optimizer import Optimizer

__all__ = ["apply_update", "ReferenceEngine", "EagerEngine", "CompiledEngine", "make_engine",
           "CHUNK", "COMPILE_THRESHOLD"]

#: elements per chunk of the eager engine on CPU: a few such slices of every buffer fit in L2.
CHUNK = 1 << 17
#: ``engine="auto"`` compiles models with at least this many elements (compiling costs seconds).
COMPILE_THRESHOLD = 1 << 20


def scalar_dtype() -> torch.dtype:
    """torch's dtype for ``state["step"]``: float64 under a float64 default, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def apply_update(chain: Chain, p: Tensor, g: Tensor, s: Mapping[str, Tensor], hp: Hyper,
                 c: list, dtype: torch.dtype | None = None) -> None:
    """The elementwise part of every step: ``maximize``, weight decay, the chain, p ← p − u.

    With ``dtype`` (the optimizer's ``state_dtype``) the update is computed in that precision
    and rounded once into the parameter.
    """
    target = p
    if dtype is not None and p.dtype != dtype:
        p, g = p.to(dtype), g.to(dtype)
    if hp.on("maximize"):
        g = -g
    if hp.on("weight_decay"):
        if hp.on("decoupled_weight_decay"):
            p.mul_(1 - hp["lr"] * hp["weight_decay"])
        else:
            g = g + hp["weight_decay"] * p
    u, scale = chain.update(g, g, s, p, hp, c)
    if scale is None:
        p.sub_(u)
    elif isinstance(scale, Tensor):
        p.sub_(u * scale)
    else:
        p.add_(u, alpha=-scale)
    if target is not p:
        target.copy_(p)


def init_state(opt: Optimizer, p: Tensor, hp: Hyper) -> dict[str, Any]:
    """``p``'s state as its first step creates it: the step count and the chain's buffers
    (entries already there, e.g. loaded from torch.optim, are kept)."""
    state = opt.state[p]
    if "step" not in state:
        state["step"] = torch.zeros((), dtype=scalar_dtype())
    for key, buffer in opt.chain.init(p, hp).items():
        state.setdefault(key, opt._state_buffer(buffer))
    return state


class _RealView(dict):
    """A complex parameter's state seen through ``torch.view_as_real``; writes go through."""

    def __init__(self, state: dict[str, Tensor]):
        super().__init__({k: torch.view_as_real(v) if torch.is_tensor(v) and v.is_complex()
                          else v for k, v in state.items()})
        self._state = state

    def __setitem__(self, key: str, value: Tensor) -> None:
        super().__setitem__(key, value)
        self._state[key] = value


class ReferenceEngine:
    """One parameter tensor at a time, the ground truth every other engine is tested against."""

    name = "reference"

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer

    def step(self) -> None:
        opt = self.optimizer
        for group in opt.param_groups:
            hp = Hyper(group)
            for p in group["params"]:
                if p.grad is not None:
                    self.update(opt, group, hp, p)

    @staticmethod
    def update(opt: Optimizer, group: dict[str, Any], hp: Hyper, p: Tensor) -> None:
        state = opt.state[p]
        if "step" not in state:
            init_state(opt, p, hp)
        state["step"] += 1
        step = state["step"].item()
        g = p.grad
        view: Mapping[str, Tensor] = state
        if isinstance(p, DTensor):  # the math is elementwise: each rank updates its own shard
            p, g = p.to_local(), g.to_local()
            view = {k: v.to_local() if isinstance(v, DTensor) else v for k, v in state.items()}
        if p.is_complex():
            p, g, view = torch.view_as_real(p), torch.view_as_real(g), _RealView(state)
        c = opt.chain.prepare(view, hp, step)
        apply_update(opt.chain, p, g, view, hp, c, opt.state_dtype)

    def gradients(self) -> list[Tensor]:
        """The gradients of this step (the optimizer calls this before :meth:`step`)."""
        return [p.grad for group in self.optimizer.param_groups for p in group["params"]
                if p.grad is not None]

    def zero_grad(self) -> set[int]:
        return set()

    def invalidate(self) -> None:
        pass


class _Unflattenable(Exception):
    """The parameters' state cannot share one flat buffer (the message says why)."""


def _per_tensor_only(p: Tensor) -> str | None:
    """Why ``p`` cannot live in a flat buffer (None if it can)."""
    if isinstance(p, DTensor):
        return "sharded (DTensor)"
    if p.is_complex() or p.is_sparse:
        return "complex or sparse"
    return None


def _tiled_storage(params: list[Tensor], n: int) -> Tensor | None:
    """The flat tensor that ``params`` already tile, one after another in one storage (e.g.
    ZeroRedundancyOptimizer's ``parameters_as_bucket_view``), or None. Adopting it instead of
    re-pointing ``p.data`` keeps the owner of that storage (and its broadcasts) working."""
    first = params[0]
    storage, offset = first.untyped_storage(), first.storage_offset()
    for p in params:
        if (not p.is_contiguous() or p.untyped_storage().data_ptr() != storage.data_ptr()
                or p.storage_offset() != offset):
            return None
        offset += p.numel()
    return first.new_empty(0).set_(storage, first.storage_offset(), (n,))


class Bucket:
    """The parameters of one group on one (device, dtype), their gradients and their state,
    each in one flat buffer; ``p.data``, ``p.grad`` and ``state[p][key]`` are views into it."""

    def __init__(self, opt: Optimizer, group: dict[str, Any], params: list[Tensor]):
        self.group, self.params = group, params
        hp = Hyper(group)
        self.dtype, self.device = params[0].dtype, params[0].device
        bounds, start = [], 0
        for p in params:
            bounds.append((start, start + p.numel()))
            start += p.numel()
        self.bounds, n = bounds, start
        states = [init_state(opt, p, hp) for p in params]
        keys = {k for state in states for k, v in state.items() if torch.is_tensor(v)}
        self.scalars: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        for key in sorted(keys):
            values = [state.get(key) for state in states]
            if all(v is not None and v.dim() == 0 for v in values):
                if len({v.item() for v in values}) > 1:
                    raise _Unflattenable(f"per-parameter {key!r} values differ")
                shared = values[0].detach().clone()
                for state in states:
                    state[key] = shared
                self.scalars[key] = shared
                continue
            dtype = next(v for v in values if v is not None).dtype
            flat = torch.zeros(n, dtype=dtype, device=self.device)
            for state, value, p, (a, b) in zip(states, values, params, bounds, strict=True):
                if value is not None:
                    if value.shape != p.shape:
                        raise _Unflattenable(f"state {key!r} is not shaped like its parameter")
                    flat[a:b].copy_(value.reshape(-1))
                state[key] = flat[a:b].view_as(p)
            self.buffers[key] = flat
        shared = _tiled_storage(params, n)
        self.param = torch.empty(n, dtype=self.dtype, device=self.device) if shared is None \
            else shared
        self.grad = torch.zeros(n, dtype=self.dtype, device=self.device)
        self.grad_views = []
        for p, (a, b) in zip(params, bounds, strict=True):
            if shared is None:
                self.param[a:b].copy_(p.detach().reshape(-1))
                p.data = self.param[a:b].view_as(p)
            view = self.grad[a:b].view_as(p)
            if p.grad is not None:
                view.copy_(p.grad)
            p.grad = view
            self.grad_views.append(view)
        self.pointers = [p.data_ptr() for p in params]
        self.flags = Hyper.split(group)[1]
        self.compiled: dict[Any, Callable] = {}
        self.values: dict[str, Tensor] = {}

    def sync(self) -> bool:
        """Reattach gradients as views (after ``zero_grad(set_to_none=True)`` or a fresh
        backward); False if the bucket must be rebuilt (parameters replaced, flags changed)."""
        for i, p in enumerate(self.params):
            if p.data_ptr() != self.pointers[i] or p.dtype != self.dtype:
                return False
            g, view = p.grad, self.grad_views[i]
            if g is not view:
                if g is None:
                    view.zero_()
                else:
                    view.copy_(g)
                p.grad = view
        return Hyper.split(self.group)[1] == self.flags

    def chunks(self, size: int):
        n = self.param.numel()
        for a in range(0, n, size):
            yield a, min(a + size, n)


class FlatEngine:
    """What the eager and compiled engines share: building, checking and running buckets."""

    name = "flat"

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.buckets: list[Bucket] | None = None
        self.loose: list[tuple[dict[str, Any], Tensor]] = []
        self.signature: tuple | None = None

    def _signature(self) -> tuple:
        return tuple((id(g), tuple(id(p) for p in g["params"]))
                     for g in self.optimizer.param_groups)

    def invalidate(self) -> None:
        self.buckets = None

    def _build(self) -> None:
        opt = self.optimizer
        buckets, loose = [], []
        for group in opt.param_groups:
            by_kind: dict[tuple, list[Tensor]] = defaultdict(list)
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                reason = _per_tensor_only(p)
                if reason:
                    opt._announce(f"engine={self.name!r}: {reason} parameters run on the "
                                  f"reference engine")
                    loose.append((group, p))
                else:
                    by_kind[(p.device, p.dtype)].append(p)
            for params in by_kind.values():
                try:
                    buckets.append(Bucket(opt, group, params))
                except _Unflattenable as reason:
                    opt._announce(f"engine={self.name!r}: {reason}; those parameters run on the "
                                  f"reference engine")
                    loose.extend((group, p) for p in params)
        self.buckets, self.loose, self.signature = buckets, loose, self._signature()

    def _ready(self) -> list[Bucket]:
        if self.buckets is None or self.signature != self._signature():
            self._build()
        for i, bucket in enumerate(self.buckets):
            if not bucket.sync():
                self.buckets[i] = Bucket(self.optimizer, bucket.group, bucket.params)
        return self.buckets

    def step(self) -> None:
        """Update every bucket (readied by :meth:`gradients`, which the optimizer calls first:
        after it every ``p.grad`` is its bucket's view) and the loose parameters."""
        for bucket in self.buckets:
            bucket.scalars["step"] += 1
            self.run(bucket)
        for group, p in self.loose:
            if p.grad is not None:
                ReferenceEngine.update(self.optimizer, group, Hyper(group), p)

    def run(self, bucket: Bucket) -> None:
        raise NotImplementedError

    def gradients(self) -> list[Tensor]:
        """Ready the buckets for this step (rebuild after replaced parameters, reattach grads)
        and return the gradients as few tensors as possible: one flat tensor per bucket."""
        buckets = self._ready()
        return [b.grad for b in buckets] + [p.grad for _, p in self.loose if p.grad is not None]

    def zero_grad(self) -> set[int]:
        """Zero the flat gradients in place, keeping the views; the ids of those parameters."""
        if self.buckets is None:
            return set()
        handled = set()
        for bucket in self.buckets:
            bucket.grad.zero_()
            for p, view in zip(bucket.params, bucket.grad_views, strict=True):
                if p.grad is view:
                    handled.add(id(p))
        return handled


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed chunk-sized temporaries instead of returning them to the OS.

    The eager engine allocates and frees a few chunk-sized temporaries per chunk; with glibc's
    defaults the top of the heap can be trimmed and re-faulted every chunk, which was measured to
    make some steps 3× slower. Raising M_TRIM_THRESHOLD to 256 MiB and M_MMAP_THRESHOLD to 32 MiB
    (process-wide, once) avoids it. Set OPTIMLAB_KEEP_MALLOC=1 to leave malloc alone.
    """
    if os.environ.get("OPTIMLAB_KEEP_MALLOC") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, 256 << 20)
                and libc.mallopt(m_mmap_threshold, 32 << 20))


class EagerEngine(FlatEngine):
    """The chain over cache-sized chunks of the flat buffers; no compiler needed."""

    name = "eager"

    def __init__(self, optimizer: Optimizer):
        super().__init__(optimizer)
        keep_freed_memory()

    def run(self, bucket: Bucket) -> None:
        chain, hp = self.optimizer.chain, Hyper(bucket.group)
        c = chain.prepare(bucket.scalars, hp, bucket.scalars["step"].item())
        size = CHUNK if bucket.device.type == "cpu" else bucket.param.numel()
        for a, b in bucket.chunks(size):
            s = {k: v[a:b] for k, v in bucket.buffers.items()}
            s.update(bucket.scalars)
            apply_update(chain, bucket.param[a:b], bucket.grad[a:b], s, hp, c,
                         self.optimizer.state_dtype)


#: every optimizer and flag set is one more specialisation of the same ``fused`` code object;
#: Dynamo's default of 8 per code object would silently fall back to eager after the eighth.
RECOMPILE_LIMIT = 256


def _fused_step(chain: Chain, flags: dict[str, bool], dtype: torch.dtype | None) -> Callable:
    import torch._dynamo

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit,
                                             4 * RECOMPILE_LIMIT)

    def fused(param, grad, buffers, scalars, values, coefficients):
        hp = Hyper(values, flags)
        apply_update(chain, param, grad, {**buffers, **scalars}, hp, coefficients, dtype)

    return torch.compile(fused, dynamic=False)


@functools.cache
def compiler_available(device_type: str) -> str | None:
    """None if torch.compile can generate code for this device, else the reason."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception as error:  # pragma: no cover - depends on the torch build
        return f"torch.compile is unavailable ({error})"
    if device_type == "cpu" and not (shutil.which("g++") or shutil.which("c++")
                                     or shutil.which("clang++")):
        return "no C++ compiler found for torch.compile on CPU"
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton is not installed"
    return None


class CompiledEngine(FlatEngine):
    """The chain over each whole flat buffer as one ``torch.compile``-d kernel."""

    name = "compiled"

    def run(self, bucket: Bucket) -> None:
        values, flags = Hyper.split(bucket.group)
        key = tuple(sorted(flags.items()))
        fused = bucket.compiled.get(key)
        if fused is None:
            fused = bucket.compiled[key] = _fused_step(self.optimizer.chain, flags,
                                                       self.optimizer.state_dtype)
        # the step's scalar work runs here, once, outside the kernel; numbers enter as 0-d tensors
        coefficients = self.optimizer.chain.prepare(bucket.scalars, Hyper(bucket.group),
                                                    bucket.scalars["step"].item())
        numbers = {**values, **{f"{i}.{k}": v for i, c in enumerate(coefficients)
                                for k, v in c.items() if not isinstance(v, bool)}}
        for name, value in numbers.items():
            tensor = bucket.values.get(name)
            if tensor is None:
                bucket.values[name] = torch.tensor(float(value), dtype=torch.float64)
            else:
                tensor.fill_(float(value))
        fused(bucket.param, bucket.grad, bucket.buffers, bucket.scalars,
              {k: bucket.values[k] for k in values},
              [{k: v if isinstance(v, bool) else bucket.values[f"{i}.{k}"] for k, v in c.items()}
               for i, c in enumerate(coefficients)])


ENGINE_CLASSES = {"reference": ReferenceEngine, "eager": EagerEngine, "compiled": CompiledEngine}


def make_engine(name: str, optimizer: Optimizer):
    """The engine called ``name``; ``"auto"`` picks compiled for large models when a compiler
    works, else eager (announcing why)."""
    if name == "auto":
        params = [p for g in optimizer.param_groups for p in g["params"]]
        total = sum(p.numel() for p in params)
        sharded = next((p for p in params if isinstance(p, DTensor)), None)
        if sharded is not None:
            optimizer._announce("engine='auto' uses reference: the parameters are sharded "
                                "DTensors (FSDP2), updated one local shard at a time")
            name = "reference"
        elif total < COMPILE_THRESHOLD:
            name = "eager"
        else:
            reason = compiler_available(params[0].device.type if params else "cpu")
            if reason is None:
                name = "compiled"
            else:
                optimizer._announce(f"engine='auto' uses eager: {reason}")
                name = "eager"
    if name == "compiled":
        reason = compiler_available(next((p.device.type for g in optimizer.param_groups
                                          for p in g["params"]), "cpu"))
        if reason is not None:
            warnings.warn(f"engine='compiled': {reason}", stacklevel=3)
    return ENGINE_CLASSES[name](optimizer)
