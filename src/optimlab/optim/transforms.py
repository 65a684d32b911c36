"""The algebra of update rules: small gradient transformations, each one idea, written once.

An optimizer is a :class:`Chain` of transforms. Each transform maps the incoming direction ``u``
to a new direction, may keep per-parameter buffers, and reads its hyper-parameters by name from
the parameter group, so torch's schedulers and param groups work unchanged. The optimizer then
applies ``p ← p − u_final``.

The pieces (after optax's ``GradientTransformation``; see optax/_src/transform.py):

* :class:`LearningRate` — scale by η (with Adagrad's optional inverse-time decay);
* :class:`Momentum` — heavy-ball / Nesterov velocity, torch's ``v = μv + (1−τ)u``;
* :class:`AverageGradient` — Adam's first moment, optionally bias-corrected;
* :class:`NesterovAverage` — Nadam's first moment with the μₜ schedule;
* :class:`Adapt` — divide by a statistic of past gradients: decaying (EMA) or accumulated
  (sum) L2, or decaying L∞ (max); centered, AMSGrad and the placement of ε as options;
* :class:`ScaleByUpdateRms` — Adadelta's RMS of past updates ("consistent units");
* :class:`RectifiedAdapt` — RAdam's adaptation, used only where its variance is tractable;
* :class:`ResilientStep` — Rprop's per-coordinate step sizes driven by gradient signs;
* :class:`DecayingLearningRate` — ASGD's η_t = lr/(1 + λ·lr·t)^α on the λ-regularized loss;
* :class:`AverageIterates` — Polyak–Juditsky averaging of the iterates (ASGD's ``ax``);
* :class:`DecoupledWeightDecay` — u + λp inside the chain, for algorithms whose decoupled
  decay is scaled by their own step size (Prodigy) or taken at their own point (Schedule-Free);
* :class:`BiasCorrection` — 1/(1 − βᵗ) of an average taken earlier in the chain (AdaBelief);
* :class:`FixedWeightDecay` — decoupled decay after the learning rate, optionally not scaled by
  it (``fixed_decay``);
* :class:`InterpolatedSign` — Lion's sign of an interpolation between momentum and gradient;
* :class:`DecorrelatedAdapt` — ADOPT's normalization by the previous steps' second moment,
  clipped, before any averaging;
* :class:`MixSlowAverage` — AdEMAMix's slow EMA of the gradient, added to the fast one;
* :class:`Delayed` — a chain that starts after k steps whose gradients only warm its state up
  (SOAP's first gradient only initializes the preconditioner);
* :class:`NormalizeRms` — divide each tensor by its root mean square (SOAP's
  ``normalize_gradient``);
* :class:`TrustRatio` — LARS's and LAMB's layer-wise trust ratio: each tensor's direction
  rescaled to a fraction of the parameter's norm (``scope = "tensor"``);
* :class:`Orthogonalize` — Muon's Newton–Schulz orthogonalization of each matrix, batched
  over a stack (``scope="tensor"``);
* :class:`AdjustedLearningRate` — η scaled by the matrix's shape (Muon's ``adjust_lr_fn``);
* :class:`Select` — one of several chains per param group, by a string entry of the group
  (Muon for the hidden matrices and AdamW for the rest, in one optimizer);
* :class:`FactoredAdapt` — Adafactor's second moment, factored into row and column statistics
  over the last two dimensions of a ≥2-D tensor (``scope = "tensor"``);
* :class:`ClipByRms` — Adafactor's update clipping: divide by max(1, RMS(u)/d) per tensor;
* :class:`RelativeStepSize` — Adafactor's step size max(ε₂, RMS(p))·min(η, 1/√t) per tensor.

The order in the chain is the convention: ``[Momentum, LearningRate]`` is torch's SGD
(v = μv + g, p ← p − ηv) and ``[LearningRate, Momentum]`` the classic one (v = μv + ηg,
p ← p − v), which differ as soon as η changes during training.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import matmul

__all__ = [
    "per_tensor",
    "Transform",
    "Chain",
    "chain",
    "Interval",
    "Hyper",
    "hyper",
    "LearningRate",
    "Momentum",
    "AverageGradient",
    "NesterovAverage",
    "Adapt",
    "ScaleByUpdateRms",
    "RectifiedAdapt",
    "ResilientStep",
    "DecayingLearningRate",
    "AverageIterates",
    "DecoupledWeightDecay",
    "BiasCorrection",
    "FixedWeightDecay",
    "InterpolatedSign",
    "DecorrelatedAdapt",
    "MixSlowAverage",
    "Delayed",
    "NormalizeRms",
    "TrustRatio",
    "Orthogonalize",
    "AdjustedLearningRate",
    "Select",
    "newton_schulz",
    "FactoredAdapt",
    "ClipByRms",
    "RelativeStepSize",
    "KERAS_MINMAX",
]

State = MutableMapping[str, Tensor]
Step = float | Tensor
Scalars = Mapping[str, Any]


def hyper(group: Mapping, key: str, default=None):
    """Read hyper-parameter ``key`` from a param group; ``"betas.1"`` indexes into a tuple."""
    name, _, index = key.partition(".")
    if name not in group:
        return default
    value = group[name]
    if not index:
        return value
    if not isinstance(value, tuple | list):
        raise ValueError(f"{name}={value!r} is not allowed: give a tuple (its entry {index} is "
                         f"{display(key)})")
    return value[int(index)]


def check_tuple(group: Mapping, key: str, length: int, allowed: str,
                entry: Callable[[Any], bool] | None = None) -> None:
    """Refuse ``group[key]`` unless it is missing or a tuple/list of ``length`` entries, each
    passing ``entry`` if given (``allowed`` says what they are)."""
    value = group.get(key)
    if value is not None and (not isinstance(value, tuple | list) or len(value) != length
                              or (entry is not None and not all(map(entry, value)))):
        raise ValueError(f"{key}={value!r} is not allowed: give {allowed}")


def display(key: str) -> str:
    """``"betas.1"`` → ``"betas[1]"``, the way a user writes it."""
    name, _, index = key.partition(".")
    return f"{name}[{index}]" if index else name


class Hyper:
    """A param group's hyper-parameters as the transforms read them.

    ``hp[key]`` is the value (``"betas.1"`` indexes a tuple): a Python number in the reference
    and eager engines, a 0-d tensor under ``torch.compile`` so that a schedule never recompiles.
    ``hp.on(key)`` is always a Python bool (the value is truthy/non-zero): it selects code paths
    (AMSGrad, centered, momentum on/off) and is fixed at compile time.
    """

    __slots__ = ("values", "flags")

    def __init__(self, values: Mapping, flags: Mapping[str, bool | str] | None = None):
        self.values = values
        self.flags = flags

    def __getitem__(self, key: str):
        if self.flags is not None:
            return self.values[key]
        value = hyper(self.values, key)
        if value is None:
            raise KeyError(key)
        return value.item() if isinstance(value, Tensor) else value

    def __contains__(self, key: str) -> bool:
        if self.flags is not None:
            return key in self.values or key in self.flags
        return hyper(self.values, key) is not None

    def get(self, key: str, default=None):
        """The value, or ``default`` where the group has none (None: "not given")."""
        if self.flags is not None:  # under torch.compile only numbers are values
            return self.values.get(key, default)
        return self[key] if key in self else default

    def on(self, key: str) -> bool:
        if self.flags is not None:
            return bool(self.flags.get(key, False))
        return bool(hyper(self.values, key, False))

    def integer(self, key: str) -> int:
        """An integer that shapes the computation (listed in :attr:`Transform.integers`): a
        Python int in every engine, like :meth:`on`'s flags fixed at compile time."""
        return int(self.flags[key] if self.flags is not None else self[key])

    def choice(self, key: str, default: str | None = None) -> str | None:
        """A string-valued entry (``adjust_lr_fn="original"``), or ``default`` if it is absent
        or None: like :meth:`on`, a Python value that selects a code path (the compiled kernel
        is specialised on it)."""
        if self.flags is not None:
            value = self.flags.get(key)
            return value if isinstance(value, str) else default
        value = hyper(self.values, key)
        return value if isinstance(value, str) else default

    @staticmethod
    def split(group: Mapping, integers: Collection[str] = ()
              ) -> tuple[dict[str, float], dict[str, bool | str | int]]:
        """A group's numeric hyper-parameters (tuples flattened to ``"betas.0"``) and the
        flags of all of them, for the compiled engine; string entries (choices read with
        :meth:`choice`) and the ``integers`` (read with :meth:`integer`) are kept as they are
        among the flags."""
        values: dict[str, float] = {}
        flags: dict[str, bool | str | int] = {}
        for key, value in group.items():
            if key == "params":
                continue
            if isinstance(value, str) or key in integers:
                flags[key] = value
                continue
            items = [(f"{key}.{i}", v) for i, v in enumerate(value)] \
                if isinstance(value, tuple | list) else [(key, value)]
            for name, v in items:
                if isinstance(v, bool) or v is None:
                    flags[name] = bool(v)
                elif isinstance(v, int | float | Tensor):
                    values[name] = float(v)
                    flags[name] = bool(v)
            if isinstance(value, bool) or value is None:
                flags[key] = bool(value)
        return values, flags


@dataclass(frozen=True)
class Interval:
    """An allowed range written like a mathematician would: ``Interval.parse("[0, 1)")``."""

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = False

    _PATTERN = re.compile(r"^\s*([\[(])\s*([^,]+?)\s*,\s*([^\])]+?)\s*([\])])\s*$")

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = cls._PATTERN.match(text)
        if match is None:
            raise ValueError(f"interval {text!r} is not of the form '[a, b)'")
        lo, a, b, hi = match.groups()
        return cls(float(a), float(b), lo == "[", hi == "]")

    def __contains__(self, x: float) -> bool:
        above = x >= self.low if self.low_closed else x > self.low
        below = x <= self.high if self.high_closed else x < self.high
        return above and below

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            return "inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v:g}")

        lo = "[" if self.low_closed else "("
        hi = "]" if self.high_closed else ")"
        return f"{lo}{fmt(self.low)}, {fmt(self.high)}{hi}"

    def check(self, key: str, value) -> None:
        """Raise ``ValueError`` naming ``key``, its ``value`` and this range if it falls outside."""
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(f"{display(key)} must be a number or a 1-element Tensor in "
                                 f"{self}, got a Tensor of shape {tuple(value.shape)}")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{display(key)}={value!r} must be a number in {self}")
        if math.isnan(value) or value not in self:
            raise ValueError(f"{display(key)}={value!r} is out of range: allowed {self}")


NONNEGATIVE = "[0, inf)"
UNIT = "[0, 1]"
UNIT_OPEN = "[0, 1)"


REDUCTIONS = ("sum", "mean", "norm", "max", "rms")


def per_tensor(x: Tensor, reduction: str = "sum", like: Tensor | None = None) -> Tensor:
    """A reduction of each tensor of a stack (``scope = "tensor"``), shaped (B, 1, …, 1) with
    as many dimensions as ``like`` (default ``x``) so that it broadcasts against it:
    ``u / per_tensor(u, "norm")`` normalizes every tensor of the stack by its own norm.
    ``reduction``: one of :data:`REDUCTIONS` (``"norm"`` is the L2 norm, ``"max"`` of values,
    ``"rms"`` the root mean square ‖x‖/√n, as torch's Adafactor computes it)."""
    flat = x.reshape(x.shape[0], -1)
    if reduction == "sum":
        out = flat.sum(1)
    elif reduction == "mean":
        out = flat.mean(1)
    elif reduction == "norm":
        out = torch.linalg.vector_norm(flat, dim=1)
    elif reduction == "max":
        out = flat.amax(1)
    elif reduction == "rms":
        out = torch.linalg.vector_norm(flat, dim=1) / flat.shape[1] ** 0.5
    else:
        raise ValueError(f"reduction={reduction!r} is not one of {REDUCTIONS}")
    return out.view(-1, *([1] * ((x if like is None else like).dim() - 1)))


