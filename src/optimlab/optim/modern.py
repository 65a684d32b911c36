"""The elementwise optimizers beyond torch.optim's: Lion, AdaBelief, Yogi, ADOPT and AdEMAMix.

Each is a chain of transforms (:mod:`optimlab.optim.transforms`) equal, step by step, to a
named reference implementation; each docstring says which, and where implementations differ.
"""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer, alias
from .transforms import (
    Adapt,
    AverageGradient,
    BiasCorrection,
    Chain,
    DecorrelatedAdapt,
    FixedWeightDecay,
    InterpolatedSign,
    LearningRate,
    MixSlowAverage,
    RectifiedAdapt,
    chain,
)

__all__ = ["Lion", "AdaBelief", "Yogi", "ADOPT", "AdEMAMix"]

#: The keras flavor of an optimizer Keras does not have: the algorithm and defaults of its
#: reference, with Keras' conventions for what the base optimizer does (weight decay
#: decoupled, Keras' clipping formulas), as for RAdam and the other torch-only optimizers.
KERAS_BASE = {"decoupled_weight_decay": True}


class Lion(Optimizer):
    r"""Lion (EvoLved Sign Momentum): the sign of an interpolation between the momentum and
    the gradient, so every coordinate moves by exactly η.

    .. math::
        c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        p_t = p_{t-1}(1 - \eta\lambda) - \eta\,\operatorname{sign}(c_t),\quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t

    (:class:`~optimlab.optim.transforms.InterpolatedSign`). Weight decay is decoupled by
    default, as in the paper and Keras (``decoupled_weight_decay=False`` adds λp to the
    gradient instead). Because the update has the largest norm a step of size η can have, the
    paper recommends a learning rate 3–10× smaller than AdamW's and a weight decay 3–10×
    larger (the same η·λ).

    Defaults: ``betas=(0.9, 0.99)``, ``weight_decay=0``; torch flavor ``lr=1e-4`` (the paper's
    and the PyTorch ports' choice, lion-pytorch and pytorch_optimizer), keras flavor
    ``lr=1e-3`` (Keras'). ``betas[0]`` in [0, 1] (the keras flavor refuses 0, as Keras: it
    would be signSGD), ``betas[1]`` in [0, 1]. State: ``exp_avg`` (Keras: ``momentum``).

    Reference: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023;
    equal to ``keras.optimizers.Lion`` (Keras 3) step by step, in both flavors (the torch
    flavor with torch's argument names, clipping formulas and defaults). Implementations
    differ only in rounding, but the sign is discontinuous: where β₁m + (1−β₁)g is within
    rounding of 0, two correct implementations can move a coordinate by +η and −η.
    """

    DEFAULTS = {
        "torch": {"lr": 1e-4, "betas": (0.9, 0.99), "decoupled_weight_decay": True},
        "keras": {"lr": 1e-3, "betas": (0.9, 0.99), "decoupled_weight_decay": True},
    }
    FLAVOR_RANGES = {"keras": {"betas.0": "(0, 1]"}}  # Keras refuses beta_1 = 0

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, weight_decay: float | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(InterpolatedSign("betas.0", "betas.1"), LearningRate())


