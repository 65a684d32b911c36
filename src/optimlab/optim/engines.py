"""How a chain of transforms is executed over an optimizer's parameters; the math is the same
in every engine, only the granularity differs.

* ``reference``: one parameter tensor at a time, the ground truth (torch's ``_single_tensor_*``).
* ``eager``: the chain over cache-sized pieces: a large parameter is processed in slices of its
  own storage; small ones are gathered into a scratch buffer, updated together and copied back.
  No compiler needed.
* ``compiled``: the packs (a large parameter whole, small ones gathered) handed, up to
  :data:`SLOTS` at a time, to one ``torch.compile``-d kernel (dynamic sizes, so one
  compilation serves every model); a fused kernel reads each element once, so it needs no
  cache-sized slices. A gathered pack ends its call (its copy is still in cache).
  Hyper-parameters and per-step coefficients enter as 0-d tensors, so a schedule never
  recompiles; after the first call of a key (shapes, strides, dtypes, flags) the graph is
  called directly, without Dynamo's guard checks (:class:`_Kernel`). A global reduction's
  first pass (Prodigy's sums) is a second kernel of the same kind, returning each piece's
  shares. For a chain of whole tensors only large tensors
  (stacks of one) are compiled; stacks of several small ones run as in ``eager``. Param groups
  whose chain does matrix work (Muon, SOAP: ``Transform.fuses``) run as in ``eager``.
* ``flat``, ``flat-compiled`` (explicit opt-in): as ``eager``/``compiled``, but the parameters
  and gradients themselves are re-pointed into one flat buffer per cohort, which saves the
  gathering. Every parameter then shares one storage: ``safetensors`` refuses such a model and
  ``share_memory()`` shares the whole buffer.
* ``auto``: ``compiled`` for models of at least :data:`COMPILE_THRESHOLD` elements when a
  compiler works, else ``eager``; decided at the first step (so LazyModules work).

Every engine but the flat ones leaves the storage, dtype, layout and identity of the user's
parameters and gradients alone; all of them follow torch's semantics: a parameter whose ``.grad``
is None is skipped (its state untouched), each parameter counts its own steps, and changes of
``requires_grad``, conversions of the model, new param groups, state resets and loaded state are
seen at the next step.

What the engines own and may pack is the optimizer state: the buffers of parameters updated
together (a *cohort*: one param group, device and dtype, equal step counts) live in flat buffers
and ``optimizer.state[p][key]`` are views into them (torch's format, shapes and values).
Parameters whose state does not fit this (complex ones, sparse ones, DTensor shards) run on the
reference path.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import itertools
import math
import operator
import os
import shutil
import sys
import types
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .transforms import Chain, Hyper


def loaded(module: str, name: str) -> type | None:
    """``module.name`` if that module has been imported, else None. A DTensor (or a
    ZeroRedundancyOptimizer) exists only once its module has been imported, so it is looked up
    there, not imported: importing ``torch.distributed.tensor`` would add about a second to
    every ``import optimlab`` (and ``torch.distributed.optim`` warns of ``torch.jit.script``'s
    deprecation)."""
    found = sys.modules.get(module)
    return getattr(found, name) if found is not None else None


def is_dtensor(x: object) -> bool:
    """Whether ``x`` is a sharded DTensor (FSDP2)."""
    dtensor = loaded("torch.distributed.tensor", "DTensor")
    return dtensor is not None and isinstance(x, dtensor)


if TYPE_CHECKING:
    from .optimizer import Optimizer

__all__ = ["apply_update", "init_state", "make_engine", "is_dtensor", "loaded",
           "ReferenceEngine", "PackedEngine",
           "ENGINE_NAMES", "CHUNK", "COMPILE_THRESHOLD", "SLOTS", "STACK"]

#: elements per piece on CPU: a slice of every buffer, and the temporaries of one op on them,
#: stay in the last-level cache, and each op moves enough bytes (2 MiB of float32) that its own
#: overhead (~10 µs) is small. Measured on a 2-core EPYC (1 MiB L2 per core, 32 MiB L3) over
#: nine elementwise optimizers, tensors of 256K and 4M elements and the 2,000-tensor case:
#: 512K was fastest or within noise of it everywhere; 128K was 15–30 % slower.
CHUNK = 1 << 19
#: a parameter at least this large is a piece of its own; smaller ones are gathered together
#: (a chain of whole tensors: stacked).
SINGLE = 1 << 15
#: the same for the 1-D pieces of the compiled engines, whose kernel takes :data:`SLOTS` pieces of
#: any sizes per call: a gathered piece is copied in and out at every step (two more passes over its
#: parameter, one over its gradient), which costs more than a slot of a call once a tensor has about
#: a thousand elements. Measured on 2,000 tensors (SGD with momentum, against torch's foreach): of
#: 100 elements, gathered 4.8 ms a step, a piece each 7.6 ms; of 1,000, equal (10.6, 10.5 ms); of
#: 3,000, 20.5 against 17.1 ms; of 1K–10K (the speed benchmark's case b), 27.5 against 17.7 ms
#: (Schedule-Free SGD 32 against 19 ms, Adam 32 against 28 ms). Stacks keep :data:`SINGLE`: a chain
#: of whole tensors over case b's tensors as stacks of one each ran slower than eager's batched
#: stacks (Prodigy 174 against 131 ms). The price is in the first step: more pieces make wider
#: graphs (Adam, empty compile cache: a 4-layer MLP of 8 tensors 6.8 → 8.3 s; 100 tensors of 2K
#: elements 4.9 → 17 s, as 100 of 40K take, 15 s).
SINGLE_COMPILED = 1 << 10
#: elements of a stack of same-shaped tensors (chains of ``scope = "tensor"``) updated together.
STACK = 1 << 22
#: pieces per call of the compiled kernel at most; a call of fewer pieces is padded to the next
#: power of two (a graph each for 1, 2, 4, 8 and 16 pieces at most), so a model whose pieces
#: fill one call compiles a graph for as many as it has (a kernel's compile time grows with its
#: slots: 22 s against 49 s for Adafactor's and Adam's on a 4-tensor model with 8). Each call
#: costs ~150 µs of Dynamo's and the engine's Python beside the loops: Adam on 64 tensors of
#: 512×512 took 1.21–1.24× fused Adam's time with 16 against 1.27–1.28× with 8 (alternating
#: runs); its 16-slot graph compiles in ~20 s against ~10 s.
SLOTS = 16
#: ``engine="auto"`` compiles models with at least this many elements (compiling costs seconds).
COMPILE_THRESHOLD = 1 << 20
ENGINE_NAMES = ("reference", "eager", "compiled", "flat", "flat-compiled")


def scalar_dtype() -> torch.dtype:
    """torch's dtype for scalar state (``step``, ``mu_product``): float64 under a float64
    default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def preprocess(p: Tensor, g: Tensor, hp: Hyper, dtype: torch.dtype | None,
               chain: Chain) -> tuple[Tensor, Tensor]:
    """The parameter and gradient as the chain sees them: in ``dtype`` (the optimizer's
    ``state_dtype``) if given, the gradient negated with ``maximize`` and with coupled (L2)
    weight decay added (unless the chain owns it: LARS's trust ratio). The parameter is a copy
    when converted, else ``p`` itself."""
    if dtype is not None and p.dtype != dtype:
        p, g = p.to(dtype), g.to(dtype)
    if hp.on("maximize"):
        g = -g
    if (hp.on("weight_decay") and not hp.on("decoupled_weight_decay")
            and not chain.owns_coupled_weight_decay):
        g = g + hp["weight_decay"] * p
    return p, g


