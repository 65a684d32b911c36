"""Adafactor: a second moment factored into row and column statistics, a step size relative to
the parameter's scale and update clipping by RMS — torch's and Keras' Adafactor as one chain.

The transforms are :class:`~optimlab.optim.transforms.FactoredAdapt`,
:class:`~optimlab.optim.transforms.ClipByRms` and
:class:`~optimlab.optim.transforms.RelativeStepSize`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .optimizer import Optimizer
from .transforms import (
    KERAS_MINMAX,
    Chain,
    ClipByRms,
    FactoredAdapt,
    FixedWeightDecay,
    RelativeStepSize,
    chain,
)

__all__ = ["Adafactor"]


class Adafactor(Optimizer):
    r"""Adafactor: RMS adaptation whose second moment, for a matrix, is the outer product of a
    row and a column statistic, so it costs n + m numbers instead of n·m.

    With :math:`G_t` the gradient, :math:`\hat\beta_t = 1 - t^{\tau}`, for a tensor of shape
    (…, n, m) (factored over its last two dimensions):

    .. math::
        R_t = \hat\beta_t R_{t-1} + (1-\hat\beta_t)\operatorname{mean}_j G_t^2,\quad
        C_t = \hat\beta_t C_{t-1} + (1-\hat\beta_t)\operatorname{mean}_i G_t^2,\quad
        \hat V_t = \frac{R_t C_t}{\max(\operatorname{mean}_i R_t,\ \epsilon_1)}

    (for a tensor of at most one dimension the full :math:`\hat V_t = \hat\beta_t\hat V_{t-1}
    + (1-\hat\beta_t)G_t^2`), then

    .. math::
        U_t = \frac{G_t}{\max(\sqrt{\hat V_t},\ \epsilon_1)},\quad
        \hat U_t = \frac{U_t}{\max(1,\ \operatorname{RMS}(U_t)/d)},\quad
        \alpha_t = \max\bigl(\epsilon_2,\ \operatorname{RMS}(p_{t-1})\bigr)\min(\eta, 1/\sqrt t),

    .. math:: p_t = p_{t-1}(1 - \eta\lambda) - \alpha_t \hat U_t

    with RMS(x) = ‖x‖₂/√n per tensor (:class:`~optimlab.optim.transforms.FactoredAdapt`,
    :class:`~optimlab.optim.transforms.ClipByRms`,
    :class:`~optimlab.optim.transforms.RelativeStepSize`, then
    :class:`~optimlab.optim.transforms.FixedWeightDecay`: the step size α is taken at the
    parameter before its decay, as torch). ``maximize`` ascends; ``weight_decay`` is
    decoupled, scaled by η (``decoupled_weight_decay=False`` adds λp to the gradient instead,
    which torch's Adafactor does not offer).

    Defaults (torch's): ``lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0,
    weight_decay=0.0``; ε₁ None is the machine epsilon of the parameter's dtype (of the
    ``state_dtype`` if given). Ranges as torch: ``lr`` ≥ 0, ``beta2_decay`` ≤ 0, ``eps[0]``
    ≥ 0 or None, ``eps[1]`` ≥ 0, ``d`` ≥ 1, ``weight_decay`` ≥ 0. ``foreach`` is accepted as
    torch accepts it (the engine decides how the step runs). Complex parameters raise a
    RuntimeError at the step, as torch. State (torch's names and shapes): ``step``;
    ``row_var`` (…, n, 1) and ``col_var`` (…, 1, m) for tensors of two or more dimensions,
    ``variance`` shaped like the tensor otherwise.

    keras flavor: ``keras.optimizers.Adafactor`` (Keras 3), with torch-style names —
    ``beta2_decay`` is ``beta_2_decay``, ``eps=(ε₁, ε₂)`` is ``epsilon_1, epsilon_2``, ``d`` is
    ``clip_threshold``. The same chain with two switches: ε₁ is added to G² before the row,
    column and full statistics and nothing is clamped (the paper's placement; ``eps="add"`` of
    :class:`~optimlab.optim.transforms.FactoredAdapt`), and the decoupled weight decay is
    Keras' base optimizer's, applied before the update, so α takes the RMS of the decayed
    parameter. The means (of the statistics and in the RMS), the step size ρ, max(ε₂, RMS(p)),
    their product and the clipping denominator are computed in float32, as Keras'
    ``ops.mean``/``ops.maximum``/``ops.minimum`` compute float64 operands on the torch backend
    (``round_to``; nothing changes for float32 parameters). Defaults: ``lr=1e-3,
    beta2_decay=-0.8, eps=(1e-30, 1e-3), d=1.0``. Keras' ``relative_step`` is not an
    argument: in Keras 3 it changes nothing (the step size is min(η, 1/√t) either way).
    Keras counts t in the optimizer's iterations, optimlab per parameter (equal while every
    parameter gets a gradient at every step), and keeps a full ``v`` for every tensor; the
    state here is torch's.

    Differences from torch: with parameters of several dtypes in one param group and
    ``eps[0]=None``, torch takes ε₁ of the first parameter's dtype for all of them, optimlab
    each parameter's own.

    Reference: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost", ICML 2018; equal to ``torch.optim.Adafactor`` (torch 2.13) step by step, and in the
    keras flavor to ``keras.optimizers.Adafactor``. torch and Keras differ from the paper in
    the learning rate (the paper's relative step size caps ρ at 0.01, not η; the paper has no
    weight decay), and torch in the placement of ε₁ (above).
    """

    DEFAULTS = {
        "torch": {"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0,
                  "decoupled_weight_decay": True},
        "keras": {"lr": 1e-3, "beta2_decay": -0.8, "eps": (1e-30, 1e-3), "d": 1.0,
                  "decoupled_weight_decay": True},
    }

    def __init__(self, params, lr: float | None = None, beta2_decay: float | None = None,
                 eps: tuple[float | None, float] | None = None, d: float | None = None,
                 weight_decay: float | None = None, *, foreach: bool | None = None,
                 maximize: bool | None = None, **options: Any):
        if maximize is not None:
            options["maximize"] = maximize
        super().__init__(params, lr=lr, beta2_decay=beta2_decay,
                         eps=tuple(eps) if isinstance(eps, list) else eps, d=d,
                         weight_decay=weight_decay, foreach=foreach, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        if flavor == "keras":  # ε₁ added to g²; the base decays before the update, as Keras
            return chain(FactoredAdapt(eps="add", round_to=KERAS_MINMAX),
                         ClipByRms(round_to=KERAS_MINMAX), RelativeStepSize(round_to=KERAS_MINMAX))
        return chain(FactoredAdapt(eps="clamp"), ClipByRms(), RelativeStepSize(),
                     FixedWeightDecay())

    def _refuse_complex(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and torch.is_complex(p):
                    raise RuntimeError("Adafactor does not support complex parameters (as "
                                       "torch.optim.Adafactor); split them into real ones "
                                       "with torch.view_as_real")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one update; complex parameters with a gradient raise a RuntimeError."""
        if closure is None:
            self._refuse_complex()
            return super().step()

        def checked():
            loss = closure()
            self._refuse_complex()
            return loss
        return super().step(checked)
