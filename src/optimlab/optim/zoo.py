"""The named optimizers, each a chain of transforms with torch's and Keras' defaults.

Every class takes torch.optim's argument names and, with ``flavor="torch"`` (the default), its
defaults and formulas, so ``optimlab.optim.Adam(params, **kw)`` is a drop-in for
``torch.optim.Adam(params, **kw)``. ``flavor="keras"`` reproduces Keras 3's defaults and
formulas (where ε sits, classic momentum, Nadam's schedule, decoupled weight decay).
The options every optimizer shares are documented on :class:`optimlab.optim.Optimizer`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..naming import unknown
from .adafactor import Adafactor
from .ftrl import Ftrl
from .lbfgs import LBFGS
from .modern import ADOPT, AdaBelief, AdEMAMix, Lion, Yogi
from .muon import Muon
from .optimizer import Optimizer
from .prodigy import Prodigy
from .schedulefree import ScheduleFreeAdamW, ScheduleFreeSGD
from .soap import SOAP
from .transforms import (
    Adapt,
    AverageGradient,
    AverageIterates,
    Chain,
    DecayingLearningRate,
    LearningRate,
    Momentum,
    NesterovAverage,
    RectifiedAdapt,
    ResilientStep,
    ScaleByUpdateRms,
    chain,
)
from .trust import LARS, Lamb

__all__ = ["SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam", "Nadam",
           "Nadamax", "RAdam", "Rprop", "ASGD", "LBFGS", "Ftrl", "get", "names", "REGISTRY"]

BETAS = (0.9, 0.999)
KERAS_EPS = 1e-7
#: Keras applies weight decay decoupled, before the update: p ← p − η λ p.
KERAS = {"decoupled_weight_decay": True, "eps": KERAS_EPS}
#: a keyword left out (where an explicit None means something else than the default)
_DEFAULT: Any = object()


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum.

    torch flavor (Polyak 1964 heavy ball as torch writes it):

    .. math:: v_t = \mu v_{t-1} + (1-\tau) g_t,\quad
              p_t = p_{t-1} - \eta\,(g_t + \mu v_t \text{ if nesterov else } v_t)

    keras flavor, the classic form (Sutskever et al. 2013): :math:`v_t = \mu v_{t-1} + \eta g_t`,
    :math:`p_t = p_{t-1} - v_t` (Nesterov: :math:`- (\mu v_t + \eta g_t)`); both are equal for a
    constant η and differ under a learning-rate schedule.

    Full-batch gradient descent, mini-batch SGD and stochastic (batch size 1) SGD are the same
    optimizer fed by different data loaders.

    Defaults: torch ``lr=1e-3``; keras ``lr=0.01``. Others: ``momentum=0``, ``dampening=0``,
    ``nesterov=False``, ``weight_decay=0``. The keras flavor checks as Keras does: ``momentum``
    in [0, 1], and ``nesterov=True`` with ``momentum=0`` is allowed (it is plain SGD).
    """

    counts_steps = False  # torch's SGD keeps no "step" in its state
    FLAVOR_RANGES = {"keras": {"momentum": "[0, 1]"}}  # Keras' SGD refuses momentum outside

    DEFAULTS = {
        "torch": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False},
        "keras": {"lr": 1e-2, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                  "decoupled_weight_decay": True},
    }

    def __init__(self, params, lr: float | None = None, momentum: float | None = None,
                 dampening: float | None = None, weight_decay: float | None = None,
                 nesterov: bool | None = None, **options: Any):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        if flavor == "keras":  # Keras allows nesterov=True with momentum 0: plain SGD
            return chain(LearningRate(), Momentum(nesterov_needs_momentum=False))
        return chain(Momentum(), LearningRate())


class Adagrad(Optimizer):
    r"""Adagrad: a per-coordinate step size that shrinks with the sum of squared gradients.

    .. math:: s_t = s_{t-1} + g_t^2,\quad
              p_t = p_{t-1} - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}\,
                                  \frac{g_t}{\sqrt{s_t} + \epsilon}

    with :math:`s_0` = ``initial_accumulator_value``; the keras flavor uses
    :math:`\sqrt{s_t + \epsilon}`. Reference: Duchi, Hazan, Singer, JMLR 2011.

    Defaults: torch ``lr=1e-2, lr_decay=0, initial_accumulator_value=0, eps=1e-10``;
    keras ``lr=1e-3, initial_accumulator_value=0.1, eps=1e-7``.
    """

    DEFAULTS = {
        "torch": {"lr": 1e-2, "lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
        "keras": {"lr": 1e-3, "lr_decay": 0.0, "initial_accumulator_value": 0.1, **KERAS},
    }

    def __init__(self, params, lr: float | None = None, lr_decay: float | None = None,
                 weight_decay: float | None = None,
                 initial_accumulator_value: float | None = None, eps: float | None = None,
                 foreach: bool | None = None, **options: Any):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps,
                         foreach=foreach, **options)
        self.init_state()  # torch's Adagrad creates its state (step 0, the sum) at construction

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        eps = "inside_root" if flavor == "keras" else "after_root"
        return chain(Adapt("sum", decay=None, eps=eps, name="sum",
                           initial="initial_accumulator_value"), LearningRate())