def apply_update(chain: Chain, p: Tensor, g: Tensor, s: Mapping[str, Tensor], hp: Hyper,
                 c: list, dtype: torch.dtype | None = None) -> Tensor | None:
    """The elementwise part of every step: ``maximize``, weight decay, the chain, p ← p − u.

    ``maximize`` and weight decay are options of the optimizer base, applied here so that a
    fused kernel covers them. With ``dtype`` (the optimizer's ``state_dtype``) the update is
    computed in that precision and rounded once into the parameter. Returns the step size
    where it is a tensor (under ``torch.compile``), else None.
    """
    target = p
    p, g = preprocess(p, g, hp, dtype, chain)
    if (hp.on("weight_decay") and hp.on("decoupled_weight_decay")
            and not chain.owns_decoupled_weight_decay):  # else the chain decays in its own way
        p.mul_(1 - hp["lr"] * hp["weight_decay"])
    u, scale = chain.update(g, g, s, p, hp, c)
    if scale is None:
        p.sub_(u)
    elif isinstance(scale, Tensor):
        p.sub_(u * scale)
    else:
        p.add_(u, alpha=-scale)
    if target is not p:
        target.copy_(p)
    return scale if isinstance(scale, Tensor) else None


def add_totals(totals: dict[str, Tensor], shares: Mapping[str, Tensor]) -> None:
    """Sum a global reduction's shares (:meth:`Transform.reduce`) into ``totals``."""
    for key, value in shares.items():
        totals[key] = totals[key] + value if key in totals else value


def init_state(opt: Optimizer, p: Tensor, hp: Hyper) -> tuple[dict[str, Any], bool]:
    """``p``'s state as its first step creates it (the step count, if the optimizer keeps one
    like torch, and the chain's buffers), and whether it was created now. Entries already there
    (loaded from a state dict, or from torch.optim) are kept."""
    state = opt.state[p]
    fresh = "step" not in state if opt.counts_steps else not (state.keys() & chain_keys(opt, hp))
    if not fresh:
        return state, False
    if opt.counts_steps:
        state["step"] = torch.zeros((), dtype=scalar_dtype())
    for key, buffer in opt.chain.init(p, hp).items():
        if key not in state:
            if opt.state_dtype is not None and buffer.is_floating_point():
                buffer = buffer.to(opt.state_dtype)
            state[key] = buffer
    return state, True


def chain_keys(opt: Optimizer, hp: Hyper) -> set[str]:
    """The state keys the chain creates with these hyper-parameters."""
    return set(opt.chain.init(torch.zeros(2, device="meta"), hp))


def advance(opt: Optimizer, state: dict[str, Any], fresh: bool) -> float:
    """Count this step in ``state`` and return t for :meth:`Transform.prepare` (t ≥ 1). An
    optimizer without a step count in its state (SGD, as torch) gets t = 1 on the step that
    created its state and t = ∞ after ("not the first step")."""
    if opt.counts_steps:
        state["step"] += 1
        return state["step"].item()
    return 1 if fresh else math.inf


class _StateView(dict):
    """A parameter's state as the chain sees it (each tensor through ``to``, but the entries
    named in ``keep``); writes go back to the state through ``back``."""

    def __init__(self, state: dict[str, Any], to: Callable, back: Callable,
                 keep: frozenset[str] = frozenset()):
        super().__init__({k: to(v) if torch.is_tensor(v) and k not in keep else v
                          for k, v in state.items()})
        self._state, self._back, self._keep = state, back, keep

    def __setitem__(self, key: str, value: Tensor) -> None:
        super().__setitem__(key, value)
        self._state[key] = value if key in self._keep else self._back(value)


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _stack_of_one(t: Tensor) -> Tensor:
    return t if t.dim() == 0 else t.unsqueeze(0)


def _unstack(t: Tensor) -> Tensor:
    return t if t.dim() == 0 else t.squeeze(0)


def scalar_keys(opt: Optimizer, hp: Hyper) -> frozenset[str]:
    """The names of the chain's scalar (0-d) state, and ``step``: what is 0-d for a 1-element
    1-D parameter. For a 0-d parameter, the other 0-d entries are buffers shaped like it."""
    probe = opt.chain.init(torch.zeros(1, device="meta"), hp)
    return frozenset(k for k, v in probe.items() if v.dim() == 0) | {"step"}


class ReferenceEngine:
    """One parameter tensor at a time, the ground truth every other engine is tested against."""

    name = "reference"

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer

    def gradients(self) -> list[Tensor]:
        """The gradients of this step, for clipping and the non-finite check."""
        return [p.grad for group in self.optimizer.param_groups for p in group["params"]
                if p.grad is not None]

    def step(self) -> None:
        opt = self.optimizer
        for group in opt.param_groups:
            hp = Hyper(group)
            opt.chain.begin(group)
            started = [self.start(opt, hp, p) for p in group["params"] if p.grad is not None]
            if opt.chain.reduces:
                totals: dict[str, Tensor] = {}
                for operands in started:
                    self.reduce(opt, hp, *operands, totals)
                opt.chain.combine(group, totals)
            for operands in started:
                self.finish(opt, hp, *operands)

    @staticmethod
    def start(opt: Optimizer, hp: Hyper, p: Tensor) -> tuple[Tensor, Tensor, Mapping, float]:
        """Create ``p``'s state if new and count the step; returns what the chain works on:
        (parameter, gradient, state, t), seen as the chain's scope needs them."""
        state, fresh = init_state(opt, p, hp)
        step = advance(opt, state, fresh)
        g = p.grad
        view: Mapping[str, Tensor] = state
        if is_dtensor(p):  # the math is elementwise: each rank updates its own shard
            if opt.chain.scope == "tensor":
                raise ValueError(f"{type(opt).__name__} needs whole tensors: sharded DTensor "
                                 f"parameters (FSDP2) are not supported")
            p, g = p.to_local(), g.to_local()
            view = {k: v.to_local() if is_dtensor(v) else v for k, v in state.items()}
        if p.is_complex():
            if opt.chain.scope == "tensor":
                raise ValueError(f"{type(opt).__name__} needs real tensors: complex parameters "
                                 f"are not supported (split them with torch.view_as_real)")
            p, g, view = _real(p), _real(g), _StateView(state, _real, lambda t: t)
        if opt.chain.scope == "tensor":  # a stack of one tensor
            if p.dim() == 0:  # its buffers are 0-d too: every entry but the scalar state
                view = _StateView(state, lambda t: t.unsqueeze(0), lambda t: t.squeeze(0),
                                  scalar_keys(opt, hp))
            else:
                view = _StateView(state, _stack_of_one, _unstack)
            p, g = p.unsqueeze(0), g.unsqueeze(0)
        return p, g, view, step

    @staticmethod
    def reduce(opt: Optimizer, hp: Hyper, p: Tensor, g: Tensor, view: Mapping, step: float,
               totals: dict[str, Tensor]) -> None:
        """This parameter's share of the chain's global reduction."""
        p, g = preprocess(p, g, hp, opt.state_dtype, opt.chain)
        add_totals(totals, opt.chain.reduce(g, view, p, hp))

    @staticmethod
    def finish(opt: Optimizer, hp: Hyper, p: Tensor, g: Tensor, view: Mapping,
               step: float) -> None:
        c = opt.chain.prepare(view, hp, step)
        apply_update(opt.chain, p, g, view, hp, c, opt.state_dtype)


