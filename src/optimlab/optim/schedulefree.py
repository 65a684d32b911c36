"""Schedule-Free optimization: no learning-rate schedule, a weighted average of the iterates
instead, trained at one point (y) and evaluated at another (x), as the authors' package does.

The transform :class:`ScheduleFreeAverage` is the idea; :class:`ScheduleFreeAdamW` and
:class:`ScheduleFreeSGD` are the authors' two optimizers built on it.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .optimizer import Optimizer
from .transforms import NONNEGATIVE, Adapt, Chain, DecoupledWeightDecay, Transform, chain

__all__ = ["ScheduleFreeAverage", "ScheduleFreeAdamW", "ScheduleFreeSGD"]


def _number(value: Any) -> float:
    """A hyper-parameter as a Python number (a 1-element Tensor learning rate included)."""
    return value.item() if isinstance(value, Tensor) else value


def _weight(t: int, r: float, lr_max: float, power: float) -> float:
    """The weight of iterate t in the average: t^r · (max_{i≤t} γ_i)^power."""
    return (t**r) * (lr_max**power)


def _lerp_into(p: Tensor, end: Tensor, weight: float) -> None:
    """p ← p + weight·(end − p) in place, computed in ``end``'s precision (the optimizer's
    ``state_dtype``) and on ``p``'s device."""
    end = end.to(p.device)
    if end.dtype == p.dtype:
        p.lerp_(end, weight)
    else:
        p.copy_(p.to(end.dtype).lerp_(end, weight))


class ScheduleFreeAverage(Transform):
    r"""Schedule-Free's averaging of the iterates, in place of a learning-rate schedule.

    Three sequences: :math:`z` the base method's iterates, :math:`x` their weighted average
    (the point to evaluate), and :math:`y` the point the gradient is taken at, which the
    parameters hold while training:

    .. math::
        z_{t+1} = z_t - \gamma_t u_t,\qquad
        x_{t+1} = (1 - c_{t+1})\,x_t + c_{t+1}\,z_{t+1},\qquad
        y_{t+1} = (1-\beta)\,z_{t+1} + \beta\,x_{t+1}

    with :math:`u_t` the incoming direction at :math:`y_t` (the gradient, or Adam's normalized
    gradient), β = the momentum (``momentum`` or ``betas[0]``), the learning rate with a linear
    warmup :math:`\gamma_t = \text{lr}\cdot\min(1, t/\text{warmup\_steps})` and the averaging
    weights

    .. math::
        c_{t+1} = \frac{w_t}{\sum_{i\le t} w_i},\qquad
        w_t = t^{\,r}\,\bigl(\max_{i\le t}\gamma_i\bigr)^{\text{weight\_lr\_power}}.

    As the authors' package, :math:`x` is not stored: :math:`y` is updated directly,
    :math:`y \leftarrow (1-c)\,y + c\,z + \gamma(\beta(1-c) - 1)\,u` before the :math:`z` step,
    so the outgoing direction is :math:`c\,(y - z) - \gamma(\beta(1-c) - 1)\,u`; the learning
    rate is applied here (no :class:`~optimlab.optim.transforms.LearningRate` in the chain).
    :meth:`to_eval` moves the parameters to :math:`x = y + (1 - 1/\beta)(z - y)` and
    :meth:`to_train` back to :math:`y = x + (1 - \beta)(z - x)`.

    Group-level state, kept in the param group as the package keeps it (so it is in the state
    dict): ``k`` (steps taken), ``scheduled_lr`` (:math:`\gamma_t`), ``lr_max``, ``weight_sum``,
    updated by :meth:`begin` once per step; ``train_mode`` (see
    :meth:`optimlab.optim.Optimizer.train`). Group keys: ``lr``, ``warmup_steps``, ``r``,
    ``weight_lr_power`` and the momentum's. State: ``z`` (a copy of the parameter at its first
    step). Reference: Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky, "The Road Less
    Scheduled", NeurIPS 2024; equal to the ``schedulefree`` package (1.4.1).

    Args:
        momentum: the group key of β.
        interval: β's allowed range (the package's SGD refuses β = 1; x = y then).
    """

    state = ("z",)
    modes = True

    def __init__(self, momentum: str = "momentum", interval: str = "(0, 1)"):
        self.momentum = momentum
        self.hyperparameters = {"lr": NONNEGATIVE, momentum: interval,
                                "warmup_steps": NONNEGATIVE, "r": NONNEGATIVE,
                                "weight_lr_power": NONNEGATIVE}

    def begin(self, group):
        k = group["k"]
        warmup = group["warmup_steps"]
        lr = _number(group["lr"]) * ((k + 1) / warmup if k < warmup else 1.0)
        group["scheduled_lr"] = lr
        group["lr_max"] = lr_max = max(lr, group["lr_max"])
        group["weight_sum"] = group["weight_sum"] + _weight(k + 1, group["r"], lr_max,
                                                            group["weight_lr_power"])
        group["k"] = k + 1

    def init(self, p, hp):
        return {"z": p.detach().clone()}

    def prepare(self, s, hp, step):
        # k was advanced by begin: this is step k of the group (the package's k + 1)
        weight_sum = hp["weight_sum"]
        weight = _weight(hp["k"], hp["r"], hp["lr_max"], hp["weight_lr_power"])
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        lr = hp["scheduled_lr"]
        return {"ckp1": ckp1, "lr": lr, "along": lr * (hp[self.momentum] * (1 - ckp1) - 1)}

    def update(self, u, g, s, p, hp, c):
        z = s["z"]
        out = (p - z).mul_(c["ckp1"]).sub_(u * c["along"])
        z.sub_(u * c["lr"])
        return out

    def to_eval(self, p, s, hp):
        if "z" in s:
            _lerp_into(p, s["z"], 1 - 1 / hp[self.momentum])

    def to_train(self, p, s, hp):
        if "z" in s:
            _lerp_into(p, s["z"], 1 - hp[self.momentum])


