"""Prodigy: Adam whose step size is d·η, with d an estimate of the distance to the solution
made from all of a param group's gradients at once (a global reduction), as the authors' package.

The transforms :class:`ProdigyMoments` (Adam's moments weighted by d) and
:class:`ProdigyStepSize` (the estimate of d and the step size d·η) make up :class:`Prodigy`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .optimizer import Optimizer, alias
from .transforms import (
    NONNEGATIVE,
    UNIT,
    UNIT_OPEN,
    Chain,
    DecoupledWeightDecay,
    Transform,
    chain,
    hyper,
)

__all__ = ["ProdigyMoments", "ProdigyStepSize", "Prodigy"]

POSITIVE = "(0, inf)"


def _number(value: Any) -> float:
    """A hyper-parameter as a Python number (a 1-element Tensor learning rate included)."""
    return value.item() if isinstance(value, Tensor) else value


def _beta3(group_beta3: float | Tensor | None, beta2: float | Tensor) -> float | Tensor:
    """β₃, the decay of the estimate's sums: ``beta3``, or √β₂ when it is None (the package;
    a 0-d tensor under ``torch.compile``)."""
    if group_beta3 is not None:
        return group_beta3
    return beta2.sqrt() if isinstance(beta2, Tensor) else math.sqrt(beta2)


class ProdigyMoments(Transform):
    r"""Prodigy's Adam moments, weighted by the current distance estimate d:

    .. math::
        m_k = \beta_1 m_{k-1} + d_k(1-\beta_1)\,g_k,\qquad
        v_k = \beta_2 v_{k-1} + d_k^2(1-\beta_2)\,g_k^2,\qquad
        \text{out} = \frac{m_k}{\sqrt{v_k} + d_{k+1}\,\epsilon}

    (with β₁ = 0 there is no :math:`m`: out = :math:`d_{k+1} g_k / (\sqrt{v_k} + d_{k+1}\epsilon)`).
    The moments move in the first pass of the step (:meth:`reduce`), with the estimate
    :math:`d_k` the step starts from; the direction uses :math:`d_{k+1}`, which that pass
    produced (:class:`ProdigyStepSize`). A group with ``lr = 0`` leaves its moments alone.
    Group keys: ``betas``, ``eps``, ``lr``, ``d``. State: ``exp_avg`` (if β₁ > 0 when created),
    ``exp_avg_sq``. Reference: Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive
    Parameter-Free Learner", ICML 2024, Algorithm 4 (the ``prodigyopt`` package).
    """

    reduces = True
    state = ("exp_avg", "exp_avg_sq")
    hyperparameters = {"betas.0": UNIT_OPEN, "betas.1": UNIT_OPEN, "eps": POSITIVE}

    def init(self, p, hp):
        buffers = {"exp_avg": torch.zeros_like(p)} if hp.on("betas.0") else {}
        buffers["exp_avg_sq"] = torch.zeros_like(p)
        return buffers

    def reduce(self, g, s, p, hp):
        if not hp.on("lr"):  # lr >= 0: on means > 0, fixed at compile time
            return {}
        d, beta1, beta2 = hp["d"], hp["betas.0"], hp["betas.1"]
        if hp.on("betas.0") and "exp_avg" in s:
            s["exp_avg"].mul_(beta1).add_(g, alpha=d * (1 - beta1))
        s["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=d * d * (1 - beta2))
        return {}

    def prepare(self, s, hp, step):
        d = hp["d"]
        return {"eps": d * hp["eps"], "d": d}

    def update(self, u, g, s, p, hp, c):
        denominator = s["exp_avg_sq"].sqrt().add_(c["eps"])
        if hp.on("betas.0") and "exp_avg" in s:
            return s["exp_avg"] / denominator
        return u / denominator, c["d"]


class ProdigyStepSize(Transform):
    r"""Prodigy's step size :math:`d\cdot\eta`, with d the estimate of the distance
    :math:`\lVert x_0 - x_*\rVert` to the solution, made from all of the group's gradients.

    With :math:`\eta_k` = ``lr`` (times Adam's bias correction
    :math:`\sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})` with ``use_bias_correction``; the
    package's ``dlr`` is :math:`d_k\eta_k`), every parameter (or every ``slice_p``-th element
    of it, an approximation that saves memory) adds to two sums, a global reduction over the
    group:

    .. math::
        r_k = \beta_3 r_{k-1} + \sum_i \frac{d_k}{d_0} d_k\eta_k\,
              \langle g_{k,i},\, x_{0,i} - x_{k,i}\rangle,\qquad
        s_{k,i} = \beta_3 s_{k-1,i} + \frac{d_k}{d_0}\,(d_k \text{ if safeguard\_warmup else }
              d_k\eta_k)\,g_{k,i}

    and the estimate grows, by at most the factor ``growth_rate`` per step:

    .. math::
        \hat d = \text{d\_coef}\cdot\frac{r_k}{\sum_i \lVert s_{k,i}\rVert_1},\qquad
        d_{\max} \leftarrow \max(d_{\max}, \hat d),\qquad
        d_{k+1} = \min\bigl(d_{\max},\ \text{growth\_rate}\cdot
                  \max(d_k, \hat d \text{ while } d_k = d_0)\bigr)

    (β₃ = ``beta3``, √β₂ if None). The direction is then scaled by :math:`d_k\eta_k`, the step
    size of the estimate the step started from. :meth:`begin` computes it, :meth:`reduce` and
    :meth:`combine` are the two sums and the new estimate, as the package's two passes.
    If the denominator is 0 (every s is 0: no gradient, or all-zero gradients, since the
    start, or ``lr = 0``) the package returns before its update: the step size is then 0 and
    the group state is kept.

    Group-level state, kept in the param group as the package keeps it (so it is in the
    state dict): ``d``, ``d_max``, ``d_numerator`` (:math:`r_k`), ``k`` (steps taken),
    ``d_denom``, ``d_hat``, and ``dlr`` (this step's :math:`d_k\eta_k`). Group keys: ``lr``,
    ``betas``, ``beta3``, ``d0``, ``d_coef``, ``growth_rate``, ``slice_p``,
    ``use_bias_correction``, ``safeguard_warmup``. State: ``s`` and ``p0`` (the parameter at
    its first step), every ``slice_p``-th element of the flattened tensor, as the package.
    Reference: Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner", ICML 2024 (the ``prodigyopt`` package, 1.1.2).
    """

    scope = "tensor"  # s and p0 are flat slices of the tensor, not shaped like it
    reduces = True
    linear = True
    state = ("s", "p0")
    flags = ("use_bias_correction", "safeguard_warmup")
    integers = ("slice_p",)
    hyperparameters = {"lr": NONNEGATIVE, "beta3": UNIT, "d0": POSITIVE, "d_coef": POSITIVE,
                       "growth_rate": "(0, inf]"}

    def validate(self, group):
        super().validate(group)
        n = hyper(group, "slice_p")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"slice_p={n!r} must be an integer >= 1 (every slice_p-th element "
                             f"of a tensor enters the estimate of d; 1: all of them)")

    def begin(self, group):
        k = group["k"]
        beta1, beta2 = group["betas"]
        correction = (((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
                      if group["use_bias_correction"] else 1)
        group["dlr"] = group["d"] * _number(group["lr"]) * correction

    def init(self, p, hp):
        sliced = p.reshape(-1)[::hp.integer("slice_p")]
        return {"s": torch.zeros(sliced.shape, dtype=p.dtype, device=p.device),
                "p0": sliced.clone(memory_format=torch.contiguous_format)}

    def reduce(self, g, s, p, hp):
        if not hp.on("lr"):
            return {}
        d, d0, dlr = hp["d"], hp["d0"], hp["dlr"]
        beta3 = _beta3(hp.get("beta3"), hp["betas.1"])
        n, rows = hp.integer("slice_p"), g.shape[0]  # a stack of `rows` tensors
        sliced = g.reshape(rows, -1)[:, ::n]
        here = p.reshape(rows, -1)[:, ::n]
        numerator = torch.linalg.vecdot(sliced, s["p0"] - here).sum() * ((d / d0) * dlr)
        scale = (d / d0) * (d if hp.on("safeguard_warmup") else dlr)
        s["s"].mul_(beta3).add_(sliced, alpha=scale)
        return {"numerator": numerator, "denominator": s["s"].abs().sum()}

    def combine(self, group, totals):
        denominator = totals["denominator"].item() if "denominator" in totals else 0.0
        if denominator == 0:  # the package returns before its update; nothing moves
            group["dlr"] = 0.0
            return
        beta3 = _beta3(group.get("beta3"), group["betas"][1])
        numerator = group["d_numerator"] * beta3 + totals["numerator"].item()
        d, d_max = group["d"], group["d_max"]
        d_hat = group["d_coef"] * numerator / denominator
        if d == group["d0"]:
            d = max(d, d_hat)
        d_max = max(d_max, d_hat)
        d = min(d_max, d * group["growth_rate"])
        group.update(d_numerator=numerator, d_denom=denominator, d=d, d_max=d_max, d_hat=d_hat,
                     k=group["k"] + 1)

    def prepare(self, s, hp, step):
        return {"dlr": hp["dlr"]}

    def update(self, u, g, s, p, hp, c):
        return u, c["dlr"]


class Prodigy(Optimizer):
    r"""Prodigy: Adam with the step size d·η, d an estimate of the distance to the solution
    that grows from ``d0`` as the gradients show how far the parameters have to go.

    .. math::
        m_k = \beta_1 m_{k-1} + d_k(1-\beta_1) g_k,\quad
        v_k = \beta_2 v_{k-1} + d_k^2(1-\beta_2) g_k^2,\quad
        p_{k+1} = p_k - d_k\eta_k\Bigl(\frac{m_k}{\sqrt{v_k} + d_{k+1}\epsilon}
                  + \lambda p_k\Bigr)

    with :math:`d_{k+1}` the estimate of :class:`ProdigyStepSize` (a global reduction over the
    param group's gradients, made after the moments move and before the step) and
    :math:`\eta_k` = ``lr`` (times Adam's bias correction with ``use_bias_correction``).
    Weight decay: ``decouple=True`` (default) decays by :math:`d_k\eta_k\lambda p` as above
    (:class:`~optimlab.optim.transforms.DecoupledWeightDecay`); ``decouple=False`` adds
    :math:`\lambda p` to the gradient (L2). ``decouple`` is the group's
    ``decoupled_weight_decay``. ``lr`` is a multiplier of the estimated step size: leave it
    at 1 unless training is unstable.

    Group-level state as the package: ``d``, ``d_max``, ``d_numerator``, ``k``, ``d_denom``,
    ``d_hat`` (and ``dlr``, the last step size), in the param group and its state dict.

    Differences from the package, on purpose: each param group has its own estimate and
    learning rate (the package pools the estimate over all groups and requires every group's
    ``lr`` to be the common one or 0); the per-parameter ``step`` is a 0-d tensor counting every
    update, as torch.optim; ``p0`` of an all-zero parameter is a zero tensor (the package keeps
    a 0-d zero, equal in the math); the user's gradients are not modified (the package adds
    the L2 term to ``.grad`` in place); ``fsdp_in_use=True`` is refused (the estimate needs
    whole tensors: sharded DTensor parameters are not supported).

    Defaults (the package's): ``lr=1, betas=(0.9, 0.999), beta3=None (√β₂), eps=1e-8,
    weight_decay=0, decouple=True, use_bias_correction=False, safeguard_warmup=False,
    d0=1e-6, d_coef=1, growth_rate=inf, slice_p=1``. State: ``step``, ``s``, ``p0``,
    ``exp_avg`` (β₁ > 0), ``exp_avg_sq``. Reference: Mishchenko & Defazio, "Prodigy: An
    Expeditiously Adaptive Parameter-Free Learner", ICML 2024; equal to ``prodigyopt.Prodigy``
    (1.1.2) for one param group. The keras flavor is the same algorithm with Keras' clipping
    formulas.
    """

    _DEFAULTS = {"lr": 1.0, "betas": (0.9, 0.999), "beta3": None, "eps": 1e-8,
                 "weight_decay": 0.0, "decoupled_weight_decay": True,
                 "use_bias_correction": False, "safeguard_warmup": False, "d0": 1e-6,
                 "d_coef": 1.0, "growth_rate": math.inf, "slice_p": 1,
                 "d_numerator": 0.0, "k": 0}
    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}
    #: checkpoints both ways with the package (``state_dict`` has its keys)
    PACKAGE_NAMES = {"decouple": "decoupled_weight_decay"}
    PACKAGE_KEYS = {"fsdp_in_use": False}

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, beta3: float | None = None,
                 eps: float | None = None, weight_decay: float | None = None,
                 decouple: bool | None = None, use_bias_correction: bool | None = None,
                 safeguard_warmup: bool | None = None, d0: float | None = None,
                 d_coef: float | None = None, growth_rate: float | None = None,
                 fsdp_in_use: bool = False, slice_p: int | None = None, **options: Any):
        if fsdp_in_use:
            raise ValueError("fsdp_in_use=True is not supported: Prodigy's estimate needs whole "
                             "tensors, and sharded (FSDP) parameters are refused; allowed: False")
        alias(options, "decouple", decouple)
        super().__init__(params, lr=lr, betas=betas, beta3=beta3, eps=eps,
                         weight_decay=weight_decay, use_bias_correction=use_bias_correction,
                         safeguard_warmup=safeguard_warmup, d0=d0, d_coef=d_coef,
                         growth_rate=growth_rate, slice_p=slice_p, **options)
        # the estimate starts at d0, as the package's defaults (d = d_max = d0)
        start = self.defaults["d0"]
        for key in ("d", "d_max"):
            self.defaults[key] = start
            for group in self.param_groups:
                group.setdefault(key, start)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(ProdigyMoments(), DecoupledWeightDecay(), ProdigyStepSize())