def _per_tensor_only(p: Tensor) -> str | None:
    """Why ``p`` runs on the reference path in every engine (None if it need not)."""
    if is_dtensor(p):
        return "sharded (DTensor)"
    if p.is_complex() or p.is_sparse:
        return "complex or sparse"
    return None


def _tiled(tensors: list[Tensor]) -> Tensor | None:
    """The 1-D tensor that ``tensors`` tile, one after another in one storage, or None."""
    first = tensors[0]
    storage, offset = first.untyped_storage().data_ptr(), first.storage_offset()
    for t in tensors:
        if (not t.is_contiguous() or t.untyped_storage().data_ptr() != storage
                or t.storage_offset() != offset):
            return None
        offset += t.numel()
    n = offset - first.storage_offset()
    return first.new_empty(0).set_(first.untyped_storage(), first.storage_offset(), (n,))


class Pack:
    """Parameters of one cohort updated together: their state as flat 1-D buffers (views of
    which are ``optimizer.state[p][key]``) and, per step, their parameters and gradients as 1-D
    operands (views where the storage allows, else gathered into scratch and copied back).

    ``stacked`` (for chains of ``scope = "tensor"``): the parameters have one shape, and every
    operand and buffer is a stack of them, shaped (B, *shape), instead of 1-D."""

    def __init__(self, params: list[Tensor], states: list[dict], keys: list[str], flat: bool,
                 stacked: bool = False):
        self.params, self.states, self.stacked = params, states, stacked
        self.sizes = [p.numel() for p in params]
        self.n = sum(self.sizes)
        self.dtype, self.device = params[0].dtype, params[0].device
        self.buffers: dict[str, Tensor] = {}
        for key in keys:
            buffer = _pack([state[key] for state in states], states, key)
            self.buffers[key] = self._stack(buffer, states[0][key].shape)
        self.keys = keys
        self.param = self.grad = None
        self._gather: tuple[int, list[Tensor], list[Tensor]] | None = None
        if flat:
            self._adopt()
        # one parameter: the operand is a view of it, made once (a view per step cost ~3 µs
        # a parameter); a plan is remade when the parameter's storage changes (until the next
        # step the view keeps the old storage alive). Detached: a view
        # of a leaf that requires grad, changed in place by one compiled call, cannot be traced
        # again for the next call (a parameter of several calls)
        self.alias = None
        if len(params) == 1 and self.param is None:
            p = params[0].detach()
            self.alias = (p.unsqueeze(0) if stacked else p.view(-1) if p.is_contiguous()
                          else None)

    def _split(self, buffer: Tensor) -> list[Tensor]:
        return [piece.view(p.shape) for piece, p in
                zip(buffer.split(self.sizes), self.params, strict=True)]

    def _stack(self, buffer: Tensor, shape: torch.Size) -> Tensor:
        """A 1-D buffer as this pack's operands have it: itself, or (B, *shape) if stacked."""
        return buffer.view(len(self.params), *shape) if self.stacked else buffer

    def _adopt(self) -> None:
        """Flat engines: re-point the parameters and gradients into flat buffers. A parameter
        re-pointed so keeps its own version counter, which the updates of the buffer do not
        count: the engine counts them (autograd's check that a tensor a graph saved was not
        changed in place before a backward through it)."""
        param = _tiled([p.data for p in self.params])
        if param is None:
            shared = [tuple(p.shape) for p in self.params if p.is_shared()]
            if shared:  # a new storage in this process: other processes would not see it
                raise RuntimeError(
                    f"engine='flat'/'flat-compiled' would re-point {len(shared)} parameters in "
                    f"shared memory (share_memory(), Hogwild), of shapes {shared[:3]}"
                    f"{'...' if len(shared) > 3 else ''}, into a new buffer of this process: "
                    f"their updates would no longer reach the other processes. Use "
                    f"engine='eager' or engine='compiled', which update parameters in place")
            param = torch.cat([p.detach().reshape(-1) for p in self.params])
            for p, view in zip(self.params, self._split(param), strict=True):
                p.data = view
        self.param = param
        self.grad = torch.zeros_like(param)
        self.grad_views = self._split(self.grad)

    def operands(self, scratch: Callable[[int, torch.dtype, torch.device],
                                         tuple[Tensor, Tensor]]):
        """This step's (param, grad) as 1-D tensors and a function that writes the parameters
        back (None when they are views)."""
        if self.param is not None:  # flat: fresh gradients are copied into the buffer
            for p, view in zip(self.params, self.grad_views, strict=True):
                if p.grad is not view:
                    view.copy_(p.grad)
                    p.grad = view
            return self.param, self.grad, None
        if self.alias is not None:
            g = self.params[0].grad
            if self.stacked:
                return self.alias, g.unsqueeze(0), None
            if g.is_contiguous():
                return self.alias, g.view(-1), None
        param, grad = scratch(self.n, self.dtype, self.device)
        if self._gather is None or self._gather[0] != (param.data_ptr(), grad.data_ptr()):
            self._gather = ((param.data_ptr(), grad.data_ptr()), self._split(param),
                            self._split(grad))
        _, params, grads = self._gather
        torch._foreach_copy_(params, self.params)
        torch._foreach_copy_(grads, [p.grad for p in self.params])

        def write_back():
            torch._foreach_copy_(self.params, params)
        shape = self.params[0].shape
        return self._stack(param, shape), self._stack(grad, shape), write_back


def _pack(tensors: list[Tensor], states: list[dict], key: str) -> Tensor:
    """The 1-D buffer that ``tensors`` (``state[key]`` of each state) tile: their own storage
    if they already do, else a new one they are re-pointed into."""
    buffer = _tiled(tensors)
    if buffer is None:  # pack them: the optimizer owns its state
        buffer = torch.cat([t.reshape(-1) for t in tensors])
        pieces = buffer.split([t.numel() for t in tensors])
        for state, t, piece in zip(states, tensors, pieces, strict=True):
            state[key] = piece.view(t.shape)
    return buffer


