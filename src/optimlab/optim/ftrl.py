"""FTRL-Proximal: follow the regularized leader, the optimizer of large sparse linear models.

Its update solves for the new parameter in closed form rather than stepping along a direction,
so it is one transform that returns ``p − p_new``; the formula is Keras' ``Ftrl``.
"""

from __future__ import annotations

from typing import Any

import torch

from .optimizer import Optimizer
from .transforms import NONNEGATIVE, Chain, Transform, chain

__all__ = ["FtrlProximal", "Ftrl"]


class FtrlProximal(Transform):
    r"""The FTRL-Proximal update (McMahan et al., KDD 2013, Algorithm 1, per coordinate).

    With :math:`n` the accumulator, :math:`z` the linear term, c = −``lr_power``,
    :math:`\lambda_2' = \lambda_2 + \beta/(2\eta)` and :math:`\tilde g = g + 2\lambda_s p`:

    .. math::
        n_t = n_{t-1} + g_t^2,\quad
        z_t = z_{t-1} + \tilde g_t - \frac{n_t^{c} - n_{t-1}^{c}}{\eta}\, p_{t-1},\quad
        p_t = \frac{\operatorname{clip}(z_t, -\lambda_1, \lambda_1) - z_t}
                   {n_t^{c}/\eta + 2\lambda_2'}

    State: ``accumulator`` (starts at ``initial_accumulator_value``), ``linear``.
    """

    hyperparameters = {"lr": "(0, inf)", "lr_power": "(-inf, 0]",
                       "initial_accumulator_value": NONNEGATIVE, "l1": NONNEGATIVE,
                       "l2": NONNEGATIVE, "l2_shrinkage": NONNEGATIVE, "beta": NONNEGATIVE}
    state = ("accumulator", "linear")

    def init(self, p, hp):
        return {"accumulator": torch.full_like(p, hp["initial_accumulator_value"]),
                "linear": torch.zeros_like(p)}

    def prepare(self, s, hp, step):
        return {"sqrt": hp["lr_power"] == -0.5}  # n^½ as a square root, not a general power

    def update(self, u, g, s, p, hp, c):
        lr, power = hp["lr"], -hp["lr_power"]
        l1, l2 = hp["l1"], hp["l2"] + hp["beta"] / (2.0 * lr)
        n, z = s["accumulator"], s["linear"]
        n_new = n.addcmul(g, g)
        shrunk = g + (2 * hp["l2_shrinkage"]) * p if hp.on("l2_shrinkage") else g
        root_new, root = (n_new.sqrt(), n.sqrt()) if c["sqrt"] else (n_new.pow(power),
                                                                      n.pow(power))
        z.add_(shrunk).sub_(root_new.sub(root).div_(lr).mul_(p))
        quadratic = root_new.div_(lr).add_(2 * l2)
        p_new = z.clamp(-l1, l1).sub_(z).div_(quadratic)
        n.copy_(n_new)
        return p - p_new


class Ftrl(Optimizer):
    r"""FTRL-Proximal with L1, L2 and L2-shrinkage regularization; equal to Keras' ``Ftrl``.

    See :class:`FtrlProximal` for the update. ``lr_power=-0.5`` gives the usual
    :math:`\eta/\sqrt{n}` per-coordinate rate; ``l1 > 0`` makes coordinates exactly zero.
    Reference: McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013.

    Defaults (both flavors, Keras'): ``lr=1e-3, lr_power=-0.5, initial_accumulator_value=0.1,
    l1=0, l2=0, l2_shrinkage=0, beta=0``.
    """

    _KERAS = {"lr": 1e-3, "lr_power": -0.5, "initial_accumulator_value": 0.1, "l1": 0.0,
              "l2": 0.0, "l2_shrinkage": 0.0, "beta": 0.0}
    DEFAULTS = {"torch": _KERAS, "keras": {**_KERAS, "decoupled_weight_decay": True}}

    def __init__(self, params, lr: float | None = None, lr_power: float | None = None,
                 initial_accumulator_value: float | None = None, l1: float | None = None,
                 l2: float | None = None, l2_shrinkage: float | None = None,
                 beta: float | None = None, weight_decay: float | None = None,
                 **options: Any):
        super().__init__(params, lr=lr, lr_power=lr_power,
                         initial_accumulator_value=initial_accumulator_value, l1=l1, l2=l2,
                         l2_shrinkage=l2_shrinkage, beta=beta, weight_decay=weight_decay,
                         **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain(FtrlProximal())