class Adadelta(Optimizer):
    r"""Adadelta: RMS of past updates over RMS of gradients, so the step has the units of p.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad
        \Delta_t = \frac{\sqrt{a_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}}\, g_t,\quad
        a_t = \rho a_{t-1} + (1-\rho)\Delta_t^2,\quad p_t = p_{t-1} - \eta\Delta_t

    η is a multiplier: the paper has none (torch's default 1.0); Keras defaults to 1e-3.
    Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701.

    Defaults: torch ``lr=1.0, rho=0.9, eps=1e-6``; keras ``lr=1e-3, rho=0.95, eps=1e-7``.
    """

    DEFAULTS = {
        "torch": {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
        "keras": {"lr": 1e-3, "rho": 0.95, **KERAS},
    }

    def __init__(self, params, lr: float | None = None, rho: float | None = None,
                 eps: float | None = None, weight_decay: float | None = None,
                 foreach: bool | None = None, **options: Any):
        super().__init__(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                         foreach=foreach, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(Adapt("ema", decay="rho", eps="inside_root", name="square_avg"),
                     ScaleByUpdateRms("rho"), LearningRate())


class RMSprop(Optimizer):
    r"""RMSprop: divide by a decaying root mean square of the gradients.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,\quad
        d_t = \frac{g_t}{\sqrt{v_t - \bar g_t^2 \,[\text{centered}]} + \epsilon},\quad
        b_t = \mu b_{t-1} + d_t,\quad p_t = p_{t-1} - \eta b_t

    with :math:`\bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t`. The keras flavor puts ε inside
    the root and applies η before the momentum (:math:`b_t = \mu b_{t-1} + \eta d_t`).
    ``alpha`` is Keras' ``rho``. References: Tieleman & Hinton, Coursera lecture 6.5 (2012);
    centered: Graves, arXiv:1308.0850.

    Defaults: torch ``lr=1e-2, alpha=0.99, eps=1e-8``; keras ``lr=1e-3, alpha=0.9, eps=1e-7``;
    ``momentum=0, centered=False``.
    """

    DEFAULTS = {
        "torch": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False},
        "keras": {"lr": 1e-3, "alpha": 0.9, "momentum": 0.0, "centered": False, **KERAS},
    }

    def __init__(self, params, lr: float | None = None, alpha: float | None = None,
                 eps: float | None = None, weight_decay: float | None = None,
                 momentum: float | None = None, centered: bool | None = None,
                 capturable: bool = False, foreach: bool | None = None,
                 maximize: bool | None = None, differentiable: bool = False, **options: Any):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered, capturable=capturable,
                         foreach=foreach, maximize=maximize, differentiable=differentiable,
                         **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        if flavor == "keras":
            return chain(Adapt("ema", "alpha", eps="inside_root", name="square_avg"),
                         LearningRate(), Momentum())
        return chain(Adapt("ema", "alpha", eps="after_root", name="square_avg"),
                     Momentum(), LearningRate())


class Adam(Optimizer):
    r"""Adam: momentum and RMS adaptation, both bias-corrected.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\\
        p_t = p_{t-1} - \eta\,\frac{m_t / (1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    ``amsgrad`` uses :math:`\max_{i\le t} v_i` (Reddi, Kale, Kumar, ICLR 2018). The keras flavor
    adds ε before the bias correction, :math:`(\sqrt{v_t}+\epsilon)/\sqrt{1-\beta_2^t}`, and
    decays weights decoupled. ``decoupled_weight_decay=True`` is AdamW.
    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

    Defaults: ``lr=1e-3, betas=(0.9, 0.999)``; torch ``eps=1e-8``, keras ``eps=1e-7``.
    """

    DEFAULTS = {
        "torch": {"lr": 1e-3, "betas": BETAS, "eps": 1e-8, "amsgrad": False},
        "keras": {"lr": 1e-3, "betas": BETAS, "amsgrad": False, **KERAS},
    }

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = None, amsgrad: bool | None = None,
                 **options: Any):
        _check_tensor_arguments(lr, betas, options.get("foreach"), options.get("capturable"))
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        eps = "before_bias_correction" if flavor == "keras" else "after_root"
        return chain(AverageGradient("betas.0"),
                     Adapt("ema", "betas.1", bias_correction=True, eps=eps),
                     LearningRate())