def _views(parts: list[tuple[list[dict], list[str]]]) -> tuple[list, list, list]:
    """(dicts, keys, tensors): what each ``state[key]`` of each (states, keys) part is now,
    for :func:`_unchanged`."""
    pairs = [(state, key) for states, keys in parts for key in keys for state in states]
    return ([s for s, _ in pairs], [k for _, k in pairs], [s[k] for s, k in pairs])


def _unchanged(views: tuple[list, list, list]) -> bool:
    """Every ``state[key]`` is still the tensor :func:`_views` saw (nothing reset or loaded)."""
    dicts, keys, tensors = views
    return all(map(operator.is_, map(dict.get, dicts, keys), tensors))


class Cohort:
    """Parameters of one group with the same device, dtypes and scalar state (step count...):
    one set of per-step coefficients serves them all. Their 0-d state (``step``,
    ``mu_product``) is packed too, one element each, so that counting a step is one addition."""

    def __init__(self, params: list[Tensor], states: list[dict], fresh: bool,
                 scalars: list[str]):
        self.params, self.states, self.fresh, self.scalars = params, states, fresh, scalars
        self.packs: list[Pack] = []
        #: the members a flat engine re-pointed into its buffers (their versions it counts)
        self.adopted: list[Tensor] = []
        self.buffers = {key: _pack([s[key] for s in states], states, key) for key in scalars}

    def advance(self, opt: Optimizer) -> float:
        """Count the step for every member; t for :meth:`Transform.prepare`."""
        if opt.counts_steps:
            steps = self.buffers["step"]
            steps.add_(1)
            return steps[0].item()
        fresh, self.fresh = self.fresh, False
        return 1 if fresh else math.inf

    def scalar_state(self) -> dict[str, Tensor]:
        """The representative's 0-d state (what every member has), by name."""
        return {k: self.states[0][k] for k in self.scalars}

    def share(self) -> None:
        """Copy the representative's scalar state (updated by ``prepare``) to the others."""
        for key, buffer in self.buffers.items():
            if key != "step" and len(buffer) > 1:
                buffer[1:] = buffer[0]


class GroupPlan:
    """How one param group is stepped until something changes."""

    def __init__(self, group: dict, active: list[Tensor], flags: dict, state: Mapping):
        self.group, self.active, self.flags, self.state = group, active, flags, state
        self.cohorts: list[Cohort] = []
        self.loose: list[Tensor] = []

    def seal(self) -> None:
        """Record what :meth:`valid` compares, once the cohorts and packs are made: each
        packed parameter's storage and state dict, and every ``state[key]`` they hold."""
        packs = [pack for cohort in self.cohorts for pack in cohort.packs]
        self.members = [p for pack in packs for p in pack.params]
        self.pointers = list(map(Tensor.data_ptr, self.members))
        self.dicts = [s for pack in packs for s in pack.states]
        self.views = _views([(c.states, c.scalars) for c in self.cohorts]
                            + [(pack.states, pack.keys) for pack in packs])

    def valid(self, active: list[Tensor], flags: dict, state: Mapping) -> bool:
        """Nothing changed since the plan was made: the same parameters with a gradient, flags,
        parameter storage (a conversion, ``.to()`` or ``p.data = ...`` makes a new one), state
        dicts and state tensors (nothing reset or loaded). One pass over each, every step."""
        return (state is self.state and flags == self.flags and len(active) == len(self.active)
                and all(map(operator.is_, active, self.active))
                and list(map(Tensor.data_ptr, self.members)) == self.pointers
                and all(map(operator.is_, map(state.get, self.members), self.dicts))
                and _unchanged(self.views))


