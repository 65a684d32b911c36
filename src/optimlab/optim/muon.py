"""Muon: momentum orthogonalized by Newton–Schulz for the hidden weight matrices, and the
combined form that updates the other parameters with AdamW in the same optimizer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .optimizer import Optimizer
from .transforms import (
    AdjustedLearningRate,
    AverageGradient,
    Chain,
    Momentum,
    Orthogonalize,
    Select,
    chain,
)

__all__ = ["Muon", "muon_param_groups", "ALGORITHMS", "NS_COEFFICIENTS"]

#: Keller Jordan's quintic coefficients (a, b, c), torch's and Keras' default.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
#: the values of a param group's ``algorithm``.
ALGORITHMS = ("muon", "adamw")
#: what an ``algorithm="adamw"`` group takes for the AdamW keys it does not set (its ``lr``
#: is the optimizer's): torch.optim.AdamW's defaults, and Keras' Muon's for its Adam step.
ADAMW_DEFAULTS = {
    "torch": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False},
    "keras": {"betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.004, "amsgrad": False},
}


class Muon(Optimizer):
    r"""Muon: SGD momentum whose update is orthogonalized, for 2-D hidden-layer weights.

    torch flavor, equal to ``torch.optim.Muon`` (torch 2.9+): with μ = ``momentum``,

    .. math::
        B_t = \mu B_{t-1} + (1-\mu)\, g_t, \qquad
        \tilde B_t = \begin{cases} g_t + \mu (B_t - g_t) & \text{nesterov} \\
                                   B_t & \text{else} \end{cases}, \\
        O_t = \mathrm{NS}^{(a,b,c)}_k(\tilde B_t;\ \epsilon), \qquad
        \theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta\, r(A, B)\, O_t

    — the momentum as torch's Muon computes it (``buf.lerp_(g, 1 − μ)``,
    ``g.lerp(buf, μ)``), NS the quintic Newton–Schulz iteration
    (:func:`~optimlab.optim.transforms.newton_schulz`) run in **bfloat16** as torch runs it
    (so a float64 Muon is not more precise than a float32 one), and r the learning-rate
    adjustment by the matrix's shape A × B (``adjust_lr_fn``: None/"original"
    :math:`\sqrt{\max(1, A/B)}`, "match_rms_adamw" :math:`0.2\sqrt{\max(A, B)}`). Weight
    decay is decoupled, by the unadjusted η, as torch. The chain:
    ``AverageGradient("momentum", nesterov=...)``, ``Orthogonalize()``,
    ``AdjustedLearningRate()``.

    keras flavor, equal to ``keras.optimizers.Muon``'s Muon step (Keras 3): heavy-ball momentum
    :math:`B_t = \mu B_{t-1} + g_t`, nesterov :math:`g_t + \mu B_t`
    (:class:`~optimlab.optim.transforms.Momentum`), the iteration in the parameter's own dtype
    with :math:`X_0 = G/(\lVert G\rVert_F + \epsilon)`, the update scaled by
    :math:`0.2\sqrt{\max(A, B)}`, the root rounded to float32 as Keras does (Keras'
    ``rms_rate=0.2``: ``adjust_lr_fn="match_rms_adamw"``, the flavor's default), Keras'
    decoupled decay; measured equal to Keras' to 5e-7 of the step per update in float64 (a
    float32 rounding inside Keras' step not otherwise located). Keras' names map to these:
    ``muon_a/b/c`` → ``ns_coefficients``, ``rms_rate=0.2`` → ``adjust_lr_fn="match_rms_adamw"``
    (other rates and ``rms_rate=None`` are not offered). Keras' Muon sends non-2-D variables and
    embeddings to its own Adam step by itself; here they go in an ``algorithm="adamw"`` group
    (below), whose keras-flavor chain is Keras' Adam step (ε before the bias correction, Keras'
    Muon's ``epsilon=1e-7`` and ``adam_weight_decay=0.004``; equal to Keras' with its default
    ``adam_lr_ratio=1``).

    **Only 2-D parameters**, as torch's Muon: others raise a ``ValueError``. Muon is meant for
    the hidden weight matrices; embeddings, biases, norms and the output head are better
    trained by AdamW. Both in one optimizer (one ``step()``, one ``state_dict()``): give those
    in a param group with ``"algorithm": "adamw"``, which that group's parameters then follow,
    equal to ``torch.optim.AdamW`` with the group's ``lr``, ``betas``, ``eps``,
    ``weight_decay`` and ``amsgrad`` (not given: the optimizer's ``lr`` and AdamW's defaults
    (0.9, 0.999), 1e-8, 1e-2, False; keras flavor ε = 1e-7, λ = 0.004).
    :func:`muon_param_groups` splits a model so::

        opt = Muon(muon_param_groups(model, adamw={"lr": 3e-4}), lr=0.02)

    Defaults: ``lr=1e-3``, ``momentum=0.95``, ``nesterov=True``,
    ``ns_coefficients=(3.4445, -4.7750, 2.0315)``, ``eps=1e-7``, ``ns_steps=5``; torch
    ``weight_decay=0.1``, ``adjust_lr_fn=None``; keras ``weight_decay=0.004``,
    ``adjust_lr_fn="match_rms_adamw"``. ``momentum`` must be in [0, 1) (torch's Muon also
    accepts larger values, which make the average meaningless), ``ns_steps`` an integer in
    [0, 100). Complex parameters raise a ``RuntimeError`` at the step, as torch's.

    References: Jordan, Jin, Boza, You, Cesista, Newhouse, Bernstein, "Muon: An optimizer for
    hidden layers in neural networks" (2024), kellerjordan.github.io/posts/muon; Liu et al.,
    "Muon is Scalable for LLM Training", arXiv:2502.16982 (the "match_rms_adamw" scaling);
    torch.optim.Muon; keras.optimizers.Muon.
    """

    FLAVOR_RANGES = {"keras": {"momentum": "[0, 1]"}}
    needs_matrices = True  # in its "muon" groups; names(matrices=False) leaves it out

    DEFAULTS = {
        "torch": {"lr": 1e-3, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True,
                  "ns_coefficients": NS_COEFFICIENTS, "eps": 1e-7, "ns_steps": 5,
                  "adjust_lr_fn": None, "decoupled_weight_decay": True, "algorithm": "muon"},
        "keras": {"lr": 1e-3, "weight_decay": 0.004, "momentum": 0.95, "nesterov": True,
                  "ns_coefficients": NS_COEFFICIENTS, "eps": 1e-7, "ns_steps": 5,
                  "adjust_lr_fn": "match_rms_adamw", "decoupled_weight_decay": True,
                  "algorithm": "muon"},
    }

    def __init__(self, params, lr: float | Tensor | None = None,
                 weight_decay: float | None = None, momentum: float | None = None,
                 nesterov: bool | None = None,
                 ns_coefficients: tuple[float, float, float] | None = None,
                 eps: float | None = None, ns_steps: int | None = None,
                 adjust_lr_fn: str | None = None, **options: Any):
        super().__init__(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                         nesterov=nesterov, ns_coefficients=ns_coefficients, eps=eps,
                         ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn, **options)

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        from .zoo import Adam  # zoo registers Muon

        if flavor == "keras":
            muon = [Momentum(nesterov_needs_momentum=False),
                    Orthogonalize(dtype=None, normalization="add"),
                    AdjustedLearningRate(float32_root=True)]
        else:
            muon = [AverageGradient("momentum", bias_correction=False, name="momentum_buffer",
                                    nesterov="nesterov"),
                    Orthogonalize(), AdjustedLearningRate()]
        return chain(Select("algorithm", {"muon": muon, "adamw": Adam.transforms(flavor)},
                            default="muon"))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's, with an ``algorithm="adamw"`` group completed by AdamW's defaults (see the
        class docstring), and Muon's groups checked to hold 2-D parameters only."""
        if param_group.get("algorithm") == "adamw":
            flavor = getattr(self, "flavor", "torch")
            param_group = {**ADAMW_DEFAULTS[flavor], **param_group}
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        param_group = {**param_group, "params": params}
        if param_group.get("algorithm", self.defaults.get("algorithm")) == "muon":
            self._check_matrices(params)
        super().add_param_group(param_group)

    @staticmethod
    def _check_matrices(params: list) -> None:
        for p in params:
            if isinstance(p, Tensor) and p.dim() != 2:
                raise ValueError(
                    f"Muon only supports 2D parameters (the hidden layers' weight matrices), "
                    f"got a parameter of shape {tuple(p.shape)}: put the others (biases, "
                    f"norms, embeddings, the output head) in a param group with "
                    f"'algorithm': 'adamw', e.g. Muon(muon_param_groups(model)) "
                    f"(optimlab.optim.muon_param_groups)")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        for group in self.param_groups:
            if group["algorithm"] == "muon" and any(
                    p.grad is not None and p.is_complex() for p in group["params"]):
                raise RuntimeError("Muon does not support complex parameters (split them with "
                                   "torch.view_as_real)")
        return super().step(closure)