def _check_tensor_arguments(lr: Any, betas: Any, foreach: Any, capturable: Any) -> None:
    """torch.optim.Adam's rules for Tensor arguments: ``betas`` both numbers or both Tensors,
    and no Tensor ``lr`` or ``betas`` with ``foreach=True`` unless capturable (which the base
    then refuses)."""
    foreach = foreach and not capturable
    if isinstance(lr, Tensor) and foreach:
        raise ValueError(f"lr={lr!r} as a Tensor is not supported with foreach=True (nor by "
                         f"torch.optim.Adam): give a float, or leave foreach out")
    if not isinstance(betas, tuple | list):
        return
    tensors = [isinstance(beta, Tensor) for beta in betas]
    if any(tensors) and not all(tensors):
        raise ValueError(f"betas={tuple(betas)!r} mixes numbers and Tensors: give both as numbers "
                         f"or both as 1-element Tensors (as torch.optim.Adam)")
    if any(tensors) and foreach:
        raise ValueError(f"betas={tuple(betas)!r} as Tensors are not supported with foreach=True "
                         f"(nor by torch.optim.Adam): give numbers, or leave foreach out")


class AdamW(Adam):
    r"""Adam with decoupled weight decay: :math:`p \leftarrow p(1-\eta\lambda)` before the step.

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    Defaults as :class:`Adam`, with ``weight_decay=1e-2`` (torch) or ``4e-3`` (keras); the
    keras flavor refuses ``weight_decay=None``, as Keras' AdamW.
    """

    DEFAULTS = {
        "torch": {**Adam.DEFAULTS["torch"], "weight_decay": 1e-2, "decoupled_weight_decay": True},
        "keras": {**Adam.DEFAULTS["keras"], "weight_decay": 4e-3},
    }

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = _DEFAULT, amsgrad: bool | None = None,
                 **options: Any):
        if weight_decay is None and options.get("flavor") == "keras":  # as Keras' AdamW
            raise ValueError("weight_decay=None is not allowed for AdamW in the keras flavor "
                             "(Keras raises): give a number >= 0, or leave it out for 0.004")
        super().__init__(params, lr=lr, betas=betas, eps=eps,
                         weight_decay=None if weight_decay is _DEFAULT else weight_decay,
                         amsgrad=amsgrad, **options)


class Adamax(Optimizer):
    r"""Adamax: Adam with the L∞ norm in place of the L2 statistic.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon),
        \quad p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{u_t}

    The keras flavor uses :math:`\max(\beta_2 u_{t-1}, |g_t|)` and divides by
    :math:`u_t + \epsilon`. Reference: Kingma & Ba, ICLR 2015, section 7.1.

    Defaults: torch ``lr=2e-3, eps=1e-8``; keras ``lr=1e-3, eps=1e-7``; ``betas=(0.9, 0.999)``.
    """

    DEFAULTS = {
        "torch": {"lr": 2e-3, "betas": BETAS, "eps": 1e-8},
        "keras": {"lr": 1e-3, "betas": BETAS, **KERAS},
    }

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = None, foreach: bool | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         foreach=foreach, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        eps = "after_root" if flavor == "keras" else "inside_root"
        return chain(AverageGradient("betas.0"), Adapt("max", "betas.1", eps=eps, name="exp_inf"),
                     LearningRate())


class NAdam(Optimizer):
    r"""Nadam: Adam with Nesterov momentum.

    .. math::
        \mu_t = \beta_1\bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr),\quad
        \hat m_t = \frac{(1-\mu_t)\, g_t}{1-\prod_{i\le t}\mu_i}
                 + \frac{\mu_{t+1} m_t}{1-\prod_{i\le t+1}\mu_i},\quad
        p_t = p_{t-1} - \eta\,\frac{\hat m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    with :math:`m_t, v_t` as in Adam and ψ = ``momentum_decay`` (torch 0.004; the keras flavor
    uses Keras' schedule 0.96^t, i.e. ψ = 1). ``decoupled_weight_decay=True`` is torch's NAdamW.
    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.

    Defaults: torch ``lr=2e-3, eps=1e-8, momentum_decay=4e-3``; keras ``lr=1e-3, eps=1e-7,
    momentum_decay=1``; ``betas=(0.9, 0.999)``.
    """

    DEFAULTS = {
        "torch": {"lr": 2e-3, "betas": BETAS, "eps": 1e-8, "momentum_decay": 4e-3},
        "keras": {"lr": 1e-3, "betas": BETAS, "momentum_decay": 1.0, **KERAS},
    }

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = None, momentum_decay: float | None = None,
                 decoupled_weight_decay: bool | None = None, **options: Any):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         momentum_decay=momentum_decay,
                         decoupled_weight_decay=decoupled_weight_decay, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(NesterovAverage("betas.0"),
                     Adapt("ema", "betas.1", bias_correction=True, eps="after_root"),
                     LearningRate())