class PackedEngine:
    """The eager engine; the compiled and flat engines change how a pack is run."""

    name = "eager"
    flat = False
    #: elements of a gathered pack, and of a slice where :attr:`slices` is set.
    piece = CHUNK
    #: a parameter at least this large is a pack of its own (see :data:`SINGLE`).
    single = SINGLE
    #: slice large packs into cache-sized pieces on CPU (eager: each op's temporaries stay in
    #: cache); a fused kernel has no temporaries and reads each element once, so the compiled
    #: engines take a pack whole, in fewer calls.
    slices = True

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.plans: dict[int, GroupPlan] = {}
        self._scratch: dict[tuple, tuple[Tensor, Tensor]] = {}
        keep_freed_memory()

    # ------------------------------------------------------------------------------ planning
    def _plans(self) -> list[GroupPlan]:
        opt, plans = self.optimizer, []
        for group in opt.param_groups:
            active = [p for p in group["params"] if p.grad is not None]
            flags = Hyper.split(group, opt.chain.integers)[1]
            plan = self.plans.get(id(group))
            if plan is None or plan.group is not group or not plan.valid(active, flags,
                                                                          opt.state):
                plan = self.plans[id(group)] = self._plan(group, active, flags)
            plans.append(plan)
        if len(self.plans) > len(plans):
            live = {id(g) for g in opt.param_groups}
            self.plans = {k: v for k, v in self.plans.items() if k in live}
        return plans

    def _plan(self, group: dict, active: list[Tensor], flags: dict) -> GroupPlan:
        opt = self.optimizer
        hp = Hyper(group)
        plan = GroupPlan(group, active, flags, opt.state)
        stacked = opt.chain.scope == "tensor"
        layouts: dict[tuple, tuple[dict[str, Tensor], list[str], list[str]]] = {}

        def layout(p: Tensor):
            """The chain's state for a parameter like ``p`` (on the meta device): its shapes,
            the buffers' names and the 0-d entries' names."""
            shape = tuple(p.shape) if stacked else (2,)
            if shape not in layouts:
                probe = opt.chain.init(torch.zeros(shape, device="meta"), hp)
                # a 0-d parameter's buffers are 0-d: tell them from scalar state by the
                # state of a 1-element 1-D parameter
                kinds = probe if shape else opt.chain.init(torch.zeros(1, device="meta"), hp)
                layouts[shape] = (probe, sorted(k for k, v in kinds.items() if v.dim() > 0),
                                  sorted({k for k, v in kinds.items() if v.dim() == 0}
                                         | ({"step"} if opt.counts_steps else set())))
            return layouts[shape]

        members: dict[tuple, list[tuple[Tensor, dict]]] = {}
        counts = collections.Counter(map(id, active))
        for p in active:
            reason = _per_tensor_only(p)
            if counts[id(p)] > 1:  # torch warns, and updates it once per listing
                reason = "a parameter listed twice in its group"
            state, fresh = init_state(opt, p, hp)
            probe, keys, scalars = layout(p)
            if reason is None and any(
                    state[k].shape != (probe[k].shape if stacked else p.shape) for k in keys):
                reason = "state not shaped like its parameter"
            if reason is None and not all(torch.is_tensor(state[k]) and state[k].dim() == 0
                                          for k in scalars):
                reason = "scalar state that is not a 0-d tensor"
            if (reason is None and not stacked and not p.is_contiguous()
                    and (self.flat or p.numel() > CHUNK)):
                reason = "non-contiguous (e.g. channels_last)"  # its layout is kept
            if reason is not None:
                opt.announce(f"engine={self.name!r}: {reason} parameters run on the reference "
                             f"engine")
                plan.loose.append(p)
                continue
            key = (p.device, p.dtype, tuple(p.shape) if stacked else None,
                   tuple(state[k].dtype for k in keys),
                   tuple((state[k].item(), state[k].dtype) for k in scalars),
                   fresh and not opt.counts_steps)
            members.setdefault(key, []).append((p, state))
        for key, pairs in members.items():
            _, keys, scalars = layout(pairs[0][0])
            cohort = Cohort([p for p, _ in pairs], [s for _, s in pairs], key[-1], scalars)
            cohort.packs = [Pack([p for p, _ in part], [s for _, s in part], keys,
                                 self.flat and not stacked, stacked)
                            for part in self._split(pairs, stacked)]
            cohort.adopted = [p for pack in cohort.packs if pack.param is not None
                              for p in pack.params]
            plan.cohorts.append(cohort)
        plan.seal()
        return plan

    def _split(self, pairs: list[tuple[Tensor, dict]], stacked: bool) -> list[list]:
        """A cohort's members in pieces: a parameter of :attr:`single` elements or more
        alone, smaller ones together; stacks of one shape (a chain of whole tensors): up to
        :data:`STACK` elements together below :data:`SINGLE` elements under every engine (a
        stack of one parameter is a view of it, a stack of several is gathered, which costs
        more than the fewer calls save from there on; the compiled kernel runs a stack of
        several eager, batched, see :meth:`CompiledEngine._compiles`)."""
        if self.flat and not stacked:
            return [pairs]
        if stacked:
            n = pairs[0][0].numel()
            count = 1 if n >= SINGLE else STACK // max(1, n)
            return [pairs[i:i + count] for i in range(0, len(pairs), count)]
        parts, small, size = [], [], 0
        for pair in pairs:
            n = pair[0].numel()
            if n >= self.single:
                parts.append([pair])
                continue
            if small and size + n > self.piece:
                parts.append(small)
                small, size = [], 0
            small.append(pair)
            size += n
        return parts + ([small] if small else [])

    def scratch(self, n: int, dtype: torch.dtype,
                device: torch.device) -> tuple[Tensor, Tensor]:
        """Buffers of ``n`` elements to gather a pack's parameters and gradients into, reused
        from pack to pack (a gathered pack is updated and written back before the next)."""
        buffers = self._scratch.get((dtype, device))
        if buffers is None or buffers[0].numel() < n:
            size = max(n, self.piece)
            buffers = self._scratch[(dtype, device)] = (
                torch.empty(size, dtype=dtype, device=device),
                torch.empty(size, dtype=dtype, device=device))
        return buffers[0][:n], buffers[1][:n]

    # ------------------------------------------------------------------------------ stepping
    def gradients(self) -> list[Tensor]:
        """The gradients of this step, for clipping and the non-finite check (flat engines:
        the flat gradient buffers, after copying fresh gradients in)."""
        self._current = self._plans()
        grads = []
        for plan in self._current:
            for cohort in plan.cohorts:
                for pack in cohort.packs:
                    if pack.param is not None:
                        pack.operands(None)
                        grads.append(pack.grad)
                    else:
                        grads.extend(p.grad for p in pack.params)
            grads.extend(p.grad for p in plan.loose)
        return grads

    def step(self) -> None:
        opt = self.optimizer
        plans = getattr(self, "_current", None) or self._plans()
        self._current = None
        for plan in plans:
            hp = Hyper(plan.group)
            opt.chain.begin(plan.group)
            steps = [cohort.advance(opt) for cohort in plan.cohorts]
            loose = [ReferenceEngine.start(opt, hp, p) for p in plan.loose]
            if opt.chain.reduces:
                totals: dict[str, Tensor] = {}
                for cohort in plan.cohorts:
                    self.reduce(cohort.packs, hp, cohort.scalar_state(), totals)
                for operands in loose:
                    ReferenceEngine.reduce(opt, hp, *operands, totals)
                opt.chain.combine(plan.group, totals)
            for cohort, step in zip(plan.cohorts, steps, strict=True):
                c = opt.chain.prepare(cohort.states[0], hp, step)
                cohort.share()
                self.run(cohort.packs, hp, c, cohort.scalar_state())
                if cohort.adopted:  # see Pack._adopt
                    torch._C._increment_version(cohort.adopted)
            for operands in loose:
                ReferenceEngine.finish(opt, hp, *operands)

    def pieces(self, pack: Pack, param: Tensor, grad: Tensor) -> list[tuple]:
        """A pack's operands as (param, grad, buffers) pieces: for the eager engines on CPU,
        slices of at most :attr:`piece` elements (cache-sized; never a 1-element tail after a
        longer slice); else, and for a stack, the whole pack."""
        if pack.stacked or not self.slices or pack.n <= self.piece or pack.device.type != "cpu":
            return [(param, grad, pack.buffers)]
        size = self.piece
        bounds = [*range(0, pack.n, size), pack.n]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            bounds[-2] -= 1
        return [(param[a:b], grad[a:b], {k: v[a:b] for k, v in pack.buffers.items()})
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def reduce(self, packs: list[Pack], hp: Hyper, scalars: dict[str, Tensor],
               totals: dict[str, Tensor]) -> None:
        """The first pass of the chain's global reduction over a cohort's packs."""
        opt = self.optimizer
        for pack in packs:
            param, grad, _ = pack.operands(self.scratch)  # the parameters are not changed
            for p, g, buffers in self.pieces(pack, param, grad):
                p, g = preprocess(p, g, hp, opt.state_dtype, opt.chain)
                add_totals(totals, opt.chain.reduce(g, {**buffers, **scalars}, p, hp))

    def run(self, packs: list[Pack], hp: Hyper, c: list, scalars: dict[str, Tensor]) -> None:
        """The update of a cohort's packs."""
        chain, dtype = self.optimizer.chain, self.optimizer.state_dtype
        for pack in packs:
            param, grad, write_back = pack.operands(self.scratch)
            for p, g, buffers in self.pieces(pack, param, grad):
                apply_update(chain, p, g, {**buffers, **scalars}, hp, c, dtype)
            if write_back is not None:
                write_back()


class FlatEngine(PackedEngine):
    """The eager engine over parameters and gradients re-pointed into flat buffers (opt-in)."""

    name = "flat"
    flat = True


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed piece-sized temporaries instead of returning them to the OS.

    The eager engines allocate and free a few piece-sized temporaries per piece; with glibc's
    defaults the top of the heap can be trimmed and re-faulted every piece, which was measured to
    make some steps 3× slower. This raises M_TRIM_THRESHOLD to 256 MiB and M_MMAP_THRESHOLD to
    32 MiB, process-wide, once, the first time an eager engine is made (the process then keeps up
    to 256 MiB of freed heap). Set OPTIMLAB_KEEP_MALLOC=1 to leave malloc alone.
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


#: a kernel's graphs: one per call width (1, 2, 4, 8, 16) and, for stacks, per shape (the
#: dummies' shapes are static); Dynamo's default of 8 per code object would fall back to eager
#: after the eighth. Raised once, process-wide, the first time a compiled engine compiles.
RECOMPILE_LIMIT = 256


@functools.cache
def _raise_recompile_limits() -> None:
    import torch._dynamo

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit,
                                             4 * RECOMPILE_LIMIT)