class AdaBelief(Optimizer):
    r"""AdaBelief: Adam whose step is large where the gradient is as predicted (by its moving
    average) and small where it is not — the second moment is the EMA of (g − m)², the
    "belief" in the observed gradient.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon,\\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    (``rectify=False``). ``amsgrad`` uses :math:`\max_{i\le t} s_i`. With ``rectify=True``
    (the default) the step is RAdam's: with :math:`\rho_t` and :math:`r_t` of
    :class:`~optimlab.optim.transforms.RectifiedAdapt`,
    :math:`p_t = p_{t-1} - \eta\,r_t\sqrt{1-\beta_2^t}\,m_t / ((1-\beta_1^t)(\sqrt{s_t}+\epsilon))`
    where :math:`\rho_t \ge 5`, and elsewhere :math:`p_t = p_{t-1} - \eta\, m_t/(1-\beta_1^t)`
    (``degenerated_to_sgd=True``) or no step (``False``). Weight decay: ``weight_decouple=True``
    (default; our ``decoupled_weight_decay``) decays p ← p(1 − ηλ) before the step, or
    p ← p(1 − λ) with ``fixed_decay=True``; ``weight_decouple=False`` adds λp to the gradient.

    Defaults (the package's): ``lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=0,
    amsgrad=False, weight_decouple=True, fixed_decay=False, rectify=True,
    degenerated_to_sgd=True``. ``rectify`` is fixed when the optimizer is built (it chooses the
    chain), as the package keeps it on the optimizer; the others are param-group entries.
    ``print_change_log`` is accepted so that code written for the package runs unchanged, and
    prints nothing. State: ``step``, ``exp_avg``, ``exp_avg_var``, ``max_exp_avg_var``
    (``amsgrad``, without ``rectify``).

    Reference: Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients", NeurIPS 2020; equal to the authors' ``adabelief_pytorch.AdaBelief``
    (0.2.1) step by step. As the package: ε enters twice (inside s, as the paper's Algorithm 2,
    and beside √ŝ); the rectification starts at ρ_t ≥ 5 (torch's RAdam: ρ_t > 5); with
    ``rectify=True`` the rectified step divides by √s_t, not by the AMSGrad maximum, so
    ``amsgrad`` has no effect there (the package keeps the maximum and does not use it; no
    buffer is kept here, so the package does not load the state of such a run). Differences,
    on purpose: each parameter counts its own steps and the user's gradient is not modified
    (the package adds the L2 term to ``.grad`` in place), as torch.optim; the package's
    float16 path (parameters converted to float32 in place) is ``state_dtype=torch.float32``
    here, which leaves the parameters' dtype alone. The keras
    flavor is the same algorithm with Keras' clipping formulas.
    """

    _DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-16, "weight_decay": 0.0,
                 "amsgrad": False, "decoupled_weight_decay": True, "fixed_decay": False,
                 "degenerated_to_sgd": True}
    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}
    #: the package's rectification cache, so that it loads our checkpoints
    PACKAGE_KEYS = {"buffer": [[None, None, None] for _ in range(10)]}

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = None, amsgrad: bool | None = None,
                 weight_decouple: bool | None = None, fixed_decay: bool | None = None,
                 rectify: bool = True, degenerated_to_sgd: bool | None = None,
                 print_change_log: bool = False, **options: Any):
        if not isinstance(rectify, bool):
            raise ValueError(f"rectify={rectify!r} must be True or False")
        alias(options, "weight_decouple", weight_decouple)
        self.rectify = rectify
        super().__init__(params, self._chain(rectify), lr=lr, betas=betas, eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad, fixed_decay=fixed_decay,
                         degenerated_to_sgd=degenerated_to_sgd, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return cls._chain(rectify=True)

    @staticmethod
    def _chain(rectify: bool) -> Chain:
        if rectify:
            adapt: Adapt = RectifiedAdapt("betas.1", name="exp_avg_var", statistic="belief",
                                          inclusive=True, degenerate="degenerated_to_sgd")
        else:
            adapt = Adapt("belief", "betas.1", bias_correction=True, eps="after_root",
                          name="exp_avg_var")
        return chain(AverageGradient("betas.0", bias_correction=False), adapt,
                     BiasCorrection("betas.0"), LearningRate(), FixedWeightDecay())


class Yogi(Optimizer):
    r"""Yogi: Adam whose second moment changes additively, by at most (1 − β₂)g² a step, so
    the effective learning rate cannot grow abruptly when gradients become small.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = v_{t-1} - (1-\beta_2)\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2,\\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon},\qquad
        m_0 = v_0 = \text{initial\_accumulator\_value}

    (:class:`~optimlab.optim.transforms.Adapt`'s ``"yogi"`` statistic). Weight decay is
    decoupled by default (p ← p(1 − ηλ) before the step), as the reference.

    Defaults (pytorch_optimizer's): ``lr=1e-2, betas=(0.9, 0.999), eps=1e-3,
    initial_accumulator_value=1e-6, weight_decay=0, decoupled_weight_decay=True``.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.

    Reference: Zaheer, Reddi, Sachan, Kale, Kumar, "Adaptive Methods for Nonconvex
    Optimization", NeurIPS 2018; equal to ``pytorch_optimizer.Yogi`` (4.1.0) step by step,
    whose ``initial_accumulator`` is ``initial_accumulator_value`` here (Keras/TensorFlow's and
    torch's Adagrad's name) and ``weight_decouple`` is ``decoupled_weight_decay``. As that
    implementation (and torch-optimizer's): Adam's bias corrections of both moments and both
    moments started at ``initial_accumulator_value`` — the paper's Algorithm 2 has no bias
    correction and starts the first moment at 0. Differences, on purpose: each parameter
    counts its own steps (pytorch_optimizer counts the group's), as torch.optim; its
    ``fixed_decay`` and ``adam_debias`` options are not offered. The keras flavor is the same
    algorithm with Keras' clipping formulas.
    """

    _DEFAULTS = {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-3,
                 "initial_accumulator_value": 1e-6, "decoupled_weight_decay": True}
    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 initial_accumulator_value: float | None = None,
                 weight_decay: float | None = None, decoupled_weight_decay: bool | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, betas=betas, eps=eps,
                         initial_accumulator_value=initial_accumulator_value,
                         weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(AverageGradient("betas.0", initial="initial_accumulator_value"),
                     Adapt("yogi", "betas.1", bias_correction=True, eps="after_root",
                           initial="initial_accumulator_value"),
                     LearningRate())


class ADOPT(Optimizer):
    r"""ADOPT: Adam's normalization taken from the previous steps' second moment and applied
    before the momentum, which makes it converge for any β₂.

    .. math::
        \hat g_t = \operatorname{clip}\Bigl(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},
                   \pm t^{\,c}\Bigr),\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\hat g_t,\quad
        p_t = p_{t-1} - \eta\, m_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    with :math:`v_1 = g_1^2` and no step at t = 1 (the first gradient only initializes v),
    c = ``clip_exponent`` (``None``: no clipping)
    (:class:`~optimlab.optim.transforms.DecorrelatedAdapt`, then the first moment). No bias
    correction. Weight decay: L2 by default (λp added to the gradient, also at t = 1);
    ``decoupled_weight_decay=True`` decays p ← p(1 − ηλ) at every step, the first included.

    Defaults (pytorch_optimizer's): ``lr=1e-3, betas=(0.9, 0.9999), eps=1e-6,
    clip_exponent=0.25, weight_decay=0, decoupled_weight_decay=False``; the keras flavor
    decays decoupled. State: ``step``, ``exp_avg_sq``, ``exp_avg``.

    Reference: Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β₂ with the
    Optimal Rate", NeurIPS 2024; equal to ``pytorch_optimizer.ADOPT`` (4.1.0) step by step,
    whose ``clip_lambda=lambda step: step ** c`` is ``clip_exponent=c`` here (a number, so the
    state dict can be saved; ``clip_lambda=None`` is ``clip_exponent=None``) and
    ``weight_decouple`` is ``decoupled_weight_decay``; t counts the gradients seen, the first
    (which only initializes v) included, as there. The authors' repository has varied between
    releases (one replaces clipping by an ε schedule max(ε, β₃^{t−2}) with a third beta);
    this class follows pytorch_optimizer's, which clips. Differences, on purpose: each
    parameter counts its own steps (pytorch_optimizer counts the group's), as torch.optim;
    its ``fixed_decay``, ``cautious`` and ``stable_adamw`` options are not offered. The keras
    flavor is the same algorithm with decoupled weight decay and Keras' clipping formulas.
    """

    _DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.9999), "eps": 1e-6, "clip_exponent": 0.25}
    DEFAULTS = {"torch": _DEFAULTS, "keras": {**_DEFAULTS, **KERAS_BASE}}

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 clip_exponent: float | None = _DEFAULTS["clip_exponent"],
                 weight_decay: float | None = None, decoupled_weight_decay: bool | None = None,
                 **options: Any):
        # None (no clipping) is a value here, not "the default": it goes into this optimizer's
        # defaults, which the param groups take it from
        self.DEFAULTS = {flavor: {**defaults, "clip_exponent": clip_exponent}
                         for flavor, defaults in type(self).DEFAULTS.items()}
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(DecorrelatedAdapt("betas.1"),
                     AverageGradient("betas.0", bias_correction=False), LearningRate())


