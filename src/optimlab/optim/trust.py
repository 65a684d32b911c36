"""The layer-wise trust-ratio optimizers for large batches: LAMB (Adam's direction) and LARS
(SGD's), each tensor's step scaled to a fraction of its norm by one transform, TrustRatio.

Each is a chain of transforms (:mod:`optimlab.optim.transforms`) equal, step by step, to a
named reference implementation; each docstring says which, and where implementations differ.
"""

from __future__ import annotations

from typing import Any

from .optimizer import Optimizer
from .transforms import Adapt, AverageGradient, Chain, LearningRate, Momentum, TrustRatio, chain

__all__ = ["Lamb", "LARS"]


class Lamb(Optimizer):
    r"""LAMB (Layer-wise Adaptive Moments for Batch training): Adam's direction, rescaled per
    tensor so that each step has the norm η‖p‖.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        r_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon},\\
        p \leftarrow p(1 - \eta\lambda),\qquad
        p_t = p - \eta\,\frac{\lVert p\rVert}{\lVert r_t\rVert}\, r_t

    with the norms of the whole tensor, and the ratio 1 where ‖p‖ or ‖r_t‖ is 0
    (:class:`~optimlab.optim.transforms.TrustRatio`, after Adam's moments). Weight decay is
    decoupled and applied before the step, so ‖p‖ is the decayed parameter's, as Keras
    (``decoupled_weight_decay=False`` adds λp to the gradient instead, before the moments).
    Every tensor is adapted, biases and normalization scales included, as Keras.

    Defaults: ``betas=(0.9, 0.999)``, ``weight_decay=0``, ``lr=1e-3``; torch flavor
    ``eps=1e-6`` (the paper's experiments and the PyTorch ports: pytorch_optimizer, timm,
    torch-optimizer), keras flavor ``eps=1e-7`` (Keras'). Both flavors decay decoupled.
    State: ``step``, ``exp_avg``, ``exp_avg_sq`` (Keras: ``momentum``, ``velocity``).

    Reference: You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
    minutes", ICLR 2020, Algorithm 2; equal to ``keras.optimizers.Lamb`` (Keras 3) step by
    step, in both flavors (the torch flavor with torch's argument names, clipping formulas and
    defaults). Keras differs from the paper: the paper's ratio is
    φ(‖p‖)/‖r_t + λp‖ applied to r_t + λp (the decay inside the ratio, φ a scaling function,
    e.g. a clamp), Keras' (and this class's) is ‖p‖/‖r_t‖ with the decay outside, decoupled.
    The PyTorch ports differ among themselves and from Keras: timm's puts λp inside the ratio
    as the paper and clips the global gradient norm at 1 by default (``global_clipnorm=1``
    here); pytorch_optimizer's clamps ‖p‖ at 10 (φ), adds ε to ‖r_t‖ and by default leaves out
    the bias correction of the moments; this class follows Keras.
    """

    DEFAULTS = {
        "torch": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "decoupled_weight_decay": True},
        "keras": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7, "decoupled_weight_decay": True},
    }

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = None, **options: Any):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(AverageGradient("betas.0"),
                     Adapt("ema", "betas.1", bias_correction=True, eps="after_root"),
                     TrustRatio(), LearningRate())


class LARS(Optimizer):
    r"""LARS (Layer-wise Adaptive Rate Scaling): SGD with momentum whose gradient is rescaled
    per weight tensor to a fraction (the trust coefficient) of the parameter's norm.

    For a tensor with more than one dimension (a weight matrix or convolution kernel):

    .. math::
        r = \frac{c\,\lVert p\rVert}{\lVert g\rVert + \lambda\lVert p\rVert},\qquad
        d = r\,(g + \lambda p)

    (r = 1 where ‖p‖ or the denominator is 0; c = ``trust_coefficient``, λ = ``weight_decay``;
    :class:`~optimlab.optim.transforms.TrustRatio`); for vectors and scalars (biases,
    normalization scales) d = g, with neither the ratio nor weight decay. Then torch's momentum
    with the buffer started at 0:

    .. math::
        v_t = \mu v_{t-1} + (1-\tau)\,d_t,\quad
        p_t = p_{t-1} - \eta\,(d_t + \mu v_t \text{ if nesterov else } v_t)

    (μ = ``momentum``, τ = ``dampening``; μ = 0: p ← p − ηd). The weight decay is the
    algorithm's own (coupled, inside the ratio, matrices only);
    ``decoupled_weight_decay=True`` replaces it by the base's p ← p(1 − ηλ) on every tensor
    before the step, the ratio then c‖p‖/‖g‖.

    Defaults (pytorch_optimizer's), the same in both flavors: ``lr=1e-3, weight_decay=0,
    momentum=0.9, dampening=0, trust_coefficient=1e-3, nesterov=False``. ``momentum`` and
    ``dampening`` in [0, 1), ``trust_coefficient`` ≥ 0. State: ``momentum_buffer`` (with
    μ > 0), and no ``step``, as the package.

    Reference: You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks",
    arXiv:1708.03888 (2017), Algorithm 1; equal to ``pytorch_optimizer.LARS`` (4.1.0) step by
    step. That implementation differs from the paper's Algorithm 1, which it follows for the
    local rate c‖w‖/(‖∇L‖ + β‖w‖) and the decayed gradient it scales: the paper puts the global
    learning rate inside the momentum (v ← μv + γ_t·r·(g + λp), p ← p − v; different as soon
    as γ_t changes, e.g. under its polynomial decay, which is a scheduler here), applies the
    ratio to every layer, and has no dampening or Nesterov variant; the package, as most
    implementations, leaves vectors and scalars unscaled and undecayed and applies η after the
    momentum as torch's SGD. Differences, on purpose: the user's gradient is not modified (the
    package scales ``.grad`` in place and negates it with ``maximize``), and
    ``nesterov=True`` with a dampening is refused (as torch's SGD: a damped buffer is not
    Nesterov's look-ahead), which the package allows. The keras flavor is the same algorithm
    with Keras' clipping formulas.
    """

    _DEFAULTS = {"lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "dampening": 0.0,
                 "trust_coefficient": 1e-3, "nesterov": False}
    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}
    _RANGES = {"momentum": "[0, 1)", "dampening": "[0, 1)"}  # pytorch_optimizer's
    FLAVOR_RANGES = {"torch": _RANGES, "keras": _RANGES}
    counts_steps = False  # the package keeps no per-parameter "step"

    def __init__(self, params, lr: float | None = None, weight_decay: float | None = None,
                 momentum: float | None = None, dampening: float | None = None,
                 trust_coefficient: float | None = None, nesterov: bool | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                         dampening=dampening, trust_coefficient=trust_coefficient,
                         nesterov=nesterov, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(TrustRatio("trust_coefficient", weight_decay=True, min_ndim=2),
                     Momentum(nesterov_needs_momentum=False, damp_first=True), LearningRate())