def _fused_step(chain: Chain, flags: dict[str, bool], dtype: torch.dtype | None,
                kind: str = "update") -> Callable:
    """One kernel for up to :data:`SLOTS` pieces: ``(param, grad, buffers)`` each, any size;
    shared by every optimizer whose chain, flags and state dtype are equal (transforms are
    configuration only), so a second optimizer of the same kind compiles nothing. ``kind``:
    ``"update"`` (:func:`apply_update` on each piece; returns the step sizes) or ``"reduce"``
    (the first pass of a global reduction; returns each piece's shares of the sums)."""
    return _kernel(repr(chain), tuple(sorted(flags.items())), dtype, chain, kind)


_KERNELS: dict[tuple, Callable] = {}


def _kernel(key: str, flags: tuple, dtype: torch.dtype | None, chain: Chain,
            kind: str) -> Callable:
    kernel = _KERNELS.get((key, flags, dtype, kind))
    if kernel is None:
        kernel = _KERNELS[(key, flags, dtype, kind)] = _Kernel(chain, dict(flags), dtype, kind)
    return kernel


#: Inductor's options for the kernels. Its own checks of every input's size, stride and
#: alignment inside the generated code are left out: Dynamo's guards already check what the
#: kernel was specialised on, and the checks cost about 10 µs per parameter and step, as much as
#: the update of a 30K-element tensor. And two pieces of a call are not fused into one loop:
#: Inductor fuses loops that share reads of more than ``score_fusion_memory_threshold`` bytes
#: (default 10), and pieces of one size share their 0-d hyper-parameters (8 bytes each), so it
#: ran four pieces' streams in one loop, measured 4–8 % slower than a loop each (16M elements in
#: 64 tensors, Adam and Adagrad). Within a piece, fusion is by shared tensors (kilobytes).
#: And the vector instructions are those the CPU reports (``cpp.vec_isa_ok``): Inductor would
#: first compile and load a probe program for each (AVX-512, its VNNI variant, AVX2), 8 of the
#: 13 s of a first compile on a 2-core machine (a 100-tensor Adam; 4.7 s without). Inductor
#: keeps that answer for the process, so later compiles in it skip the probes too; a compiler
#: that cannot build what the CPU reports fails the kernel's compile, which then runs eager
#: (announced, see :class:`_Kernel`).
KERNEL_OPTIONS = {"size_asserts": False, "alignment_asserts": False, "scalar_asserts": False,
                  "score_fusion_memory_threshold": 256, "cpp.vec_isa_ok": True}


class _Kernel:
    """The compiled kernel of one chain, flag set, state dtype and kind, called with a key
    (see :meth:`__call__`), or, once torch.compile has failed to generate code for this chain
    (a compiler bug; it fails before running anything), the same function eager, announced
    once. Inductor's CPU backend in torch 2.13 cannot compile LARS's step over stacks of two
    or more same-shaped matrices (``KeyError: 'bufN'``, an outer-loop fusion of a per-tensor
    scalar with in-place updates; pytorch/pytorch#196570); such stacks no longer reach the
    kernel (:meth:`CompiledEngine._compiles`).

    Dynamo's entry into a compiled function checks its guards on every input (dtype, device,
    shape, the structure of the arguments) before running the graph: ~50 µs a call when the
    interpreter's data are in cache, ~500 µs after a kernel that streamed a few MiB through
    the caches (measured with 16 pieces of 256K float32 elements: 2.73 ms a call through
    Dynamo against 2.42 ms calling the graph). So the graph is also called directly: a call's
    ``key`` holds everything those guards read that the engine does not fix by construction
    (the shapes and strides of parameters and gradients, the dtypes, the device, the default
    dtype, the boolean coefficients); the first call of a key goes through Dynamo, which
    picks (or compiles) the graph, and the later ones call that graph with the arguments its
    placeholders name. That needs the traced function to be one graph (``fullgraph=True``),
    so that the graph is the whole call (its only effects the in-place updates of its inputs);
    a chain that breaks the graph on purpose (Keras' float32 roundings of float64 operands,
    ``transforms._eagerly``) is compiled again without, and always called through Dynamo;
    so is a kernel once Dynamo's recompile limit is reached (which ``fullgraph`` turns into an
    error), whose calls Dynamo then runs with the graphs it has or eager.
    """

    def __init__(self, chain: Chain, flags: dict[str, bool], dtype: torch.dtype | None,
                 kind: str):
        _raise_recompile_limits()

        def update(pieces, scalars, values, coefficients):
            hp = Hyper(values, flags)
            scales = [apply_update(chain, param, grad, {**buffers, **scalars}, hp,
                                   coefficients, dtype) for param, grad, buffers in pieces]
            # returned, so that Inductor computes the step size once, before the loops:
            # inlined, it is recomputed in every iteration (the C++ compiler cannot hoist
            # arithmetic on a kernel's scalar inputs, which might alias its outputs)
            return [scale for scale in scales if scale is not None]

        def reduce(pieces, scalars, values, coefficients):
            hp = Hyper(values, flags)
            shares = []
            for param, grad, buffers in pieces:
                p, g = preprocess(param, grad, hp, dtype, chain)
                shares.append(chain.reduce(g, {**buffers, **scalars}, p, hp))
            return shares

        self.chain, self.kind = chain, kind
        fused = update if kind == "update" else reduce
        # a code object of its own: Dynamo keeps graphs, counts recompilations and gives up on
        # a function (its recompile limit) per code object, which every kernel would share
        code = fused.__code__.replace(co_name=f"{fused.__name__}_{next(_KERNEL_COUNT)}")
        self.fused = types.FunctionType(code, fused.__globals__, None, None, fused.__closure__)
        self.compiled = torch.compile(self.fused, dynamic=True, fullgraph=True,
                                      backend=self._backend)
        self.whole = True  # the traced function is one graph
        self.failed: list[str] = []
        self.graphs: dict[tuple, Callable] = {}  # key → the graph its calls run
        self.ran: list[tuple] = []  # (graph, its arguments' maker, what Dynamo passed it)

    def _backend(self, gm, example_inputs):
        """Inductor (with :data:`KERNEL_OPTIONS`), and the graph's direct call: its arguments
        from the call's, by the names Dynamo gave its placeholders (``L['pieces'][0][1]``, a
        size ``L['pieces'][0][1].size()[0]``); None if one is not such an expression."""
        from torch._inductor.compile_fx import compile_fx

        graph = compile_fx(gm, example_inputs, config_patches=KERNEL_OPTIONS)
        names = [node.meta["grapharg"].source.name
                 for node in gm.graph.find_nodes(op="placeholder")]
        arguments = None
        if all(name.startswith("L[") for name in names):
            arguments = eval("lambda L: (" + "".join(f"{n}, " for n in names) + ")")  # noqa: S307

        def run(*args):
            self.ran.append((graph, arguments, args))
            return graph(*args)
        return run

    def _direct(self, args: tuple, ran: list[tuple]) -> Callable | None:
        """The graph the call just made through Dynamo ran, as a direct call, if it ran one
        graph, of the whole call, whose arguments the placeholders' names give: the same
        objects Dynamo passed it (checked)."""
        if not self.whole or self.kind != "update" or len(ran) != 1:
            return None
        graph, arguments, passed = ran[0]
        if arguments is None:
            return None
        def flat(args: tuple) -> tuple:  # the call's arguments by the traced function's names
            return arguments(dict(zip(self.fused.__code__.co_varnames[:4], args, strict=True)))

        made = flat(args)
        if len(made) != len(passed) or not all(
                a is b if isinstance(b, Tensor) else a == b
                for a, b in zip(made, passed, strict=True)):
            return None
        return lambda *args: graph(*flat(args))

    def __call__(self, key: tuple | None, *args):
        """The kernel on ``args`` (pieces, scalars, values, coefficients). ``key``: see the
        class docstring; None never calls the graph directly."""
        if not self.failed:
            graph = self.graphs.get(key)
            if graph is not None:
                return graph(*args)
            import torch._dynamo.exc

            self.ran = ran = []
            try:
                try:
                    out = self.compiled(*args)
                except (torch._dynamo.exc.Unsupported,  # a graph break (before running)
                        torch._dynamo.exc.FailOnRecompileLimitHit):  # as fullgraph reports it
                    if not self.whole:
                        raise
                    self.whole = False
                    self.compiled = torch.compile(self.fused, dynamic=True,
                                                  backend=self._backend)
                    out = self.compiled(*args)
            except (torch._dynamo.exc.BackendCompilerFailed,
                    torch._dynamo.exc.Unsupported) as error:
                reason = str(error).strip().splitlines()[0]
                self.failed.append(reason)
                warnings.warn(f"torch.compile failed on the step of {self.chain!r} ({reason}); "
                              f"it runs eager", stacklevel=3)
            except torch._dynamo.exc.TorchRuntimeError:
                # the step itself fails while being traced (an error torch raises on these
                # inputs; the known one, state of another dtype, never reaches the kernel:
                # CompiledEngine._fuses): run it eager, so that the user gets torch's own
                # error, not the tracer's wrapping of it
                pass
            else:
                direct = self._direct(args, ran) if key is not None else None
                if direct is not None:
                    if len(self.graphs) >= MAX_KEYS:
                        self.graphs.clear()
                    self.graphs[key] = direct
                return out
            finally:
                self.ran = []  # nor the call's tensors kept alive
        return self.fused(*args)