Nadam = NAdam


class Nadamax(NAdam):
    r"""Nadamax: Nesterov momentum (as in :class:`NAdam`) with Adamax's L∞ adaptation.

    .. math:: p_t = p_{t-1} - \eta\,\hat m_t / u_t,\quad
              u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)

    with :math:`\hat m_t` of :class:`NAdam`. A combination torch and Keras lack, built from the
    same transforms. Defaults as :class:`NAdam`.
    """

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        eps = "after_root" if flavor == "keras" else "inside_root"
        return chain(NesterovAverage("betas.0"), Adapt("max", "betas.1", eps=eps, name="exp_inf"),
                     LearningRate())


#: The keras flavor of an optimizer Keras does not have (RAdam, Rprop, ASGD, LBFGS): torch's
#: algorithm and defaults, with Keras' conventions for what the base optimizer does (weight
#: decay decoupled, p ← p(1 − ηλ); Keras' clipping formulas), as Ftrl's torch flavor is Keras'
#: algorithm with torch's conventions.
KERAS_BASE = {"decoupled_weight_decay": True}


class RAdam(Optimizer):
    r"""RAdam: Adam whose adaptive step is switched on, and rectified, once its variance is
    tractable.

    .. math::
        m_t, v_t \text{ as Adam},\quad
        \rho_\infty = \frac{2}{1-\beta_2} - 1,\quad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t},\\
        p_t = p_{t-1} - \eta\,\frac{m_t}{1-\beta_1^t}\cdot\begin{cases}
            r_t\,\sqrt{1-\beta_2^t}/(\sqrt{v_t} + \epsilon) & \rho_t > 5\\
            1 & \text{else}\end{cases}

    with the rectification :math:`r_t` of :class:`~optimlab.optim.transforms.RectifiedAdapt`.
    ``decoupled_weight_decay=True`` is torch's RAdamW (p ← p(1 − ηλ) before the step).
    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020; equal to ``torch.optim.RAdam``.

    Defaults (both flavors): ``lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0``. Keras
    has no RAdam: the keras flavor is torch's algorithm with decoupled weight decay
    (:data:`KERAS_BASE`).
    """

    DEFAULTS = {
        "torch": {"lr": 1e-3, "betas": BETAS, "eps": 1e-8},
        "keras": {"lr": 1e-3, "betas": BETAS, "eps": 1e-8, **KERAS_BASE},
    }

    def __init__(self, params, lr: float | None = None,
                 betas: tuple[float, float] | None = None, eps: float | None = None,
                 weight_decay: float | None = None, decoupled_weight_decay: bool | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(AverageGradient("betas.0"), RectifiedAdapt("betas.1"), LearningRate())


class Rprop(Optimizer):
    r"""Rprop: resilient backpropagation, a step size per coordinate driven by gradient signs.

    .. math::
        s = \operatorname{sign}(g_t g_{t-1}),\quad
        \Delta_t = \operatorname{clip}(\Delta_{t-1}\cdot\{\eta^+, \eta^-, 1\}_s,
                                        \Delta_{\min}, \Delta_{\max}),\quad
        p_t = p_{t-1} - \operatorname{sign}(g_t)\,\Delta_t \;(0 \text{ where } s < 0)

    (:class:`~optimlab.optim.transforms.ResilientStep`). ``lr`` is the initial step size
    :math:`\Delta_0`, read when a parameter's state is created: a learning-rate schedule has no
    effect afterwards (as in torch). Rprop is meant for full-batch training.
    References: Riedmiller & Braun, ICNN 1993; the iRprop⁻ variant of Igel & Hüsken, 2000;
    equal to ``torch.optim.Rprop``.

    Defaults (both flavors): ``lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50)``; torch's Rprop
    has no weight decay, optimlab's base adds it (default 0). Keras has no Rprop: the keras
    flavor is torch's algorithm with decoupled weight decay (:data:`KERAS_BASE`).
    """

    DEFAULTS = {
        "torch": {"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50)},
        "keras": {"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50), **KERAS_BASE},
    }

    def __init__(self, params, lr: float | None = None,
                 etas: tuple[float, float] | None = None,
                 step_sizes: tuple[float, float] | None = None,
                 weight_decay: float | None = None, **options: Any):
        super().__init__(params, lr=lr, etas=etas, step_sizes=step_sizes,
                         weight_decay=weight_decay, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(ResilientStep())


class ASGD(Optimizer):
    r"""ASGD: averaged stochastic gradient descent, Bottou's decaying step size on the
    λ-regularized loss with Polyak–Juditsky averaging of the iterates.

    .. math::
        p_t = p_{t-1}(1 - \lambda\eta_t) - \eta_t g_t,\quad
        \eta_{t+1} = \frac{\text{lr}}{(1 + \lambda\,\text{lr}\,t)^\alpha},\quad
        \bar p_t = \bar p_{t-1} + \mu_t(p_t - \bar p_{t-1}),\quad
        \mu_{t+1} = \frac{1}{\max(1, t - t_0)}

    (:class:`~optimlab.optim.transforms.DecayingLearningRate`,
    :class:`~optimlab.optim.transforms.AverageIterates`). The averaged parameters are
    ``optimizer.state[p]["ax"]``; they do not enter the update. State as torch's ASGD: 0-d
    ``step``, ``eta``, ``mu`` in its scalar dtype and ``ax`` shaped like the parameter.
    References: Polyak & Juditsky, SIAM J. Control Optim. 1992; Bottou, "Stochastic Gradient
    Descent Tricks", 2012; equal to ``torch.optim.ASGD``.

    Defaults (both flavors): ``lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0``.
    Keras has no ASGD: the keras flavor is torch's algorithm with decoupled weight decay
    (:data:`KERAS_BASE`).
    """

    DEFAULTS = {
        "torch": {"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6},
        "keras": {"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6, **KERAS_BASE},
    }

    def __init__(self, params, lr: float | None = None, lambd: float | None = None,
                 alpha: float | None = None, t0: float | None = None,
                 weight_decay: float | None = None, foreach: bool | None = None,
                 maximize: bool | None = None, differentiable: bool = False,
                 capturable: bool = False, **options: Any):
        super().__init__(params, lr=lr, lambd=lambd, alpha=alpha, t0=t0,
                         weight_decay=weight_decay, foreach=foreach, maximize=maximize,
                         differentiable=differentiable, capturable=capturable, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(DecayingLearningRate(), AverageIterates())


#: name → constructor; ``momentum`` and ``nesterov`` are SGD with μ = 0.9.
REGISTRY: dict[str, Callable[..., Optimizer]] = {
    "sgd": SGD,
    "momentum": functools.partial(SGD, momentum=0.9),
    "nesterov": functools.partial(SGD, momentum=0.9, nesterov=True),
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    "adamax": Adamax,
    "nadam": NAdam,
    "nadamax": Nadamax,
    "ftrl": Ftrl,
    "radam": RAdam,
    "rprop": Rprop,
    "asgd": ASGD,
    "lbfgs": LBFGS,
    "schedulefree_adamw": ScheduleFreeAdamW,
    "schedulefree_sgd": ScheduleFreeSGD,
    "prodigy": Prodigy,
    "lion": Lion,
    "adabelief": AdaBelief,
    "yogi": Yogi,
    "adopt": ADOPT,
    "ademamix": AdEMAMix,
    "soap": SOAP,
    "lamb": Lamb,
    "lars": LARS,
    "muon": Muon,
    "adafactor": Adafactor,
}


def names(closure: bool = True, matrices: bool = True) -> list[str]:
    """The registered optimizer names, for :func:`get`; ``closure=False`` leaves out those
    whose ``step`` needs a closure (LBFGS), for training loops that call ``step()``;
    ``matrices=False`` those that take 2-D parameters only (Muon, whose other parameters go
    in an AdamW group: :func:`~optimlab.optim.muon_param_groups`), for loops that hand an
    optimizer all of a model's parameters or vectors (the 2-D surfaces)."""
    def needs(entry: Callable[..., Optimizer], what: str) -> bool:
        cls = entry.func if isinstance(entry, functools.partial) else entry
        return getattr(cls, what, False)
    return [name for name, entry in REGISTRY.items()
            if (closure or not needs(entry, "needs_closure"))
            and (matrices or not needs(entry, "needs_matrices"))]


def get(name: str, params, **kwargs: Any) -> Optimizer:
    """Build a registered optimizer by name: ``get("nadam", model.parameters(), lr=1e-3)``."""
    key = name.lower()
    if key not in REGISTRY:
        raise ValueError(unknown("optimizer", name, REGISTRY))
    return REGISTRY[key](params, **kwargs)
