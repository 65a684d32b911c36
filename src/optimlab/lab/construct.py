"""How the lab builds a registered optimizer on a problem, and whether it can at all.

* :func:`build` — ``optimlab.optim.get`` on the problem's parameters, except that a *model*
  given to an optimizer with a combined form (Muon: its orthogonalized update for the hidden
  weight matrices, AdamW for embeddings, the output head, norms and biases) is handed to that
  form's parameter-group helper in :mod:`optimlab.optim`, when the registry provides one
  (:data:`COMBINED`); a model whose every parameter the helper hands to the other algorithm
  (a logistic regression, embeddings alone: no hidden matrix for Muon) raises a
  ``ValueError``, so that the optimizer is not applicable there rather than run under its name
  as AdamW. Bare tensors (a 2-D surface's θ) always get the optimizer itself.
* :func:`not_applicable` — whether an optimizer has a meaning on a problem: it is built (with
  its defaults) on a copy of the problem's parameters and takes one step with gradients of
  ones; a ``ValueError`` — e.g. Muon refusing a parameter that is not a matrix — makes it not
  applicable, and its message is the reason. The problem's own tensors are never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from .. import optim
from ..naming import unknown
from ..optim.stepping import mode, step

__all__ = ["COMBINED", "build", "not_applicable", "parameters"]

#: registry name → the name, in :mod:`optimlab.optim`, of its parameter-group helper: a
#: function ``helper(model) → param groups`` that ``optim.get(name, groups)`` accepts, the
#: groups for the optimizer's own algorithm without an ``"algorithm"`` key (or with the
#: name), the others with ``"algorithm": "adamw"`` (``muon_param_groups(model)``: its
#: defaults, ``head="auto"``, every group at the optimizer's lr). Used only where
#: :mod:`optimlab.optim` has the helper (``getattr``).
COMBINED = {"muon": "muon_param_groups"}


def _known(name: str) -> str:
    key = name.lower()
    if key not in optim.REGISTRY:
        raise ValueError(unknown("optimizer", name, optim.REGISTRY))
    return key


def build(name: str, target: nn.Module | Iterable[Tensor], **kwargs: Any) -> optim.Optimizer:
    """The registry optimizer ``name`` on ``target`` (a model or its tensors), with ``kwargs``
    (lr, flavor, ...); a model gets the optimizer's combined form where one exists."""
    return optim.get(_known(name), parameters(name, target), **kwargs)


def parameters(name: str, target: nn.Module | Iterable[Tensor]) -> Any:
    """What the registry optimizer ``name`` is built on for ``target``: a model's param groups
    of the optimizer's combined form where one exists (:data:`COMBINED`), else the tensors."""
    key = _known(name)
    if isinstance(target, nn.Module):
        helper = getattr(optim, COMBINED[key], None) if key in COMBINED else None
        params = helper(target) if callable(helper) else target.parameters()
        if callable(helper):
            params = list(params)
            algorithms = [g.get("algorithm", key) if isinstance(g, dict) else key
                          for g in params]
            if key not in algorithms:
                raise ValueError(f"{COMBINED[key]} leaves {key} no parameter of the model (no "
                                 f"hidden-layer weight matrix; all go to "
                                 f"{', '.join(sorted(set(algorithms))) or 'no group'})")
    else:
        params = target
    return params


def not_applicable(name: str, target: nn.Module | Iterable[Tensor], **kwargs: Any
                   ) -> str | None:
    """``None`` when ``name`` applies to ``target``'s parameters, else why not (the
    ``ValueError`` its construction or first step raised on a copy of them).

    Raises ValueError for a name that is not in the registry."""
    _known(name)
    if isinstance(target, nn.Module):
        twin: nn.Module | list[Tensor] = copy.deepcopy(target)
    else:
        twin = [nn.Parameter(t.detach().clone()) for t in target]
    try:
        opt = build(name, twin, **kwargs)
        params = [p for group in opt.param_groups for p in group["params"]]

        def closure() -> Tensor:
            for p in params:
                p.grad = torch.ones_like(p)
            return torch.zeros(())

        closure()
        mode(opt, training=True)
        step(opt, closure)
    except ValueError as error:
        return str(error)
    return None