_KERNEL_COUNT = itertools.count()

#: keys of direct calls a kernel remembers (a model's calls have a few; a model whose shapes
#: change at every step would otherwise grow the table without bound)
MAX_KEYS = 4096


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


class CompiledEngine(PackedEngine):
    """The pieces of a cohort through one ``torch.compile``-d kernel, :data:`SLOTS` per call."""

    name = "compiled"
    slices = False
    single = SINGLE_COMPILED

    def __init__(self, optimizer: Optimizer):
        super().__init__(optimizer)
        self.kernels: dict[tuple, Callable] = {}
        self.numbers: dict[str, tuple[Tensor, float]] = {}  # name → (tensor, its value)
        self.padding: dict[tuple, tuple] = {}
        self.schedules: dict[tuple, tuple] = {}

    def _tensors(self, numbers: dict[str, Any]) -> dict[str, Tensor]:
        """Numbers as 0-d float64 tensors, reused step to step (a new value never recompiles),
        each written only when its value changed (most hyper-parameters never do)."""
        out = {}
        for name, value in numbers.items():
            value = float(value)
            held = self.numbers.get(name)
            if held is None:
                held = self.numbers[name] = (torch.tensor(value, dtype=torch.float64), value)
            elif held[1] != value or math.copysign(1, held[1]) != math.copysign(1, value):
                held[0].fill_(value)  # (a NaN is always written: it equals nothing)
                held = self.numbers[name] = (held[0], value)
            out[name] = held[0]
        return out

    def run(self, packs: list[Pack], hp: Hyper, c: list, scalars: dict[str, Tensor]) -> None:
        self._launch("update", packs, hp, c, scalars, None)

    def reduce(self, packs: list[Pack], hp: Hyper, scalars: dict[str, Tensor],
               totals: dict[str, Tensor]) -> None:
        self._launch("reduce", packs, hp, [], scalars, totals)

    def _fuses(self, packs: list[Pack], hp: Hyper) -> bool:
        """Whether a cohort's step goes through the kernel at all; else it runs as in
        eager: matrix work (see the module docstring), and state of another dtype than its
        parameters without a ``state_dtype`` (a model converted with ``.double()`` after its
        first steps: the step then fails as in torch, and tracing it first would only log the
        tracer's error). A cohort has one parameter dtype and one dtype per buffer."""
        first = packs[0]
        mixed = (self.optimizer.state_dtype is None
                 and any(v.dtype != first.dtype for v in first.buffers.values()))
        return self.optimizer.chain.fused(hp.values) and not mixed

    def _launch(self, kind: str, packs: list[Pack], hp: Hyper, c: list,
                scalars: dict[str, Tensor], totals: dict[str, Tensor] | None) -> None:
        """A cohort's packs through the compiled kernel of ``kind``, up to :data:`SLOTS` per
        call: the update (a gathered pack written back), or the reduction's first pass (its
        shares summed into ``totals``; the parameters are not changed). The packs the kernel
        does not take run as in eager."""
        values, flags = Hyper.split(hp.values, self.optimizer.chain.integers)
        compiled, eager, kernel, padding, signature = self._schedule(kind, packs, hp, flags)
        if eager and kind == "update":
            super().run(eager, hp, c, scalars)
        elif eager:
            super().reduce(eager, hp, scalars, totals)
        if not compiled:
            return
        numbers = self._tensors({**values, **{f"{i}.{k}": v for i, d in enumerate(c)
                                              for k, v in d.items() if not isinstance(v, bool)}})
        coefficients = [{k: v if isinstance(v, bool) else numbers[f"{i}.{k}"]
                         for k, v in d.items()} for i, d in enumerate(c)]
        values = {k: numbers[k] for k in values}
        # what the kernel's guards read that is the same for every call of this cohort (see
        # _Kernel): the buffers are the engine's, contiguous, shaped by their parameter's
        # shape; a 1-D pack's operands are contiguous, of its size
        fixed = (signature, compiled[0].device, torch.get_default_dtype(), tuple(values),
                 tuple((k, v) if isinstance(v, bool) else k for d in c for k, v in d.items()),
                 tuple((k, v.dtype) for k, v in scalars.items()))
        batch: list[tuple] = []
        shapes: list = []

        def call(write_back: Callable[[], None] | None) -> None:
            """The kernel on the batch, padded with dummies to a power of two; then a
            gathered pack written back (an update) or the real pieces' shares added to
            ``totals`` (a reduction)."""
            width = min(SLOTS, 1 << (len(batch) - 1).bit_length())
            out = kernel((fixed, width, *shapes), batch + padding[len(batch):width], scalars,
                         values, coefficients)
            if totals is not None:
                for shares in out[:len(batch)]:
                    add_totals(totals, shares)
            elif write_back is not None:
                write_back()
            batch.clear()
            shapes.clear()

        views: list[tuple] = []  # packs whose operands are views: called after the others
        for pack in compiled:  # a pack is one piece: the compiled engines do not slice
            param, grad, write_back = pack.operands(self.scratch)
            shape = (param.shape, param.stride(), grad.stride()) if pack.stacked else pack.n
            if write_back is None:
                views.append(((param, grad, pack.buffers), shape))
                continue
            # a gathered pack is a call of its own, so that its copy is still in cache when
            # the kernel reads it and when it is written back (gathering up to SLOTS packs
            # before one call made SGD's step on 2,000 tensors of 1K-10K elements 1.25x
            # slower, Adam's 1.13x)
            batch.append((param, grad, pack.buffers))
            shapes.append(shape)
            call(write_back)
        # the views' calls one after the other, their operands made before the first: the
        # Python between two calls finds its data evicted by the kernel before it
        for start in range(0, len(views), SLOTS):
            for piece, shape in views[start:start + SLOTS]:
                batch.append(piece)
                shapes.append(shape)
            call(None)

    def _schedule(self, kind: str, packs: list[Pack], hp: Hyper, flags: dict) -> tuple:
        """(the packs the kernel takes, the others, the kernel, its padding, its signature)
        for a cohort's packs, made once per plan, kind and flag set."""
        fused = self._fuses(packs, hp)
        key = (kind, id(packs), tuple(sorted(flags.items())), fused)
        made = self.schedules.get(key)
        if made is not None and made[0] is packs:
            return made[1]
        compiled, eager = [], []
        for pack in packs:
            (compiled if fused and self._compiles(pack) else eager).append(pack)
        kernel = padding = signature = None
        if compiled:
            opt, first = self.optimizer, compiled[0]
            signature = (kind, key[2], first.dtype, first.device.type,
                         tuple((k, v.dtype) for k, v in first.buffers.items()))
            kernel = self.kernels.get(signature)
            if kernel is None:
                kernel = self.kernels[signature] = _fused_step(opt.chain, flags,
                                                               opt.state_dtype, kind)
            padding = self._padding(signature[1:], first)  # the same dummies for both kinds
        if len(self.schedules) >= MAX_KEYS:  # plans remade many times
            self.schedules.clear()
        self.schedules[key] = (packs, (compiled, eager, kernel, padding, signature))
        return compiled, eager, kernel, padding, signature

    @staticmethod
    def _compiles(pack: Pack) -> bool:
        """Whether the kernel takes this pack of a fused cohort; else it runs as in eager:
        sizes 0 and 1 (they would specialise the kernel), and stacks of several small tensors
        (a chain of whole tensors: its per-tensor reductions over a stack compile to loops
        slower than eager's batched ops, measured 2× on 2,000 tensors of 1K–10K elements; a
        large tensor, a stack of one, gains)."""
        return pack.n >= 2 and not (pack.stacked and len(pack.params) > 1)

    def _padding(self, signature: tuple, pack: Pack) -> list[tuple]:
        """2-element dummy pieces, one per slot (distinct, so no slot aliases another), that
        fill the unused slots of a call; for a stacked pack, stacks of one zero tensor of its
        shape, and buffers of theirs (a tensor-scope transform may depend on the rank).

        Their length (the stack's count) is static: with a symbolic one, the graph of a call
        with fewer large pieces than slots (three and a dummy) would also accept a call with
        as many large pieces as slots, and run them in the loops it fused for the dummies
        (measured ~1.5× slower than a graph of their own)."""
        if pack.stacked:
            signature = (*signature, tuple(pack.params[0].shape),
                         tuple((k, tuple(v.shape[1:])) for k, v in pack.buffers.items()))
        padding = self.padding.get(signature)
        if padding is None:
            import torch._dynamo

            def zeros(size, like):
                dummy = torch.zeros(size, dtype=like.dtype, device=like.device)
                torch._dynamo.mark_static(dummy, 0)
                return dummy
            first = pack.params[0]
            size = (1, *first.shape) if pack.stacked else (2,)
            padding = self.padding[signature] = [
                (zeros(size, first), zeros(size, first),
                 {k: zeros((1, *v.shape[1:]) if pack.stacked else (2,), v)
                  for k, v in pack.buffers.items()}) for _ in range(SLOTS)]
        return padding