class AdEMAMix(Optimizer):
    r"""AdEMAMix: Adam with a mixture of two momenta — the usual fast EMA and a slow one
    (β₃ ≈ 0.9999) that keeps gradients useful for tens of thousands of steps.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        s_t = \beta_{3,t} s_{t-1} + (1-\beta_{3,t}) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\\
        p_t = p_{t-1} - \eta\,\frac{m_t/(1-\beta_1^t) + \alpha_t s_t}
                                    {\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    (:class:`~optimlab.optim.transforms.MixSlowAverage`); with T = ``t_alpha_beta3``, α and β₃
    warm up over T steps (α_t linearly from 0, β₃,t from β₁ to β₃ as the paper's
    scheduler), else α_t = α and β₃,t = β₃. Weight decay: L2 by default;
    ``decoupled_weight_decay=True`` decays p ← p(1 − ηλ) before the step (the paper's).

    Defaults (pytorch_optimizer's): ``lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=5,
    t_alpha_beta3=None, eps=1e-8, weight_decay=0, decoupled_weight_decay=False``; the keras
    flavor decays decoupled. State: ``step``, ``exp_avg``, ``exp_avg_slow``, ``exp_avg_sq``.

    Reference: Pagliardini, Ablin, Grangier, "The AdEMAMix Optimizer: Better, Faster, Older",
    arXiv:2409.03137 (ICLR 2025); equal to ``pytorch_optimizer.AdEMAMix`` (4.1.0) step by
    step (its ``weight_decouple`` is ``decoupled_weight_decay``). The authors' code
    (github.com/apple/ml-ademamix) differs: ``alpha=2`` by default, separate
    ``alpha_warmup`` and ``beta3_warmup``, a β₃ warmup linear in the half-life
    ln 0.5/ln(β + 10⁻⁸) − 1 rather than in 1/ln β, and AdamW's decoupled weight decay;
    pytorch_optimizer follows the paper's formulas with one horizon for both. Differences, on
    purpose: each parameter counts its own steps (pytorch_optimizer counts the group's), as
    torch.optim; its ``fixed_decay``, ``cautious`` and ``stable_adamw`` options are not
    offered. The keras flavor is the same algorithm with decoupled weight decay and Keras'
    clipping formulas.
    """

    _DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999, 0.9999), "alpha": 5.0,
                 "t_alpha_beta3": None, "eps": 1e-8}
    DEFAULTS = {"torch": _DEFAULTS, "keras": {**_DEFAULTS, **KERAS_BASE}}

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float, float] | None = None, alpha: float | None = None,
                 t_alpha_beta3: float | None = None, eps: float | None = None,
                 weight_decay: float | None = None, decoupled_weight_decay: bool | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, betas=betas, alpha=alpha, t_alpha_beta3=t_alpha_beta3,
                         eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(AverageGradient("betas.0"), MixSlowAverage(),
                     Adapt("ema", "betas.1", bias_correction=True, eps="after_root"),
                     LearningRate())