class Transform:
    """One idea of an update rule.

    Subclasses set :attr:`hyperparameters` (group key → allowed interval), declare the names of
    their buffers in :attr:`state` and create them in :meth:`init`, compute the step's scalar
    coefficients (bias corrections, schedules; 0-d state) in :meth:`prepare`, and implement
    :meth:`update` on plain tensors, mutating buffers in place. :meth:`prepare` runs once per
    step outside any kernel, so a fused kernel does no scalar work per element.

    What :meth:`update` is given depends on :attr:`scope`:

    * ``"element"`` (the default): any slice of the flattened tensors; the math is elementwise.
    * ``"tensor"``: whole tensors as the user shaped them, as a *stack*: ``u``, ``g``, ``p`` and
      every buffer have a leading dimension over B tensors of the same shape (B = 1 in the
      reference engine), so per-tensor reductions (norms, trust ratios) are
      :func:`per_tensor` and matrix work (``u @ u.mT``) is batched. Buffers may have
      any shape (:meth:`init` gets the unstacked parameter), e.g. Adafactor's row and
      column statistics; a 0-d buffer is scalar state, but for a 0-d parameter, whose buffers
      shaped like it are 0-d and are stacked as any other (B,).

    0-d state (``step``, NAdam's ``mu_product``) is scalar state in every scope: parameters
    whose scalar state is equal are stepped together, so it may change only in
    :meth:`prepare`, which runs once for all of them.

    Two optional hooks reach past one parameter, for the param group as a whole:

    * :meth:`begin` runs once per group and step before any parameter, and may update group
      entries: group-level state kept in the param group, as the authors' packages of
      Schedule-Free and Prodigy keep theirs (so it is in ``state_dict()["param_groups"]``).
    * :meth:`reduce` and :meth:`combine` are a global reduction over all the group's
      parameters: a first pass calls ``reduce`` on every parameter (or piece of one) with a
      gradient and sums the 0-d tensors it returns; ``combine(group, totals)`` then updates
      group entries; the usual pass (:meth:`prepare`, :meth:`update`) follows.

    One optional hook moves the parameters themselves, outside any step:

    * :meth:`to_eval` and :meth:`to_train` (with :attr:`modes`): an algorithm that evaluates
      its gradients at another point than the one to evaluate the model at (Schedule-Free's
      y and x) moves each parameter with state between the two, in place, when
      :meth:`Optimizer.eval() <optimlab.optim.Optimizer.eval>` and ``train()`` are called;
      the mode is the group's ``train_mode``, as the authors' package keeps it.
    """

    #: group key → allowed interval, e.g. ``{"betas.0": "[0, 1)"}``; used to validate groups.
    hyperparameters: Mapping[str, str] = {}
    #: the names of every per-parameter buffer this transform may keep (torch's state names),
    #: fixed when it is constructed: a chain refuses two transforms that claim the same name.
    state: tuple[str, ...] = ()
    #: the group keys read as on/off switches with ``hp.on`` (e.g. ``"amsgrad"``); with
    #: :attr:`hyperparameters`, the keywords an optimizer built from the transform takes.
    flags: tuple[str, ...] = ()
    #: the integer group keys that shape the computation (the step of a slice), read with
    #: ``hp.integer``: Python ints in every engine; a compiled kernel is specialised on them.
    integers: tuple[str, ...] = ()
    #: True if ``update(k·u) = k·update(u)`` for a scalar k and the state does not depend on u:
    #: a pending scalar factor then passes through instead of costing a pass over the tensor.
    linear: bool = False
    #: ``"element"`` or ``"tensor"``: what :meth:`update` may assume (see the class docstring).
    scope: str = "element"
    #: True if the transform implements :meth:`reduce` and :meth:`combine`.
    reduces: bool = False
    #: True if the transform implements :meth:`to_eval` and :meth:`to_train`.
    modes: bool = False
    #: False for matrix work (Newton–Schulz, rotations into an eigenbasis): the products
    #: dominate the step and ``torch.compile`` gains nothing on them, while every shape and
    #: stack size would be one more specialisation; the compiled engines run a param group
    #: whose chain has such a transform eager (:meth:`fused`).
    fuses: bool = True
    #: True if the chain applies decoupled weight decay itself, in its own form (scaled by an
    #: adapted step size, or at another point than the update): with the group's
    #: ``decoupled_weight_decay`` on, the base then leaves ``weight_decay`` to the chain
    #: instead of applying p ← p(1 − ηλ) (coupled L2 decay stays the base's).
    owns_decoupled_weight_decay: bool = False
    #: True if the chain applies coupled (L2) weight decay itself, in its own form (LARS adds
    #: λp only to the tensors it scales, inside its trust ratio): with the group's
    #: ``decoupled_weight_decay`` off, the base then does not add λp to the gradient.
    owns_coupled_weight_decay: bool = False

    def fused(self, group: Mapping) -> bool:
        """Whether the compiled engines compile this transform's step for ``group``."""
        return self.fuses

    def begin(self, group: dict) -> None:
        """Once per param group and step, before any parameter: update group-level state."""

    def warmup(self, g: Tensor, s: State, p: Tensor, hp: Hyper) -> None:
        """Inside :class:`Delayed`, at each of the steps before the chain starts: take what
        the gradient ``g`` tells (SOAP's preconditioner statistics) into the buffers ``s``."""

    def to_eval(self, p: Tensor, s: State, hp: Hyper) -> None:
        """Move the parameter ``p`` (the user's tensor, with state ``s``) in place from the
        point gradients are taken at to the point the model is evaluated at."""

    def to_train(self, p: Tensor, s: State, hp: Hyper) -> None:
        """The inverse of :meth:`to_eval`: back to the point gradients are taken at."""

    def reduce(self, g: Tensor, s: State, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        """First pass of a global reduction: this parameter's (or piece's) share of the sums,
        as 0-d tensors; may update buffers (it runs once per parameter and step). ``g`` is the
        gradient after the optimizer's preprocessing, as :meth:`update` gets it."""
        return {}

    def combine(self, group: dict, totals: dict[str, Tensor]) -> None:
        """After :meth:`reduce` on every parameter of the group: the summed ``totals``."""

    def init(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        """The buffers this transform keeps for parameter ``p`` (torch's state names)."""
        return {}

    def prepare(self, s: State, hp: Hyper, step: float) -> dict[str, Any]:
        """This step's scalar coefficients, given to :meth:`update` as ``c``; may update 0-d
        state. ``step`` counts the updates of this parameter, this one included (t ≥ 1).
        Numbers become 0-d tensors under ``torch.compile``; bools stay Python bools and select
        code paths (the kernel is specialised on them)."""
        return {}

    def validate(self, group: Mapping) -> None:
        """Check the group's hyper-parameters; raise ``ValueError`` naming the bad one."""
        for key, interval in self.hyperparameters.items():
            value = hyper(group, key)
            if value is not None:
                Interval.parse(interval).check(key, value)

    def update(self, u: Tensor, g: Tensor, s: State, p: Tensor, hp: Hyper,
               c: Scalars) -> Tensor | tuple[Tensor, Any]:
        """Map the incoming direction ``u`` to the outgoing one.

        May return ``(tensor, k)`` meaning ``k · tensor``: the factor is applied later, folded
        into the next non-linear transform or the final ``p.add_(u, alpha=−k)``. ``u`` itself is
        never modified in place.

        Args:
            u: the direction produced by the previous transform (the gradient for the first).
            g: the gradient after the optimizer's preprocessing (clipping, sign, L2 penalty).
            s: this parameter's state; buffers are updated in place.
            p: the parameter (read-only here).
            hp: the param group's hyper-parameters.
            c: the coefficients :meth:`prepare` returned for this step (numbers, or 0-d tensors
                under ``torch.compile``).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Chain(Transform):
    """Transforms applied one after another; itself a transform."""

    def __init__(self, transforms: Iterable[Transform]):
        self.transforms: tuple[Transform, ...] = tuple(transforms)
        for t in self.transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"chain() takes Transform instances, got {t!r}")
        owners: dict[str, tuple[int, Transform]] = {}
        for i, t in enumerate(self.transforms):
            for name in t.state:
                if name in owners:
                    j, other = owners[name]
                    raise ValueError(
                        f"transforms {j} ({other!r}) and {i} ({t!r}) of the chain both keep the "
                        f"state {name!r}: each buffer belongs to one transform (one that takes "
                        f"a name for it, as Adapt(name=...), can be given another)")
                owners[name] = (i, t)

    @property
    def state(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(name for t in self.transforms for name in t.state)

    @property
    def hyperparameters(self) -> dict[str, str]:  # type: ignore[override]
        merged: dict[str, str] = {}
        for t in self.transforms:
            merged.update(t.hyperparameters)
        return merged

    @property
    def flags(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(key for t in self.transforms for key in t.flags))

    @property
    def integers(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(key for t in self.transforms for key in t.integers))

    @property
    def scope(self) -> str:  # type: ignore[override]
        return "tensor" if any(t.scope == "tensor" for t in self.transforms) else "element"

    @property
    def reduces(self) -> bool:  # type: ignore[override]
        return any(t.reduces for t in self.transforms)

    @property
    def modes(self) -> bool:  # type: ignore[override]
        return any(t.modes for t in self.transforms)

    def fused(self, group):
        return all(t.fused(group) for t in self.transforms)

    @property
    def owns_decoupled_weight_decay(self) -> bool:  # type: ignore[override]
        return any(t.owns_decoupled_weight_decay for t in self.transforms)

    @property
    def owns_coupled_weight_decay(self) -> bool:  # type: ignore[override]
        return any(t.owns_coupled_weight_decay for t in self.transforms)

    def begin(self, group):
        for t in self.transforms:
            t.begin(group)

    def to_eval(self, p, s, hp):
        for t in reversed(self.transforms):  # undo the last move first
            t.to_eval(p, s, hp)

    def to_train(self, p, s, hp):
        for t in self.transforms:
            t.to_train(p, s, hp)

    def reduce(self, g, s, p, hp) -> dict[str, Tensor]:
        """Every reducing transform's sums, keyed ``"{index}.{name}"``."""
        return {f"{i}.{k}": v for i, t in enumerate(self.transforms) if t.reduces
                for k, v in t.reduce(g, s, p, hp).items()}

    def combine(self, group, totals):
        for i, t in enumerate(self.transforms):
            if t.reduces:
                prefix = f"{i}."
                t.combine(group, {k[len(prefix):]: v for k, v in totals.items()
                                  if k.startswith(prefix)})

    def init(self, p, hp):
        buffers: dict[str, Tensor] = {}
        for t in self.transforms:
            own = t.init(p, hp)
            undeclared = set(own) - set(t.state)
            if undeclared:
                raise TypeError(f"{t!r} created the state {sorted(undeclared)} that its `state` "
                                f"{t.state} does not declare")
            buffers.update(own)
        return buffers

    def prepare(self, s, hp, step) -> list[dict[str, Any]]:  # type: ignore[override]
        return [t.prepare(s, hp, step) for t in self.transforms]

    def validate(self, group):
        for t in self.transforms:
            t.validate(group)

    def update(self, u, g, s, p, hp, c):
        """Returns ``(u, k)``: the direction is ``k · u`` (k = None for 1)."""
        scale = None
        for t, coefficients in zip(self.transforms, c, strict=True):
            if scale is not None and not t.linear:
                u, scale = u * scale, None
            out = t.update(u, g, s, p, hp, coefficients)
            if isinstance(out, tuple):
                u, factor = out
                scale = factor if scale is None else scale * factor
            else:
                u = out
        return u, scale

    def __iter__(self):
        return iter(self.transforms)

    def __repr__(self) -> str:
        return "chain(" + ", ".join(map(repr, self.transforms)) + ")"


def chain(*transforms: Transform | Sequence[Transform]) -> Chain:
    """Compose transforms left to right: ``chain(AverageGradient(), Adapt(), LearningRate())``."""
    flat: list[Transform] = []
    for t in transforms:
        flat.extend(t if isinstance(t, Sequence | Chain) else [t])
    return Chain(flat)


class LearningRate(Transform):
    r"""Scale by the learning rate: :math:`u \leftarrow \eta_t u`.

    With ``lr_decay`` in the group (Adagrad), :math:`\eta_t = \eta / (1 + (t-1)\,\text{lr\_decay})`.
    """

    hyperparameters = {"lr": NONNEGATIVE, "lr_decay": NONNEGATIVE}
    linear = True

    def prepare(self, s, hp, step):
        lr = hp["lr"]
        if "lr_decay" in hp:
            lr = lr / (1 + (step - 1) * hp["lr_decay"])
        return {"lr": lr}

    def update(self, u, g, s, p, hp, c):
        return u, c["lr"]


class Momentum(Transform):
    r"""Heavy-ball momentum with optional Nesterov look-ahead (torch's formulation).

    .. math::
        v_t = \mu v_{t-1} + (1-\tau) u_t \quad (v_1 = u_1), \qquad
        \text{out} = \begin{cases} u_t + \mu v_t & \text{nesterov} \\ v_t & \text{else}\end{cases}

    Group keys: ``momentum`` (μ; 0 turns the transform off), ``dampening`` (τ), ``nesterov``.
    The Nesterov form is Sutskever et al.'s look-ahead gradient rewritten in the current
    iterate (Sutskever, Martens, Dahl, Hinton, ICML 2013); tests check the equivalence.
    With ``damp_first=True`` the buffer starts at 0 and every step is damped,
    :math:`v_1 = (1-\tau) u_1` (pytorch_optimizer's LARS), instead of torch's undamped
    :math:`v_1 = u_1`; the two agree for τ = 0. State: ``momentum_buffer``.
    """

    hyperparameters = {"momentum": NONNEGATIVE, "dampening": UNIT}
    state = ("momentum_buffer",)
    flags = ("nesterov",)

    def __init__(self, nesterov_needs_momentum: bool = True, damp_first: bool = False):
        #: torch's SGD refuses ``nesterov=True`` with μ = 0; Keras' allows it (plain SGD, as
        #: the Nesterov term μv vanishes).
        self.nesterov_needs_momentum = nesterov_needs_momentum
        if damp_first:  # only then, so that the chains without it keep their repr
            self.damp_first = damp_first

    def init(self, p, hp):
        return {"momentum_buffer": torch.zeros_like(p)} if hp.on("momentum") else {}

    def validate(self, group):
        super().validate(group)
        if not group.get("nesterov"):
            return
        if group.get("dampening", 0) != 0 or (self.nesterov_needs_momentum
                                               and group.get("momentum", 0) <= 0):
            needs = "momentum > 0 and dampening == 0" if self.nesterov_needs_momentum \
                else "dampening == 0"
            raise ValueError(
                f"nesterov=True requires {needs}, got "
                f"momentum={group.get('momentum')!r}, dampening={group.get('dampening')!r}")

    def prepare(self, s, hp, step):
        if not hp.on("dampening"):
            return {}
        if getattr(self, "damp_first", False):  # v₀ = 0: every step damped
            return {"damped": 1 - hp["dampening"]}
        # the first step stores u undamped (torch: v₁ = u₁)
        return {"damped": 1 - hp["dampening"] * (step > 1)}

    def update(self, u, g, s, p, hp, c):
        if not hp.on("momentum"):
            return u
        mu = hp["momentum"]
        if "momentum_buffer" not in s:  # momentum switched on after the state was created
            s["momentum_buffer"] = torch.zeros_like(u)
        buf = s["momentum_buffer"]
        buf.mul_(mu).add_(u * c["damped"] if "damped" in c else u)
        return u + mu * buf if hp.on("nesterov") else buf


class AverageGradient(Transform):
    r"""Exponential moving average of the direction, Adam's first moment.

    .. math:: m_t = \beta m_{t-1} + (1-\beta) u_t, \qquad
              \text{out} = m_t / (1-\beta^t) \text{ if bias-corrected, else } m_t

    :math:`m_0 = 0`, or the group's ``initial`` entry (Yogi's ``initial_accumulator_value``).
    With ``nesterov`` (a group flag, Muon's), the output looks one step ahead:
    :math:`\text{out} = u_t + \beta (m_t - u_t)`, computed as torch's Muon computes it
    (``u.lerp(m, β)``). ``name`` is the buffer's state name (torch's Muon:
    ``momentum_buffer``). Reference: Kingma & Ba, "Adam", ICLR 2015, Algorithm 1.
    State: ``exp_avg`` (or ``name``).
    """

    state = ("exp_avg",)

    def __init__(self, decay: str = "betas.0", bias_correction: bool = True,
                 initial: str | None = None, name: str = "exp_avg",
                 nesterov: str | None = None):
        self.decay = decay
        self.bias_correction = bias_correction
        self.hyperparameters = {decay: UNIT_OPEN}
        if initial is not None:  # only then, so that the chains without one keep their repr
            self.initial = initial
            self.hyperparameters[initial] = NONNEGATIVE
        if name != "exp_avg":
            self.name = name
            self.state = (name,)
        if nesterov is not None:
            self.nesterov = nesterov
            self.flags = (nesterov,)

    def init(self, p, hp):
        initial = getattr(self, "initial", None)
        return {getattr(self, "name", "exp_avg"): torch.full_like(p, hp.get(initial, 0.0))
                if initial else torch.zeros_like(p)}

    def prepare(self, s, hp, step):
        return {"correction": 1 - hp[self.decay] ** step} if self.bias_correction else {}

    def update(self, u, g, s, p, hp, c):
        m = s[getattr(self, "name", "exp_avg")]
        m.lerp_(u, 1 - hp[self.decay])
        nesterov = getattr(self, "nesterov", None)
        out = u.lerp(m, hp[self.decay]) if nesterov is not None and hp.on(nesterov) else m
        return (out, 1 / c["correction"]) if self.bias_correction else out


class NesterovAverage(Transform):
    r"""Nadam's first moment: the bias-corrected average taken one step ahead.

    With the momentum schedule :math:`\mu_t = \beta(1 - \tfrac12\,0.96^{t\psi})` (Dozat 2016;
    torch's ``momentum_decay`` ψ = 0.004, Keras' ψ = 1; ``momentum_decay=None`` gives Dozat's
    constant :math:`\mu_t = \beta`):

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) u_t, \qquad
        \text{out} = \frac{(1-\mu_t)\,u_t}{1-\prod_{i\le t}\mu_i}
                   + \frac{\mu_{t+1}\, m_t}{1-\prod_{i\le t+1}\mu_i}

    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.
    State: ``exp_avg``, ``mu_product``.
    """

    state = ("exp_avg", "mu_product")

    def __init__(self, decay: str = "betas.0", schedule: str = "momentum_decay"):
        self.decay = decay
        self.schedule = schedule
        self.hyperparameters = {decay: UNIT_OPEN, schedule: NONNEGATIVE}

    def init(self, p, hp):
        # kept in torch's scalar dtype (the default dtype's precision), like torch's NAdam
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return {"exp_avg": torch.zeros_like(p),
                "mu_product": torch.ones((), dtype=scalar, device=p.device)}

    def mu(self, beta, psi, t):
        return beta if psi is None else beta * (1.0 - 0.5 * 0.96 ** (t * psi))

    def prepare(self, s, hp, step):
        beta, psi = hp[self.decay], hp.get(self.schedule)
        mu, mu_next = self.mu(beta, psi, step), self.mu(beta, psi, step + 1)
        prod = s["mu_product"].mul_(mu).item()
        return {"gradient": (1.0 - mu) / (1.0 - prod),
                "average": mu_next / (1.0 - prod * mu_next)}

    def update(self, u, g, s, p, hp, c):
        m = s["exp_avg"]
        m.lerp_(u, 1 - hp[self.decay])
        return u * c["gradient"] + m * c["average"]


#: where ε enters the denominator of :class:`Adapt` (r = √ for L2 statistics, identity for L∞;
#: c = the bias correction 1 − β^t, or 1):
EPS_PLACEMENTS = {
    "after_root": "r(v / c) + ε",  # torch Adam, NAdam, RMSprop, Adagrad; Keras Adamax
    "inside_root": "r(v / c + ε)",  # Keras RMSprop, Adagrad; Adadelta; torch Adamax (ε in max)
    "before_bias_correction": "(r(v) + ε) / r(c)",  # Keras Adam
}


class Adapt(Transform):
    r"""Per-coordinate adaptation: divide by a statistic of past gradients.

    The statistic ``v`` of the gradient ``g`` is one of

    * ``"ema"``:  :math:`v_t = \beta v_{t-1} + (1-\beta) g_t^2` (RMSprop, Adam, Adadelta);
    * ``"sum"``:  :math:`v_t = v_{t-1} + g_t^2`, :math:`v_0` = ``initial_accumulator_value``
      (Adagrad);
    * ``"max"``:  :math:`v_t = \max(\beta v_{t-1}, |g_t|)` (the L∞ norm of Adamax);
    * ``"belief"``: :math:`v_t = \beta v_{t-1} + (1-\beta)(g_t - u_t)^2 + \epsilon`, the EMA of
      the squared deviation of the gradient from its prediction :math:`u_t` — the incoming
      direction, the first moment :math:`m_t` (AdaBelief: Zhuang et al., NeurIPS 2020, Alg. 2,
      ε inside the statistic as there). The statistic depends on ``u``, so the transform is not
      :attr:`~Transform.linear`: put the first moment before it un-corrected
      (:class:`BiasCorrection` after it);
    * ``"yogi"``: :math:`v_t = v_{t-1} - (1-\beta)\,\operatorname{sign}(v_{t-1} - g_t^2)\,g_t^2`,
      an additive change of at most :math:`(1-\beta) g_t^2` (Yogi: Zaheer et al., NeurIPS 2018).

    and the output is :math:`u / d` with :math:`d` given by ``eps`` (see :data:`EPS_PLACEMENTS`).
    Group flags: ``centered`` replaces :math:`v` by :math:`v - \bar g^2` (Graves 2013);
    ``amsgrad`` by its running maximum (Reddi et al., ICLR 2018), kept as ``max_{name}``.

    References: Duchi et al. 2011 (Adagrad); Tieleman & Hinton 2012 (RMSprop);
    Kingma & Ba 2015 (Adam, Adamax). State: ``name`` (torch's: ``exp_avg_sq``, ``square_avg``,
    ``sum``, ``exp_inf``, ``exp_avg_var``), ``grad_avg`` if centered, ``max_{name}`` with
    AMSGrad (``max_exp_avg_sq``).

    The bias correction :math:`c = 1 - \beta^t` counts t in the parameter's own steps, or with
    ``count`` in a group entry (Schedule-Free's ``k``, the group's step count, which a
    :meth:`~Transform.begin` hook advances before the step).
    """

    STATISTICS = ("ema", "sum", "max", "belief", "yogi")
    linear = True
    flags = ("centered", "amsgrad")
    #: the group key counting the bias correction's steps (None: the parameter's own count).
    count: str | None = None

    def __init__(self, statistic: str = "ema", decay: str | None = "betas.1",
                 bias_correction: bool = False, eps: str = "after_root",
                 name: str = "exp_avg_sq", initial: str | None = None,
                 count: str | None = None):
        if statistic not in self.STATISTICS:
            raise ValueError(f"statistic={statistic!r} is not one of {self.STATISTICS}")
        if eps not in EPS_PLACEMENTS:
            raise ValueError(f"eps={eps!r} is not one of {tuple(EPS_PLACEMENTS)}")
        if statistic != "sum" and decay is None:
            raise ValueError(f"statistic={statistic!r} needs a decay hyper-parameter")
        self.statistic, self.decay, self.bias_correction = statistic, decay, bias_correction
        self.eps, self.name, self.initial = eps, name, initial
        if count is not None:  # only then, so that the chains without one keep their repr
            self.count = count
        if statistic == "belief":  # the statistic depends on u (see the class docstring)
            self.linear = False
        self.hyperparameters = {"eps": NONNEGATIVE}
        if statistic != "sum":  # β < 1 for the maximum too, as torch's Adamax checks
            self.hyperparameters[decay] = UNIT_OPEN if bias_correction or statistic == "max" \
                else UNIT
        if initial is not None:
            self.hyperparameters[initial] = NONNEGATIVE

    @property
    def state(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.name, "grad_avg", self.maximum)

    @property
    def maximum(self) -> str:
        """The name of the AMSGrad buffer: ``max_exp_avg_sq`` for torch's ``exp_avg_sq``."""
        return f"max_{self.name}"

    def init(self, p, hp):
        init = hp.get(self.initial, 0.0) if self.initial else 0.0
        buffers = {self.name: torch.full_like(p, init)}
        if hp.on("centered"):
            buffers["grad_avg"] = torch.zeros_like(p)
        if "amsgrad" in self.flags and hp.on("amsgrad"):
            buffers[self.maximum] = torch.zeros_like(p)
        return buffers

    def prepare(self, s, hp, step):
        if not self.bias_correction:
            return {}
        if self.count is not None:
            step = hp[self.count]
        correction = 1 - hp[self.decay] ** step
        root = correction**0.5
        return {"correction": correction, "root": root, "eps_root": hp["eps"] * root}

    def update(self, u, g, s, p, hp, c):
        eps = hp["eps"]
        beta = hp[self.decay] if self.decay else None
        v = s[self.name]
        if self.statistic == "ema":
            v.mul_(beta).addcmul_(g, g, value=1 - beta)
        elif self.statistic == "sum":
            v.addcmul_(g, g)
        elif self.statistic == "belief":
            residual = g - u
            v.mul_(beta).addcmul_(residual, residual, value=1 - beta).add_(eps)
        elif self.statistic == "yogi":
            square = g * g
            v.addcmul_((v - square).sign_(), square, value=-(1 - beta))
        else:
            magnitude = g.abs().add_(eps) if self.eps == "inside_root" else g.abs()
            torch.maximum(v.mul_(beta), magnitude, out=v)
        if hp.on("centered"):
            mean = s["grad_avg"]
            mean.lerp_(g, 1 - beta)
            v = v.addcmul(mean, mean, value=-1)
        if "amsgrad" in self.flags and hp.on("amsgrad"):
            v = torch.maximum(s[self.maximum], v, out=s[self.maximum])
        if self.statistic == "max":  # no root; ε already inside the max for "inside_root"
            if not c:
                return u / (v if self.eps == "inside_root" else v + eps)
            # u/(v/c + ε) = c · u/(v + εc)
            d = v if self.eps == "inside_root" else v + eps * c["correction"]
            return u / d, c["correction"]
        if self.eps == "inside_root":
            return u / (v / c["correction"] if c else v).add(eps).sqrt_()
        if not c:
            return u / v.sqrt().add_(eps)
        # the bias correction √c moves to the numerator: u/(√v/√c + ε) = √c · u/(√v + ε√c)
        if self.eps == "before_bias_correction":
            return u / v.sqrt().add_(eps), c["root"]
        return u / v.sqrt().add_(c["eps_root"]), c["root"]


class ScaleByUpdateRms(Transform):
    r"""Adadelta's unit correction: multiply by the RMS of past updates.

    .. math::
        \Delta_t = u_t \sqrt{a_{t-1} + \epsilon}, \qquad
        a_t = \rho a_{t-1} + (1-\rho) \Delta_t^2

    With :class:`Adapt` (``inside_root``) before it, the update has the units of the parameter
    ("consistent units"). Reference: Zeiler, "ADADELTA", arXiv:1212.5701, Algorithm 1.
    State: ``acc_delta``.
    """

    state = ("acc_delta",)

    def __init__(self, decay: str = "rho"):
        self.decay = decay
        self.hyperparameters = {decay: UNIT, "eps": NONNEGATIVE}

    def init(self, p, hp):
        return {"acc_delta": torch.zeros_like(p)}

    def update(self, u, g, s, p, hp, c):
        rho = hp[self.decay]
        a = s["acc_delta"]
        delta = a.add(hp["eps"]).sqrt_().mul_(u)
        a.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        return delta


class RectifiedAdapt(Adapt):
    r"""RAdam's variance rectification of the bias-corrected L2 adaptation.

    With :math:`\rho_\infty = 2/(1-\beta) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta^t/(1-\beta^t)` the length of the approximated simple
    moving average, the adaptive step is used only where its variance is tractable:

    .. math::
        \text{out} = \begin{cases}
            r_t\, u \,\sqrt{1-\beta^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\
            u & \text{else (un-adapted momentum)}\end{cases}, \qquad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    :math:`v_t` (:class:`Adapt`'s ``"ema"`` statistic, ε before the bias correction as torch's
    RAdam) is updated at every step, the un-adapted ones included. ρ_t and r_t are computed in
    Python floats as ``torch.optim.RAdam`` computes them. There is no AMSGrad variant (an
    ``amsgrad`` flag in the group is not read).

    Options for AdaBelief's rectified form (the authors' package): ``statistic="belief"``
    (:class:`Adapt`), ``inclusive=True`` switches the adaptation on at ρ_t ≥ 5, and
    ``degenerate`` names a group flag (``degenerated_to_sgd``) that, when off, makes the
    un-adapted steps zero instead of u.
    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020. State: ``name`` (``exp_avg_sq``).
    """

    def __init__(self, decay: str = "betas.1", name: str = "exp_avg_sq",
                 statistic: str = "ema", inclusive: bool = False,
                 degenerate: str | None = None):
        super().__init__(statistic, decay, bias_correction=True, eps="before_bias_correction",
                         name=name)
        if inclusive or degenerate:  # only then, so that RAdam's chain keeps its repr
            self.inclusive, self.degenerate = inclusive, degenerate

    @property
    def flags(self) -> tuple[str, ...]:  # type: ignore[override]
        degenerate = getattr(self, "degenerate", None)
        return ("centered",) + ((degenerate,) if degenerate else ())

    def prepare(self, s, hp, step):
        c = super().prepare(s, hp, step)
        beta = hp[self.decay]
        rho_inf = 2 / (1 - beta) - 1
        rho = rho_inf - 2 * step * (beta**step) / c["correction"]
        c["rectified"] = rho >= 5.0 if getattr(self, "inclusive", False) else rho > 5.0
        # r_t only where defined (ρ_t > 5); 1.0 keeps the coefficients' keys fixed
        c["rect"] = ((rho - 4) * (rho - 2) * rho_inf
                     / ((rho_inf - 4) * (rho_inf - 2) * rho)) ** 0.5 if c["rectified"] else 1.0
        return c

    def update(self, u, g, s, p, hp, c):
        adapted, root = super().update(u, g, s, p, hp, c)  # the statistic moves at every step
        if not c["rectified"]:
            degenerate = getattr(self, "degenerate", None)
            return u if degenerate is None or hp.on(degenerate) else torch.zeros_like(u)
        return adapted, root * c["rect"]


class ResilientStep(Transform):
    r"""Rprop: a step size per coordinate, grown while the direction keeps its sign and shrunk
    when it flips; the update uses only the sign of the direction (the gradient, in Rprop).

    With :math:`s = \operatorname{sign}(u_t\, u_{t-1})` and η⁻, η⁺ = ``etas``:

    .. math::
        \Delta_t = \operatorname{clip}\bigl(\Delta_{t-1} \cdot
                   \{\eta^+ \text{ if } s > 0;\ \eta^- \text{ if } s < 0;\ 1 \text{ else}\},
                   \Delta_{\min}, \Delta_{\max}\bigr), \qquad
        u'_t = \begin{cases} 0 & s < 0 \\ u_t & \text{else}\end{cases}, \qquad
        \text{out} = \operatorname{sign}(u'_t)\,\Delta_t

    and :math:`u'_t` is kept as the previous direction, so a sign change is followed by one step
    without a comparison and no weight is taken back: the iRprop⁻ variant, which torch's
    ``Rprop`` implements. :math:`\Delta_0` is ``lr`` (``complex(lr, lr)`` for a complex
    parameter, so both halves step); ``lr`` is read only then. References: Riedmiller & Braun,
    "A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm",
    ICNN 1993; Igel & Hüsken, "Improving the Rprop Learning Algorithm", NC 2000.
    State: ``prev``, ``step_size``.
    """

    hyperparameters = {"lr": NONNEGATIVE, "etas.0": "(0, 1)", "etas.1": "(1, inf)",
                       "step_sizes.0": NONNEGATIVE, "step_sizes.1": NONNEGATIVE}
    state = ("prev", "step_size")

    def init(self, p, hp):
        lr = hp["lr"]
        return {"prev": torch.zeros_like(p),
                "step_size": torch.full_like(p, complex(lr, lr) if p.is_complex() else lr)}

    def validate(self, group):
        super().validate(group)
        low, high = hyper(group, "step_sizes.0"), hyper(group, "step_sizes.1")
        if low is not None and high is not None and low > high:
            raise ValueError(f"step_sizes={tuple(group['step_sizes'])!r} is out of range: "
                             f"allowed step_sizes[0] <= step_sizes[1] (a minimum and a maximum)")

    def update(self, u, g, s, p, hp, c):
        minus, plus = hp["etas.0"], hp["etas.1"]
        prev, size = s["prev"], s["step_size"]
        # as torch's Rprop: the sign becomes the factor in place (a NaN product stays NaN), and
        # the direction is zeroed where the factor is η⁻
        factor = u.mul(prev).sign_()
        factor = torch.where(factor > 0, plus, factor)
        factor = torch.where(factor < 0, minus, factor)
        factor = torch.where(factor == 0, 1.0, factor)
        size.mul_(factor).clamp_(hp["step_sizes.0"], hp["step_sizes.1"])
        kept = torch.where(factor == minus, 0.0, u)
        prev.copy_(kept)
        return kept.sign_().mul_(size)


def _scalar_state(value: float, device: torch.device) -> Tensor:
    """A 0-d tensor in torch's dtype for scalar state (the default dtype's precision)."""
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.as_tensor(value, dtype=dtype, device=device)


def _store(state: Tensor, value: float) -> None:
    """Write ``value`` into 0-d state as torch's ASGD does (``eta.copy_(torch.as_tensor(v))``):
    rounded to torch's scalar dtype first, also where the state holds more precision (a
    ``load_state_dict`` casts it to a float64 parameter's dtype)."""
    state.copy_(_scalar_state(value, state.device))


class DecayingLearningRate(Transform):
    r"""ASGD's step: gradient descent on the λ-regularized objective with a decaying step size.

    .. math::
        \text{out} = \eta_t\,(u + \lambda p), \qquad
        \eta_{t+1} = \frac{\text{lr}}{(1 + \lambda\,\text{lr}\,t)^{\alpha}}, \quad
        \eta_1 = \text{lr}

    so :math:`p \leftarrow p(1 - \lambda\eta_t) - \eta_t u`. η_t is 0-d state ``eta`` in
    torch's scalar dtype (float32 unless the default dtype is float64), read back as torch's
    ASGD reads it; the next value uses the learning rate and step of this step, as torch.
    Group keys: ``lr``, ``lambd`` (λ), ``alpha`` (α).
    Reference: Bottou, "Stochastic Gradient Descent Tricks", Neural Networks: Tricks of the
    Trade (2012), the schedule of torch's ``ASGD``. State: ``eta``.
    """

    hyperparameters = {"lr": NONNEGATIVE, "lambd": NONNEGATIVE, "alpha": NONNEGATIVE}
    state = ("eta",)

    def init(self, p, hp):
        return {"eta": _scalar_state(hp["lr"], p.device)}

    def prepare(self, s, hp, step):
        eta = s["eta"].item()
        lr, lambd = hp["lr"], hp["lambd"]
        _store(s["eta"], lr / ((1 + lambd * lr * step) ** hp["alpha"]))
        return {"eta": eta, "shrink": lambd * eta}

    def update(self, u, g, s, p, hp, c):
        out = u * c["eta"]
        return out.add_(p * c["shrink"]) if hp.on("lambd") else out


class AverageIterates(Transform):
    r"""Polyak–Juditsky averaging of the iterates, from step t₀ on (ASGD's ``ax``).

    With :math:`p_t = p - u` the parameter this step produces:

    .. math::
        \bar p_t = \bar p_{t-1} + \mu_t\,(p_t - \bar p_{t-1}), \qquad
        \mu_{t+1} = 1 / \max(1,\ t - t_0), \quad \mu_1 = 1

    (:math:`\mu_t = 1` copies :math:`p_t`). The average does not change the update: it is read
    from the state (``optimizer.state[p]["ax"]``) to evaluate the averaged model. Place it last
    in a chain: it averages :math:`p - u` for the ``u`` it is given. μ is 0-d state in torch's
    scalar dtype. Group key: ``t0``. Reference: Polyak & Juditsky, "Acceleration of Stochastic
    Approximation by Averaging", SIAM J. Control Optim. 30(4), 1992. State: ``mu``, ``ax``.
    """

    hyperparameters = {"t0": NONNEGATIVE}
    state = ("mu", "ax")

    def init(self, p, hp):
        return {"mu": _scalar_state(1.0, p.device), "ax": torch.zeros_like(p)}

    def prepare(self, s, hp, step):
        mu = s["mu"].item()
        _store(s["mu"], 1 / max(1, step - hp["t0"]))
        return {"average": mu != 1, "mu": mu}

    def update(self, u, g, s, p, hp, c):
        ax = s["ax"]
        if c["average"]:
            ax.add_((p - u).sub_(ax).mul_(c["mu"]))
        else:
            ax.copy_(p - u)
        return u


class DecoupledWeightDecay(Transform):
    r"""Decoupled weight decay as a step of the chain, where the algorithm decays:

    .. math:: \text{out} = u + \lambda p \quad \text{with the group's
              ``decoupled_weight_decay`` on, else } u

    placed before the transform that scales the direction by the step size, so that the
    decay is scaled by the algorithm's own step size (Prodigy's d·η) or taken at its own
    point (Schedule-Free's λy, added to the normalized gradient). The chain then
    :attr:`~Transform.owns_decoupled_weight_decay`: the base does not also apply
    p ← p(1 − ηλ); with ``decoupled_weight_decay`` off the base's coupled L2 decay applies as
    usual. Group key: ``weight_decay`` (λ). Reference: Loshchilov & Hutter, "Decoupled Weight
    Decay Regularization", ICLR 2019.
    """

    hyperparameters = {"weight_decay": NONNEGATIVE}
    owns_decoupled_weight_decay = True

    def update(self, u, g, s, p, hp, c):
        if hp.on("weight_decay") and hp.on("decoupled_weight_decay"):
            return u + p * hp["weight_decay"]
        return u


class BiasCorrection(Transform):
    r"""The bias correction of an average taken earlier in the chain:

    .. math:: \text{out} = u / (1 - \beta^t)

    for a first moment that a later transform needs un-corrected — AdaBelief's statistic
    measures the gradient's deviation from :math:`m_t`, not from :math:`m_t/(1-\beta_1^t)` —
    so the chain is ``AverageGradient(bias_correction=False)``, the transform that reads
    :math:`m_t`, then this. ``power=p`` divides by :math:`(1-\beta^t)^p` (``-0.5``: Adam's
    second-moment correction :math:`\sqrt{1-\beta_2^t}` as a factor of the step, as SOAP's
    step size has it); ``switch`` names a group flag (SOAP's ``correct_bias``) without which
    the transform does nothing. Reference: Kingma & Ba, "Adam", ICLR 2015, Algorithm 1.
    """

    linear = True

    def __init__(self, decay: str = "betas.0", power: float = 1.0, switch: str | None = None):
        self.decay = decay
        self.hyperparameters = {decay: UNIT_OPEN}
        if power != 1.0:  # only then, so that the chains without one keep their repr
            self.power = power
        if switch is not None:
            self.switch = switch
            self.flags = (switch,)

    def prepare(self, s, hp, step):
        switch = getattr(self, "switch", None)
        if switch is not None and not hp.on(switch):
            return {"factor": 1.0}
        correction, power = 1 - hp[self.decay] ** step, getattr(self, "power", 1.0)
        if power == 1.0:
            return {"factor": 1 / correction}
        return {"factor": math.sqrt(correction) if power == -0.5 else correction**-power}

    def update(self, u, g, s, p, hp, c):
        return u, c["factor"]


class FixedWeightDecay(Transform):
    r"""Decoupled weight decay added to the whole step, after the learning rate:

    .. math:: \text{out} = u + \lambda' p, \qquad
              \lambda' = \begin{cases} \lambda & \text{fixed\_decay: } p \leftarrow p(1-\lambda)
              \\ \eta\lambda & \text{else: } p \leftarrow p(1-\eta\lambda) \end{cases}

    with the group's ``decoupled_weight_decay`` on (else nothing: the base's coupled L2 decay
    applies). The "fixed" form does not shrink with the learning rate or its schedule; it is
    the ``fixed_decay`` option of AdaBelief's package (and pytorch_optimizer). Place it last,
    after :class:`LearningRate`; the chain then
    :attr:`~Transform.owns_decoupled_weight_decay`. Group keys: ``weight_decay`` (λ), ``lr``
    (η), ``fixed_decay``. With ``after_update=True`` the parameter decays after the step
    instead, :math:`p \leftarrow (p - u)(1 - \lambda')`, i.e. out = u(1 − λ') + λ'p, as SOAP's
    reference decays. Reference: Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization", ICLR 2019.
    """

    hyperparameters = {"weight_decay": NONNEGATIVE}
    flags = ("fixed_decay",)
    owns_decoupled_weight_decay = True

    def __init__(self, after_update: bool = False):
        if after_update:  # only then, so that the chains without one keep their repr
            self.after_update = True

    def update(self, u, g, s, p, hp, c):
        if not (hp.on("weight_decay") and hp.on("decoupled_weight_decay")):
            return u
        rate = hp["weight_decay"] if hp.on("fixed_decay") else hp["lr"] * hp["weight_decay"]
        if getattr(self, "after_update", False):  # (p − u)(1 − λ') = p − (u(1 − λ') + λ'p)
            return (u * (1 - rate)).add_(p * rate)
        return u + p * rate


class InterpolatedSign(Transform):
    r"""Lion's update: the sign of an interpolation between the momentum and the direction;
    the momentum then moves with another coefficient.

    .. math::
        \text{out} = \operatorname{sign}\bigl(\beta_1 m_{t-1} + (1-\beta_1)\,u_t\bigr),
        \qquad m_t = \beta_2 m_{t-1} + (1-\beta_2)\,u_t

    Every coordinate moves by exactly the learning rate (none where the argument is 0), so the
    step has the largest norm a step of that size can have: Lion wants a learning rate 3–10×
    smaller than AdamW's. Both interpolations are computed as β·m + (1−β)·u, a product each
    and a sum, as Keras' Lion computes them, so the argument of the sign rounds as there.
    Group keys: ``betas`` (β₁, β₂). Reference: Chen et al., "Symbolic Discovery of
    Optimization Algorithms", NeurIPS 2023, Program 1. State: ``exp_avg``.
    """

    state = ("exp_avg",)

    def __init__(self, decay: str = "betas.0", momentum: str = "betas.1"):
        self.decay, self.momentum = decay, momentum
        self.hyperparameters = {decay: UNIT, momentum: UNIT}

    def init(self, p, hp):
        return {"exp_avg": torch.zeros_like(p)}

    def update(self, u, g, s, p, hp, c):
        m = s["exp_avg"]
        beta1, beta2 = hp[self.decay], hp[self.momentum]
        out = (m * beta1).add_(u * (1 - beta1)).sign_()
        m.mul_(beta2).add_(u * (1 - beta2))
        return out


class DecorrelatedAdapt(Transform):
    r"""ADOPT's adaptation: divide by the second moment of the *previous* gradients, clip,
    and only then average (the first moment comes after this transform).

    .. math::
        \text{out}_t = \operatorname{clip}\Bigl(\frac{u_t}{\max(\sqrt{v_{t-1}},\ \epsilon)},\
                       \pm c_t\Bigr), \qquad
        v_t = \beta v_{t-1} + (1-\beta)\,g_t^2, \qquad c_t = t^{\,\text{clip\_exponent}}

    The first step only sets :math:`v_1 = g_1^2` and puts out zeros. As :math:`v_{t-1}` does
    not contain :math:`g_t`, the normalized gradient is not correlated with its own scale,
    which lets ADOPT converge for any β (Adam needs β₂ large enough for the problem); clipping
    at :math:`c_t` bounds the first steps, where :math:`v` rests on few gradients
    (``clip_exponent=None``: no clipping). Put it before an
    :class:`AverageGradient` without bias correction. Group keys: ``betas.1`` (β, or
    ``decay``), ``eps``, ``clip_exponent``. Reference: Taniguchi et al., "ADOPT: Modified Adam
    Can Converge with Any β₂ with the Optimal Rate", NeurIPS 2024. State: ``exp_avg_sq``.
    """

    state = ("exp_avg_sq",)

    def __init__(self, decay: str = "betas.1"):
        self.decay = decay
        self.hyperparameters = {decay: UNIT_OPEN, "eps": NONNEGATIVE,
                                "clip_exponent": NONNEGATIVE}

    def init(self, p, hp):
        return {"exp_avg_sq": torch.zeros_like(p)}

    def prepare(self, s, hp, step):
        exponent = hp.get("clip_exponent")
        # the keys stay fixed (the compiled kernel's arguments); "clip" is read only if clipped
        return {"first": step == 1, "clipped": exponent is not None,
                "clip": step**exponent if exponent is not None else 0.0}

    def update(self, u, g, s, p, hp, c):
        v = s["exp_avg_sq"]
        if c["first"]:
            v.addcmul_(g, g)
            return torch.zeros_like(u)
        out = u / v.sqrt().clamp_(min=hp["eps"])
        if c["clipped"]:
            out.clamp_(-c["clip"], c["clip"])
        beta = hp[self.decay]
        v.mul_(beta).addcmul_(g, g, value=1 - beta)
        return out


class MixSlowAverage(Transform):
    r"""AdEMAMix's slow average: a second, slowly decaying EMA of the gradient, added to the
    incoming direction (the bias-corrected fast average).

    .. math::
        s_t = \beta_{3,t}\, s_{t-1} + (1-\beta_{3,t})\, g_t, \qquad
        \text{out} = u_t + \alpha_t\, s_t

    The slow average is not bias-corrected: it starts at 0 and grows in over ~1/(1−β₃) steps.
    With T = ``t_alpha_beta3`` both warm up, as the paper's schedulers:
    :math:`\alpha_t = \min(t\alpha/T,\ \alpha)` and
    :math:`\beta_{3,t} = \min\bigl(\exp\bigl(\frac{\ln\beta_1 \ln\beta_3}
    {(1-t/T)\ln\beta_3 + (t/T)\ln\beta_1}\bigr),\ \beta_3\bigr)` (the time scale
    1/ln β moves linearly from β₁'s to β₃'s); without T, α and β₃ from the first step.
    Group keys: ``betas.0`` (β₁, for the schedule), ``betas.2`` (β₃), ``alpha``,
    ``t_alpha_beta3``. Reference: Pagliardini, Ablin, Grangier, "The AdEMAMix Optimizer:
    Better, Faster, Older", arXiv:2409.03137 (ICLR 2025). State: ``exp_avg_slow``.
    """

    state = ("exp_avg_slow",)
    hyperparameters = {"betas.2": UNIT, "alpha": NONNEGATIVE, "t_alpha_beta3": "(0, inf)"}

    def init(self, p, hp):
        return {"exp_avg_slow": torch.zeros_like(p)}

    def validate(self, group):
        check_tuple(group, "betas", 3, "three decay rates (β₁ fast average, β₂ second "
                                       "moment, β₃ slow average)")
        super().validate(group)
        if group.get("t_alpha_beta3") is None:
            return
        for key in ("betas.0", "betas.2"):  # the schedule takes their logarithms
            if hyper(group, key) is not None and not hyper(group, key) > 0:
                raise ValueError(f"{display(key)}={hyper(group, key)!r} is out of range with "
                                 f"t_alpha_beta3={group['t_alpha_beta3']!r}: the warmup of β₃ "
                                 f"needs betas[0] and betas[2] in (0, 1]")

    def prepare(self, s, hp, step):
        alpha, beta3, horizon = hp["alpha"], hp["betas.2"], hp.get("t_alpha_beta3")
        if horizon is not None:  # pytorch_optimizer's schedule_alpha / schedule_beta3
            alpha = min(step * alpha / horizon, alpha)
            log1, log3 = math.log(hp["betas.0"]), math.log(beta3)
            beta3 = min(math.exp(log1 * log3 / ((1.0 - step / horizon) * log3
                                                 + (step / horizon) * log1)), beta3)
        return {"alpha": alpha, "weight": 1.0 - beta3}

    def update(self, u, g, s, p, hp, c):
        slow = s["exp_avg_slow"]
        slow.lerp_(g, c["weight"])
        return u + slow * c["alpha"]


class Delayed(Chain):
    r"""A chain that starts after ``steps`` steps: at steps t ≤ k = ``steps`` the direction is
    0 and each transform only takes the gradient into its state (:meth:`Transform.warmup`);
    from t = k + 1 on the chain runs as usual, counting its steps from 1 (t − k), so its bias
    corrections and schedules start there. Decoupled weight decay in the chain
    (:class:`FixedWeightDecay`) starts then too.

    .. math:: \text{out}_t = 0 \ (t \le k), \qquad
              \text{out}_t = \text{chain}_{t-k}(u_t) \ (t > k)

    SOAP is this with k = 1: its first gradient only initializes the preconditioner, as the
    authors' implementation does (Vyas et al., "SOAP", ICLR 2025, Algorithm 3). Give it as the
    optimizer's whole chain (``chain()`` flattens a nested chain).
    """

    def __init__(self, transforms: Iterable[Transform], steps: int = 1):
        super().__init__(transforms)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps={steps!r} must be an integer >= 0")
        self.steps = steps

    def prepare(self, s, hp, step) -> list[dict[str, Any]]:  # type: ignore[override]
        if step <= self.steps:
            return [{"warming": True}, *({} for _ in self.transforms)]
        return [{"warming": False}, *super().prepare(s, hp, step - self.steps)]

    def update(self, u, g, s, p, hp, c):
        if c[0]["warming"]:
            for t in self.transforms:
                t.warmup(g, s, p, hp)
            return torch.zeros_like(u), None
        return super().update(u, g, s, p, hp, c[1:])

    def __repr__(self) -> str:
        return f"delayed({self.steps}, " + super().__repr__() + ")"


class NormalizeRms(Transform):
    r"""Divide each tensor by its root mean square:

    .. math:: \text{out} = u / (\sqrt{\operatorname{mean}(u^2)} + \epsilon)

    with the group flag ``switch`` on (SOAP's ``normalize_gradient``), else u unchanged. The
    mean is over the whole tensor (:func:`per_tensor`), so the transform has ``scope =
    "tensor"``. Group keys: ``eps``, the switch. Reference: the ``normalize_gradient`` option of
    SOAP's implementations (pytorch_optimizer; github.com/nikhilvyas/SOAP).
    """

    scope = "tensor"
    hyperparameters = {"eps": NONNEGATIVE}

    def __init__(self, switch: str = "normalize_gradient"):
        self.switch = switch
        self.flags = (switch,)

    def update(self, u, g, s, p, hp, c):
        if not hp.on(self.switch):
            return u
        return u / per_tensor(u * u, "mean", like=u).sqrt_().add_(hp["eps"])
class TrustRatio(Transform):
    r"""The layer-wise trust ratio of LARS and LAMB: each tensor's direction rescaled so that
    its norm is a fixed fraction of the parameter's.

    .. math::
        \text{out} = r\,(u + \lambda p), \qquad
        r = \begin{cases}
            \dfrac{c\,\lVert p\rVert}{\lVert u\rVert + \lambda\lVert p\rVert}
                & \lVert p\rVert > 0 \text{ and } \lVert u\rVert + \lambda\lVert p\rVert > 0 \\
            1 & \text{else}\end{cases}

    with the L2 norms of the whole tensor (:func:`per_tensor`), c the group's
    ``trust_coefficient`` (``coefficient``; 1 without one) and λ the group's ``weight_decay``
    where this transform owns the coupled decay (``weight_decay=True``, with the group's
    ``decoupled_weight_decay`` off; else λ = 0). The denominator is ‖u‖ + λ‖p‖, the bound of
    ‖u + λp‖ by the triangle inequality, as LARS defines it (not ‖u + λp‖ itself).

    With c = 1 and λ = 0 (LAMB) every tensor's step has the norm η‖p‖ whatever the scale of u:
    :math:`r u = \lVert p\rVert\, u / \lVert u\rVert`. A parameter or direction of norm 0
    keeps r = 1 (a tensor initialized at zero still moves). Tensors with fewer than
    ``min_ndim`` dimensions pass through unchanged, neither scaled nor decayed
    (pytorch_optimizer's LARS adapts only tensors with ``ndim > 1``: ``min_ndim=2``; biases
    and normalization scales take a plain step). With ``weight_decay=True`` the chain
    :attr:`~Transform.owns_coupled_weight_decay`: the base does not also add λp to the
    gradient. References: You, Gitman, Ginsburg, "Large Batch Training of Convolutional
    Networks", arXiv:1708.03888 (2017), eq. (6) (LARS); You et al., "Large Batch Optimization
    for Deep Learning: Training BERT in 76 minutes", ICLR 2020, Algorithm 2 (LAMB).
    """

    scope = "tensor"

    def __init__(self, coefficient: str | None = None, weight_decay: bool = False,
                 min_ndim: int = 0):
        self.coefficient, self.weight_decay, self.min_ndim = coefficient, weight_decay, min_ndim
        self.hyperparameters = {coefficient: NONNEGATIVE} if coefficient else {}
        if weight_decay:
            self.owns_coupled_weight_decay = True
            self.hyperparameters["weight_decay"] = NONNEGATIVE

    def update(self, u, g, s, p, hp, c):
        if p.dim() - 1 < self.min_ndim:  # p is a stack: its first dimension counts tensors
            return u
        norm = per_tensor(p, "norm")
        denominator = per_tensor(u, "norm")
        if self.weight_decay and hp.on("weight_decay") and not hp.on("decoupled_weight_decay"):
            decay = hp["weight_decay"]
            denominator = denominator + norm * decay
            u = u + p * decay
        numerator = norm * hp[self.coefficient] if self.coefficient else norm
        ratio = torch.where((norm > 0) & (denominator > 0), numerator / denominator, 1.0)
        return u * ratio



#: where ε enters the normalization of :class:`Orthogonalize`: ``X / max(‖X‖_F, ε)`` (torch's
#: Muon) or ``X / (‖X‖_F + ε)`` (Keras' Muon).
NORMALIZATIONS = ("clamp", "add")


def newton_schulz(x: Tensor, coefficients: Sequence, steps, eps, dtype: torch.dtype | None,
                  normalization: str = "clamp", batched: bool = False) -> Tensor:
    r"""The quintic Newton–Schulz iteration on a stack of matrices (B, m, n).

    .. math::
        X_0 = \frac{G}{\max(\lVert G\rVert_F, \epsilon)}, \qquad
        A_k = X_k X_k^\top, \qquad X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

    with each matrix transposed first (and back after) where m > n, so that the Gram matrix
    is the smaller one. It drives every singular value of G towards 1 (to roughly
    Uniform(0.5, 1.5) with the default coefficients): about :math:`UV^\top` for the SVD
    :math:`G = USV^\top`. With ``dtype`` the iteration runs in that dtype (torch's Muon casts
    to bfloat16) and the result is in it.

    ``batched=False`` runs the iteration on each matrix of the stack with the 2-D operators
    torch's Muon uses (``@``, ``Tensor.norm``, ``torch.addmm``; in bfloat16 on a CPU, its
    arithmetic in a faster form, :func:`optimlab.optim.matmul.addmm`), so that the result is
    torch's bit for bit; ``batched=True`` runs it once on the whole stack (``torch.baddbmm``), fewer
    and larger products, whose bfloat16 results may differ from the 2-D ones by a rounding of
    the accumulation (measured on CPU: about one element in 10⁴ by one bfloat16 ulp).
    ``x`` is not modified.
    """
    numbers = (*(float(k) for k in coefficients), int(steps), float(eps), normalization)
    # one copy in the iteration's dtype for the whole stack (a conversion is elementwise: each
    # matrix gets the bits of its own), which the iteration then changes in place
    x = x.to(x.dtype if dtype is None else dtype, copy=True)
    if batched or x.dim() == 2:
        return _iterate(x, *numbers)
    if len(x) == 1:  # a stack of one large matrix: no copy into a new stack
        return _iterate(x[0], *numbers).unsqueeze(0)
    return torch.stack([_iterate(m, *numbers) for m in x])


def _iterate(x: Tensor, a: float, b: float, c: float, steps: int, eps: float,
             normalization: str) -> Tensor:
    """:func:`newton_schulz` on a matrix, or batched on a stack, which it normalizes in place."""
    addmm = matmul.addmm if x.dim() == 2 else torch.baddbmm
    wide = x.size(-2) > x.size(-1)
    if wide:
        x = x.mT
    norm = x.norm() if x.dim() == 2 else torch.linalg.vector_norm(x, dim=(-2, -1),
                                                                    keepdim=True)
    x.div_(norm.clamp(min=eps) if normalization == "clamp" else norm.add(eps))
    for _ in range(steps):
        gram = x @ x.mT
        x = addmm(x, addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if wide else x


@torch.library.custom_op("optimlab::newton_schulz", mutates_args=())
def _newton_schulz_op(x: Tensor, numbers: Tensor, dtype: torch.dtype | None,
                      normalization: str, batched: bool) -> Tensor:
    """:func:`newton_schulz` as one opaque operator of a compiled graph (numbers: a, b, c,
    steps, ε), so that ``torch.compile`` runs it as eager torch does: the same matrix
    products in the same dtype, bit for bit."""
    a, b, c, steps, eps = numbers.tolist()
    return newton_schulz(x, (a, b, c), int(steps), eps, dtype, normalization,
                         batched).contiguous()


@_newton_schulz_op.register_fake
def _(x, numbers, dtype, normalization, batched):
    return torch.empty_like(x, dtype=x.dtype if dtype is None else dtype)


class Orthogonalize(Transform):
    r"""Muon's update direction: the incoming matrix orthogonalized by a Newton–Schulz
    iteration, :math:`\text{out} = \mathrm{NS}^{(a,b,c)}_k(u;\ \epsilon)` (see
    :func:`newton_schulz`), batched over a stack of same-shaped matrices
    (``scope = "tensor"``).

    Group keys: ``ns_coefficients`` (a, b, c), ``ns_steps`` (k, an integer in [0, 100), as
    torch's Muon allows), ``eps``. ``dtype``: the precision of the iteration (torch's Muon:
    ``torch.bfloat16`` whatever the parameter's dtype, so a float64 Muon is not more precise
    than a float32 one; ``None``: the direction's own dtype, as Keras' Muon); the output is
    returned in the direction's dtype (exact: each bfloat16 value is a float64 one).
    ``normalization``: one of :data:`NORMALIZATIONS`. ``batched``: one iteration over the
    whole stack instead of one per matrix (faster for many small matrices; not bit-equal to
    torch's, see :func:`newton_schulz`). Only 2-D parameters: the stack is (B, m, n).
    Reference: Jordan et al., "Muon: An optimizer for hidden layers in neural
    networks" (2024, kellerjordan.github.io/posts/muon); torch.optim.Muon's
    ``_zeropower_via_newtonschulz``.
    """

    scope = "tensor"
    fuses = False
    hyperparameters = {"eps": NONNEGATIVE, "ns_steps": "[0, 100)"}

    def __init__(self, dtype: torch.dtype | None = torch.bfloat16,
                 normalization: str = "clamp", batched: bool = False):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={normalization!r} is not one of {NORMALIZATIONS}")
        self.dtype, self.normalization = dtype, normalization
        if batched:  # only then, so that the chains without it keep their repr
            self.batched = batched

    def validate(self, group):
        super().validate(group)
        steps = group.get("ns_steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise ValueError(f"ns_steps={steps!r} must be an integer in [0, 100)")
        check_tuple(group, "ns_coefficients", 3,
                    "three finite numbers (a, b, c) of the Newton–Schulz polynomial",
                    lambda k: isinstance(k, int | float) and not isinstance(k, bool)
                    and math.isfinite(k))

    def update(self, u, g, s, p, hp, c):
        if u.dim() != 3:
            raise ValueError(f"Orthogonalize needs 2-D parameters (a stack of matrices), got "
                             f"a stack of shape {tuple(u.shape)}")
        numbers = [hp[f"ns_coefficients.{i}"] for i in range(3)] + [hp["ns_steps"], hp["eps"]]
        batched = getattr(self, "batched", False)
        if any(isinstance(n, Tensor) for n in numbers):  # under torch.compile: 0-d tensors
            stacked = torch.stack([torch.as_tensor(n, dtype=torch.float64) for n in numbers])
            out = _newton_schulz_op(u, stacked, self.dtype, self.normalization, batched)
        else:
            out = newton_schulz(u, numbers[:3], numbers[3], numbers[4], self.dtype,
                                self.normalization, batched)
        return out.to(u.dtype)


#: Muon's learning-rate adjustments by the matrix's shape (A, B) (torch's ``adjust_lr_fn``).
ADJUSTMENTS = ("original", "match_rms_adamw")


class AdjustedLearningRate(LearningRate):
    r"""The learning rate scaled by the shape (A, B) of each matrix, so that orthogonalized
    updates of rectangular matrices have a consistent RMS (torch's Muon's ``adjust_lr_fn``):

    .. math:: \eta' = \eta \cdot \begin{cases}
                  \sqrt{\max(1, A/B)} & \text{"original" (Keller Jordan's; None)} \\
                  0.2\,\sqrt{\max(A, B)} & \text{"match\_rms\_adamw" (Moonshot's)}
              \end{cases}

    "match_rms_adamw" gives the update the RMS of AdamW's (≈ 0.2), so that Muon reuses the
    learning rate and weight decay tuned for AdamW. The factor is a Python float multiplied
    into η as torch does (``lr * ratio``). Group key: ``adjust_lr_fn`` (None, "original" or
    "match_rms_adamw"). References: Jordan et al. 2024; Liu et al., "Muon is Scalable for LLM
    Training", arXiv:2502.16982.

    ``float32_root=True`` rounds :math:`\sqrt{\max(A, B)}` to float32 first, as Keras' Muon
    computes it (``ops.sqrt`` of an integer).
    """

    scope = "tensor"

    def __init__(self, float32_root: bool = False):
        if float32_root:  # only then, so that the chains without it keep their repr
            self.float32_root = float32_root

    def validate(self, group):
        super().validate(group)
        fn = group.get("adjust_lr_fn")
        if fn is not None and fn not in ADJUSTMENTS:
            raise ValueError(f"adjust_lr_fn={fn!r} is not supported: allowed None, "
                             f"{', '.join(map(repr, ADJUSTMENTS))}")

    def update(self, u, g, s, p, hp, c):
        rows, columns = int(p.shape[-2]), int(p.shape[-1])
        if hp.choice("adjust_lr_fn") == "match_rms_adamw":
            root = math.sqrt(max(rows, columns))
            if getattr(self, "float32_root", False):
                mantissa, exponent = math.frexp(root)  # to float32's 24 bits, to nearest even
                root = math.ldexp(round(mantissa * 2**24) / 2**24, exponent)
            ratio = 0.2 * root
        else:
            ratio = math.sqrt(max(1, rows / columns))
        return u, c["lr"] * ratio


class Select(Transform):
    """One of several chains per param group, chosen by a string entry of the group: ``Muon``
    runs ``{"muon": Muon's chain, "adamw": AdamW's}`` by each group's ``algorithm``, so one
    optimizer (one ``step()``, one ``state_dict()``) updates the hidden matrices with one
    algorithm and the rest with another.

    A parameter is only ever updated by its group's branch, so the branches may keep buffers of
    the same name. ``scope`` is ``"tensor"`` if any branch's is (the elementwise branches then
    get stacks too, which their math does not notice). The branches must agree on
    :attr:`~Transform.owns_decoupled_weight_decay`.
    """

    def __init__(self, key: str, branches: Mapping[str, Transform | Sequence[Transform]],
                 default: str):
        self.key, self.default = key, default
        self.branches = {name: t if isinstance(t, Chain) else chain(t)
                         for name, t in branches.items()}
        if default not in self.branches:
            raise ValueError(f"default={default!r} is not one of the branches "
                             f"{tuple(self.branches)}")
        owns = {b.owns_decoupled_weight_decay for b in self.branches.values()}
        if len(owns) > 1:
            raise ValueError("the branches of Select must agree on whether the chain applies "
                             "decoupled weight decay itself (owns_decoupled_weight_decay)")

    def branch(self, hp: Hyper) -> Chain:
        return self.branches[hp.choice(self.key, self.default)]

    def _group_branch(self, group: Mapping) -> Chain:
        name = group.get(self.key)
        return self.branches[self.default if name is None else name]

    @property
    def state(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(n for b in self.branches.values() for n in b.state))

    @property
    def hyperparameters(self) -> dict[str, str]:  # type: ignore[override]
        return {k: v for b in self.branches.values() for k, v in b.hyperparameters.items()}

    @property
    def flags(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(f for b in self.branches.values() for f in b.flags))

    @property
    def integers(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(dict.fromkeys(k for b in self.branches.values() for k in b.integers))

    @property
    def scope(self) -> str:  # type: ignore[override]
        return "tensor" if any(b.scope == "tensor" for b in self.branches.values()) \
            else "element"

    @property
    def reduces(self) -> bool:  # type: ignore[override]
        return any(b.reduces for b in self.branches.values())

    @property
    def modes(self) -> bool:  # type: ignore[override]
        return any(b.modes for b in self.branches.values())

    def fused(self, group):
        return self._group_branch(group).fused(group)

    @property
    def owns_decoupled_weight_decay(self) -> bool:  # type: ignore[override]
        return next(iter(self.branches.values())).owns_decoupled_weight_decay

    def validate(self, group):
        name = group.get(self.key)
        if name is not None and name not in self.branches:
            raise ValueError(f"{self.key}={name!r} is not allowed: choose one of "
                             f"{', '.join(map(repr, self.branches))}")
        self._group_branch(group).validate(group)

    def begin(self, group):
        self._group_branch(group).begin(group)

    def combine(self, group, totals):
        self._group_branch(group).combine(group, totals)

    def reduce(self, g, s, p, hp):
        return self.branch(hp).reduce(g, s, p, hp)

    def to_eval(self, p, s, hp):
        self.branch(hp).to_eval(p, s, hp)

    def to_train(self, p, s, hp):
        self.branch(hp).to_train(p, s, hp)

    def init(self, p, hp):
        return self.branch(hp).init(p, hp)

    def prepare(self, s, hp, step):
        # one flat dict of numbers and bools (what a compiled kernel takes), "i.key" per
        # transform i of the branch
        return {f"{i}.{k}": v for i, d in enumerate(self.branch(hp).prepare(s, hp, step))
                for k, v in d.items()}

    def update(self, u, g, s, p, hp, c):
        branch = self.branch(hp)
        coefficients: list[dict[str, Any]] = [{} for _ in branch.transforms]
        for key, value in c.items():
            i, _, name = key.partition(".")
            coefficients[int(i)][name] = value
        u, scale = branch.update(u, g, s, p, hp, coefficients)
        return u if scale is None else (u, scale)


#: where ε₁ enters :class:`FactoredAdapt`'s estimate (V the second-moment estimate, R and C its
#: row and column statistics, :math:`\bar R` the mean of R over the rows):
FACTORED_EPS = {
    "clamp": "V = R·C / max(R̄, ε₁); out = u / max(√V, ε₁)",  # torch's Adafactor
    "add": "R, C (or V) of g² + ε₁; V = R·C / R̄; out = u / √V",  # the paper's, Keras' Adafactor
}


class FactoredAdapt(Transform):
    r"""Adafactor's adaptation: divide by a second-moment estimate that, for a tensor of two or
    more dimensions, keeps only a row and a column statistic over its last two dimensions.

    With :math:`\hat\beta_t = 1 - t^{\tau}` (τ = ``beta2_decay`` ≤ 0, so the average's memory
    grows with t), for a tensor of shape (…, n, m):

    .. math::
        R_t = \hat\beta_t R_{t-1} + (1-\hat\beta_t)\,\operatorname{mean}_{j}(G_t^2),\qquad
        C_t = \hat\beta_t C_{t-1} + (1-\hat\beta_t)\,\operatorname{mean}_{i}(G_t^2),\qquad
        \hat V_t = \frac{R_t C_t}{\operatorname{mean}_i(R_t)}

    (R of shape (…, n, 1), C of shape (…, 1, m): n + m numbers per matrix instead of n·m), and
    for a tensor of at most one dimension the full :math:`\hat V_t = \hat\beta_t \hat V_{t-1} +
    (1-\hat\beta_t) G_t^2`. The output is :math:`u / \sqrt{\hat V_t}`, with ε₁ (``eps[0]``;
    None: the machine epsilon of the computing dtype) placed as ``eps`` says
    (:data:`FACTORED_EPS`): ``"clamp"``, torch's, clamps the denominator
    :math:`\operatorname{mean}_i(R_t)` at ε₁ and :math:`\sqrt{\hat V_t}` at ε₁ (the statistics
    themselves stay those of G²); ``"add"``, the paper's and Keras', averages
    :math:`G^2 + \epsilon_1` and clamps nothing (``round_to``: a dtype its means are computed
    in, :data:`KERAS_MINMAX` for Keras'). The statistics read the gradient ``g``; the
    output scales the incoming direction, so the transform is linear in it.

    Needs whole tensors (``scope = "tensor"``): the engines give it stacks (B, …, n, m) of one
    shape; the row and column means are over the last two dimensions of each tensor of the
    stack. Group keys: ``beta2_decay`` (τ), ``eps`` (ε₁, ε₂; this reads ε₁). State (torch's
    Adafactor's names and shapes): ``row_var`` (…, n, 1) and ``col_var`` (…, 1, m) for ≥2-D
    tensors, ``variance`` shaped like the tensor otherwise. Reference: Shazeer & Stern,
    "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018, Algorithms 4
    and 5 (the sums written as means, as torch and Keras).
    """

    scope = "tensor"
    linear = True
    state = ("row_var", "col_var", "variance")

    def __init__(self, decay: str = "beta2_decay", eps: str = "clamp",
                 round_to: torch.dtype | None = None):
        if eps not in FACTORED_EPS:
            raise ValueError(f"eps={eps!r} is not one of {tuple(FACTORED_EPS)}")
        self.decay, self.eps = decay, eps
        self.hyperparameters = {decay: "(-inf, 0]", "eps.0": NONNEGATIVE}
        if round_to is not None:  # only then, so that torch's chain keeps its repr
            self.round_to = round_to

    def validate(self, group):
        check_tuple(group, "eps", 2, "a pair (eps1, eps2), eps1 >= 0 or None (the dtype's "
                                     "machine epsilon), eps2 >= 0")
        super().validate(group)

    def init(self, p, hp):
        if p.dim() >= 2:
            return {"row_var": p.new_zeros((*p.shape[:-1], 1)),
                    "col_var": p.new_zeros((*p.shape[:-2], 1, p.shape[-1]))}
        return {"variance": torch.zeros_like(p)}

    def prepare(self, s, hp, step):
        eps = hp.get("eps.0")
        if eps is None:  # torch: the machine epsilon of the dtype the statistics are kept in
            buffer = next(s[key] for key in self.state if key in s)
            eps = torch.finfo(buffer.dtype).eps
        return {"weight": step ** hp[self.decay], "eps": eps, "eps_square": eps * eps}

    def update(self, u, g, s, p, hp, c):
        weight, add = c["weight"], self.eps == "add"
        if u.dim() > 2:  # a stack of ≥2-D tensors: factored over the last two dimensions
            rows, columns = s["row_var"], s["col_var"]
            if add:  # Keras: the means of g² + ε₁
                # each mean before the call that takes it: a mean computed eagerly (round_to)
                # is a graph break under torch.compile, and a bound method on the stack across
                # one could not be traced
                dtype = getattr(self, "round_to", None)
                square = (g * g).add_(c["eps"])
                row_mean, column_mean = _mean(square, -1, dtype), _mean(square, -2, dtype)
                rows.lerp_(row_mean, weight)
                columns.lerp_(column_mean, weight)
                mean = _mean(rows, -2, dtype)
                return u / (rows / mean * columns).sqrt_()
            # torch: ‖g‖²/m along each row (no n·m intermediate of g²), and along each column
            rows.lerp_(torch.linalg.vector_norm(g, dim=-1, keepdim=True).square_()
                       .div_(g.shape[-1]), weight)
            columns.lerp_(torch.linalg.vector_norm(g, dim=-2, keepdim=True).square_()
                          .div_(g.shape[-2]), weight)
            estimate = (rows * columns).div_(rows.mean(dim=-2, keepdim=True)
                                             .clamp_(min=c["eps"]))
        else:
            variance = s["variance"]
            if add:
                variance.lerp_((g * g).add_(c["eps"]), weight)
                return u / variance.sqrt()
            variance.lerp_(g * g, weight)
            estimate = variance.clone()
        # ε₁ squared under the root: the denominator is at least ε₁
        return u * estimate.clamp_(min=c["eps_square"]).rsqrt_()


def outside_graphs(function: Callable) -> Callable:
    """``function`` run outside any ``torch.compile`` graph (where Dynamo meets it, the graph
    breaks), at no cost outside one. ``torch.compiler.disable`` imports torch._dynamo at once:
    about 2 s of every ``import optimlab``, also where no optimizer is built (the command line,
    the launcher of ``optimlab train --nproc-per-node``); torch.optim's own lazy form,
    ``torch._disable_dynamo``, imports it at the first call, but costs ~25 µs every call (it
    swaps Dynamo's frame callback), hundreds of times a step in SOAP. This calls the function
    itself unless Dynamo is tracing, where ``torch.compiler.is_compiling()`` is True."""
    disabled = torch._disable_dynamo(function)

    @functools.wraps(function)
    def call(*args, **kwargs):
        if torch.compiler.is_compiling():
            return disabled(*args, **kwargs)
        return function(*args, **kwargs)
    return call


@outside_graphs
def _eagerly(function, *args):
    """``function(*args)`` outside any ``torch.compile`` graph: a fused kernel computes a
    float32 mean in another order than eager torch, so the float32 roundings that reproduce
    Keras run eagerly in every engine (only where they change the dtype: float64 operands)."""
    return function(*args)


def _round_through(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.to(dtype).to(x.dtype)


def _rounded(x, dtype: torch.dtype | None):
    """``x`` (a number or a tensor) rounded through ``dtype`` (None: as it is)."""
    if dtype is None:
        return x
    if isinstance(x, Tensor):
        return x if x.dtype == dtype else _eagerly(_round_through, x, dtype)
    return torch.tensor(x, dtype=dtype).item()


#: the ``round_to`` of :class:`FactoredAdapt`, :class:`ClipByRms` and :class:`RelativeStepSize`
#: that reproduces Keras 3 on the torch backend, whose ``ops.mean``, ``ops.maximum`` and
#: ``ops.minimum`` compute float64 operands in float32 (keras.src.backend.common.dtypes'
#: ``result_type`` of a torch dtype and float32 is float32); a no-op for float32 parameters.
KERAS_MINMAX = torch.float32


def _mean(x: Tensor, dim: int | tuple[int, ...], dtype: torch.dtype | None) -> Tensor:
    """``x.mean(dim, keepdim=True)``, computed in ``dtype`` if given, as Keras' ``ops.mean``."""
    if dtype is None or x.dtype == dtype:
        return x.mean(dim=dim, keepdim=True)
    return _eagerly(_mean_in, x, dim, dtype)


def _mean_in(x: Tensor, dim: int | tuple[int, ...], dtype: torch.dtype) -> Tensor:
    return x.to(dtype).mean(dim=dim, keepdim=True).to(x.dtype)


def _rms(x: Tensor, dtype: torch.dtype | None) -> Tensor:
    """RMS of each tensor of the stack: ‖x‖/√n (torch's Adafactor), or with ``dtype`` Keras'
    √mean(x²), the mean computed in ``dtype``."""
    if dtype is None:
        return per_tensor(x, "rms")
    flat = x.reshape(x.shape[0], -1).square()
    mean = _mean(flat, 1, dtype)
    return mean.sqrt_().view(-1, *([1] * (x.dim() - 1)))


class ClipByRms(Transform):
    r"""Adafactor's update clipping: scale each tensor's direction down to an RMS of at most d.

    .. math:: \text{out} = \frac{u}{\max\bigl(1,\ \operatorname{RMS}(u)/d\bigr)},\qquad
              \operatorname{RMS}(u) = \lVert u\rVert_2/\sqrt{n}

    per tensor (:func:`per_tensor`, ``"rms"``), a bound on the step that does not depend on
    the gradient's scale (unlike ``clipnorm``, which clips the gradient before the chain).
    ``round_to``: a dtype the maximum is rounded through (:data:`KERAS_MINMAX` for Keras').
    Group key: ``d`` (the threshold, ≥ 1 as torch checks; Keras' ``clip_threshold``).
    Reference: Shazeer & Stern, ICML 2018, §6 (update clipping).
    """

    scope = "tensor"

    def __init__(self, threshold: str = "d", round_to: torch.dtype | None = None):
        self.threshold = threshold
        self.hyperparameters = {threshold: "[1, inf)"}
        if round_to is not None:  # only then, so that torch's chain keeps its repr
            self.round_to = round_to

    def update(self, u, g, s, p, hp, c):
        dtype = getattr(self, "round_to", None)
        rms = _rms(u, dtype)
        denominator = _rounded((rms / hp[self.threshold]).clamp_(min=1.0), dtype)
        return u, 1 / denominator


class RelativeStepSize(Transform):
    r"""Adafactor's step size, relative to the scale of the parameter:

    .. math:: \text{out} = \alpha_t\, u,\qquad
              \alpha_t = \max\bigl(\epsilon_2,\ \operatorname{RMS}(p)\bigr)\,\rho_t,\qquad
              \rho_t = \min\bigl(\eta,\ 1/\sqrt t\bigr)

    per tensor, RMS(p) = ‖p‖₂/√n of the parameter as the chain gets it (with decoupled weight
    decay left to the base, after the decay, as Keras; before it with
    :class:`FixedWeightDecay` last in the chain, as torch). The paper's relative step size
    has 0.01 for η; torch and Keras use the learning rate η. ``round_to``: a dtype ρ, the
    maximum and their product are rounded through (:data:`KERAS_MINMAX` for Keras').
    Group keys: ``lr`` (η), ``eps`` (this reads ε₂, ``eps[1]``). Reference: Shazeer & Stern,
    ICML 2018, §7 and Algorithm 4.
    """

    scope = "tensor"
    linear = True
    hyperparameters = {"lr": NONNEGATIVE, "eps.1": NONNEGATIVE}

    def __init__(self, round_to: torch.dtype | None = None):
        if round_to is not None:  # only then, so that torch's chain keeps its repr
            self.round_to = round_to

    def prepare(self, s, hp, step):
        return {"rho": _rounded(min(hp["lr"], 1 / step**0.5), getattr(self, "round_to", None))}

    def update(self, u, g, s, p, hp, c):
        dtype = getattr(self, "round_to", None)
        rms = _rms(p, dtype)
        scale = _rounded(rms.clamp_(min=hp["eps.1"]), dtype)
        step = _rounded(scale * c["rho"], dtype)
        return u, step