class FlatCompiledEngine(CompiledEngine):
    """The compiled engine over parameters and gradients re-pointed into flat buffers (opt-in)."""

    name = "flat-compiled"
    flat = True


ENGINE_CLASSES = {"reference": ReferenceEngine, "eager": PackedEngine,
                  "compiled": CompiledEngine, "flat": FlatEngine,
                  "flat-compiled": FlatCompiledEngine}


def make_engine(name: str, optimizer: Optimizer):
    """The engine called ``name``; ``"auto"`` picks compiled for large models when a compiler
    works, else eager (announcing why). Called at the first step, when the parameters exist."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if name == "auto":
        total = sum(p.numel() for p in params)
        sharded = next((p for p in params if is_dtensor(p)), None)
        if sharded is not None:
            optimizer.announce("engine='auto' uses reference: the parameters are sharded "
                               "DTensors (FSDP2), updated one local shard at a time")
            name = "reference"
        elif total < COMPILE_THRESHOLD:
            name = "eager"
        else:
            reason = compiler_available(params[0].device.type if params else "cpu")
            if reason is None:
                name = "compiled"
            else:
                optimizer.announce(f"engine='auto' uses eager: {reason}")
                name = "eager"
    if "compiled" in name:
        reason = compiler_available(params[0].device.type if params else "cpu")
        if reason is not None:
            warnings.warn(f"engine={name!r}: {reason}", stacklevel=4)
    return ENGINE_CLASSES[name](optimizer)