#: the group-level state of Schedule-Free, as the package initializes it (``train_mode``: see
#: the optimizers' docstrings).
_GROUP_STATE = {"k": 0, "train_mode": True, "weight_sum": 0.0, "lr_max": -1.0,
                "scheduled_lr": 0.0}


class _ScheduleFree(Optimizer):
    """What the Schedule-Free optimizers share: no per-parameter step count (the group's ``k``
    counts), the package's state names, and the train/eval modes."""

    counts_steps = False


class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-Free AdamW: Adam's normalization without first moment, averaged iterates
    instead of momentum and of a learning-rate schedule.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\qquad
        u_t = \frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon} + \lambda y_t,

    then :class:`ScheduleFreeAverage` with β = ``betas[0]``: :math:`z \leftarrow z - \gamma_t u_t`
    and the parameters (y) follow the weighted average x of the z's. The weight decay λ is
    taken at y and added to the normalized gradient, as the package does (decoupled: it enters
    neither :math:`v` nor the normalization); ``decoupled_weight_decay=False`` adds it to the
    gradient instead (L2). The bias correction counts the group's steps ``k``, as the package.

    Call ``optimizer.eval()`` before evaluating or saving the model (the parameters become x)
    and ``optimizer.train()`` before training again (back to y); :meth:`step` in evaluation
    mode raises ``RuntimeError``, as the package (which raises ``Exception``). Unlike the
    package, a new optimizer starts in training mode: the ``train()`` the package requires
    before the first step is accepted and changes nothing.

    Defaults (the package's): ``lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    warmup_steps=0, r=0, weight_lr_power=2``. State: ``z``, ``exp_avg_sq``; group state:
    ``k``, ``train_mode``, ``weight_sum``, ``lr_max``, ``scheduled_lr``.
    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024; equal to
    ``schedulefree.AdamWScheduleFree``. The keras flavor is the same algorithm with Keras'
    clipping formulas.
    """

    _DEFAULTS = {"lr": 0.0025, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                 "decoupled_weight_decay": True, "warmup_steps": 0, "r": 0.0,
                 "weight_lr_power": 2.0, **_GROUP_STATE}
    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = None, warmup_steps: int | None = None,
                 r: float | None = None, weight_lr_power: float | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                         **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(Adapt("ema", "betas.1", bias_correction=True, eps="after_root", count="k"),
                     DecoupledWeightDecay(), ScheduleFreeAverage("betas.0", "(0, 1]"))


class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-Free SGD: gradient steps on z, the parameters at y between z and the weighted
    average x of the z's; no momentum buffer and no learning-rate schedule.

    .. math::
        z_{t+1} = z_t - \gamma_t\,(g_t + \lambda y_t),\qquad
        x_{t+1} = (1 - c_{t+1})\,x_t + c_{t+1} z_{t+1},\qquad
        y_{t+1} = (1-\beta) z_{t+1} + \beta x_{t+1}

    (:class:`ScheduleFreeAverage` with β = ``momentum``, γ and c as there). Weight decay is L2
    at y, as the package (``decoupled_weight_decay=True`` gives the same update). Modes as
    :class:`ScheduleFreeAdamW`: ``eval()`` before evaluating or saving, ``train()`` before
    training.

    Defaults (the package's): ``lr=1.0, momentum=0.9, weight_decay=0, warmup_steps=0, r=0,
    weight_lr_power=2``; ``momentum`` in (0, 1). State: ``z``; group state as
    :class:`ScheduleFreeAdamW`. Reference: Defazio et al., "The Road Less Scheduled",
    NeurIPS 2024; equal to ``schedulefree.SGDScheduleFree``. The keras flavor is the same
    algorithm with Keras' clipping formulas.
    """

    _DEFAULTS = {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 0, "r": 0.0,
                 "weight_lr_power": 2.0, **_GROUP_STATE}
    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}

    def __init__(self, params, lr: float | None = None, momentum: float | None = None,
                 weight_decay: float | None = None, warmup_steps: int | None = None,
                 r: float | None = None, weight_lr_power: float | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                         **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(DecoupledWeightDecay(), ScheduleFreeAverage("momentum", "(0, 1)"))