def muon_param_groups(model: nn.Module, adamw: Mapping[str, Any] | None = None,
                      muon: Mapping[str, Any] | None = None, exclude: Iterable[str] = (),
                      head: str | None = "auto") -> list[dict[str, Any]]:
    """A model's parameters as :class:`Muon`'s two kinds of param group: the hidden weight
    matrices for Muon, the rest for AdamW. Frozen parameters are included, as
    ``model.parameters()`` includes them for torch.optim: they are skipped while they have no
    gradient and train once unfrozen (fine-tuning that unfreezes layers later).

    A parameter goes to the AdamW group (``"algorithm": "adamw"``, with ``adamw``'s entries)
    if it is not 2-D (biases, norms, convolution kernels), belongs to an ``nn.Embedding``
    (or a module whose class name contains "Embedding"), to the output head, or has a
    qualified name (``model.named_parameters()``) that matches one of the regular expressions
    ``exclude`` (Keras' ``exclude_layers``); the others go to the Muon group (with
    ``muon``'s entries). ``head``: the name of the output module (``"lm_head"``),
    ``"auto"`` for the last ``nn.Linear`` registered in the model, or None for none. A
    parameter shared by two modules (tied embeddings) is listed once; empty groups are left
    out. A model with parameters not yet initialized (LazyModules) is refused with a
    ``ValueError``: the grouping needs their shapes, known after a dry run.
    """
    modules = dict(model.named_modules())
    if head == "auto":
        linear = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
        head = linear[-1] if linear else None
    elif head is not None and head not in modules:
        raise ValueError(f"head={head!r} is not a module of the model: choose one of "
                         f"{', '.join(n for n in modules if n)}, 'auto' or None")
    lazy = [name for name, p in model.named_parameters()
            if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise ValueError(
            f"the parameters {', '.join(lazy)} are not initialized yet (a LazyModule), and "
            f"which group a parameter goes to depends on its shape: run the model once on a "
            f"batch (a dry run) before muon_param_groups(model)")
    patterns = [re.compile(pattern) for pattern in exclude]
    hidden: list[Tensor] = []
    rest: list[Tensor] = []
    seen: set[int] = set()
    for owner, module in modules.items():
        embedding = "Embedding" in type(module).__name__
        for local, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            name = f"{owner}.{local}" if owner else local
            to_adamw = (p.dim() != 2 or embedding or owner == head
                        or any(pattern.search(name) for pattern in patterns))
            (rest if to_adamw else hidden).append(p)
    groups = []
    if hidden:
        groups.append({"params": hidden, **(muon or {})})
    if rest:
        groups.append({"params": rest, **(adamw or {}), "algorithm": "adamw"})
    return groups
