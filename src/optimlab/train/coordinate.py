"""Coordinate and block-coordinate descent, and sparse coding / dictionary learning.

Dictionary learning minimizes J(H, W) = ½‖X − HW‖²_F + α‖H‖₁ over codes H (samples × atoms)
and a dictionary W (atoms × features) with unit-norm-bounded atoms, by alternating the two
convex sub-problems — the codes by coordinate descent (or ISTA), the dictionary by exact
block coordinate descent over the atoms — each of which never increases J (Mairal et al.,
JMLR 2010; scikit-learn's DictionaryLearning(fit_algorithm="cd") minimizes the same J).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["BlockCoordinateDescent", "DictionaryLearning", "sparse_code", "objective"]


class BlockCoordinateDescent:
    """Minimize over one block of parameters at a time, the others held fixed.

    Args:
        blocks: name → parameters of that block.
        inner: ``inner(params) → torch optimizer`` used for ``inner_steps`` steps on a block, or
            None when ``solvers`` gives an exact minimizer for every block.
        solvers: name → ``solver()`` that sets that block to its exact minimizer in place.
        order: ``"cyclic"`` or ``"random"`` (a random permutation each sweep, seeded).
    """

    def __init__(self, blocks: Mapping[str, Sequence[Tensor]],
                 inner: Callable[[list[Tensor]], torch.optim.Optimizer] | None = None, *,
                 solvers: Mapping[str, Callable[[], None]] | None = None,
                 order: str = "cyclic", inner_steps: int = 1, seed: int = 0):
        if order not in ("cyclic", "random"):
            raise ValueError(f"order={order!r} must be 'cyclic' or 'random'")
        solvers = dict(solvers or {})
        missing = [n for n in blocks if n not in solvers]
        if inner is None and missing:
            raise ValueError(f"blocks {missing} have no exact solver: pass inner=")
        self.blocks = {name: list(params) for name, params in blocks.items()}
        self.solvers, self.order, self.inner_steps = solvers, order, inner_steps
        self.optimizers = {n: inner(self.blocks[n]) for n in missing} if inner else {}
        self.random = random.Random(seed)
        self.visits: list[str] = []

    def sweep(self, closure: Callable[[], Tensor]) -> None:
        """One pass over every block; ``closure`` zeroes grads, computes the loss, backward."""
        names = list(self.blocks)
        if self.order == "random":
            self.random.shuffle(names)
        for name in names:
            self.visits.append(name)
            if name in self.solvers:
                with torch.no_grad():
                    self.solvers[name]()
                continue
            others = [p for n, ps in self.blocks.items() if n != name for p in ps]
            flags = [p.requires_grad for p in others]
            for p in others:
                p.requires_grad_(False)
            try:
                for _ in range(self.inner_steps):
                    self.optimizers[name].step(closure)
            finally:
                for p, flag in zip(others, flags, strict=True):
                    p.requires_grad_(flag)


def objective(x: Tensor, codes: Tensor, dictionary: Tensor, alpha: float) -> float:
    """½‖X − HW‖²_F + α‖H‖₁ (scikit-learn's dictionary-learning cost)."""
    residual = x - codes @ dictionary
    return float(0.5 * (residual**2).sum() + alpha * codes.abs().sum())


def _soft(z: Tensor, threshold) -> Tensor:
    return torch.sign(z) * torch.clamp(z.abs() - threshold, min=0)


def sparse_code(x: Tensor, dictionary: Tensor, alpha: float, codes: Tensor | None = None, *,
                method: str = "cd", iterations: int = 50) -> Tensor:
    """Codes H minimizing ½‖X − HW‖² + α‖H‖₁ for a fixed dictionary, warm-started from
    ``codes``: exact coordinate descent over the atoms (``"cd"``) or ISTA with step 1/L
    (``"ista"``); both are monotone."""
    h = torch.zeros(x.shape[0], dictionary.shape[0], dtype=x.dtype) if codes is None \
        else codes.clone()
    if method == "ista":
        lipschitz = torch.linalg.matrix_norm(dictionary, ord=2) ** 2
        for _ in range(iterations):
            gradient = (h @ dictionary - x) @ dictionary.T
            h = _soft(h - gradient / lipschitz, alpha / lipschitz)
        return h
    if method != "cd":
        raise ValueError(f"method={method!r} must be 'cd' or 'ista'")
    gram = dictionary @ dictionary.T
    correlation = x @ dictionary.T
    for _ in range(iterations):
        for k in range(dictionary.shape[0]):
            norm = gram[k, k]
            if norm <= 0:
                continue
            # correlation of the residual without atom k, for every sample at once
            rho = correlation[:, k] - h @ gram[:, k] + h[:, k] * norm
            h[:, k] = _soft(rho, alpha) / norm
    return h


def update_dictionary(x: Tensor, codes: Tensor, dictionary: Tensor) -> Tensor:
    """Exact block coordinate descent over the atoms: each atom k is the minimizer of
    ‖R_k − h_k w‖² over ‖w‖ ≤ 1, i.e. the projection of h_kᵀR_k/‖h_k‖² on the unit ball."""
    w = dictionary.clone()
    residual = x - codes @ w
    for k in range(w.shape[0]):
        h = codes[:, k]
        energy = h @ h
        if energy <= 0:
            continue
        residual += torch.outer(h, w[k])
        atom = h @ residual / energy
        w[k] = atom / max(1.0, float(torch.linalg.vector_norm(atom)))
        residual -= torch.outer(h, w[k])
    return w


@dataclass
class DictionaryLearning:
    """Alternating minimization of J(H, W) = ½‖X − HW‖²_F + α‖H‖₁ with ‖W_k‖ ≤ 1.

    ``fit(x, dictionary, codes)`` records J after every half-step in :attr:`objectives`
    (never increasing) and stops when the relative decrease of a full iteration is < ``tol``.
    """

    alpha: float = 1.0
    max_iter: int = 100
    tol: float = 1e-8
    code_method: str = "cd"
    code_iterations: int = 20
    objectives: list[float] = field(default_factory=list)

    def fit(self, x: Tensor, dictionary: Tensor, codes: Tensor | None = None
            ) -> tuple[Tensor, Tensor]:
        if not self.alpha >= 0:
            raise ValueError(f"alpha={self.alpha!r} must be >= 0")
        w = dictionary.clone()
        h = torch.zeros(x.shape[0], w.shape[0], dtype=x.dtype) if codes is None else codes.clone()
        self.objectives = [objective(x, h, w, self.alpha)]
        for _ in range(self.max_iter):
            h = sparse_code(x, w, self.alpha, h, method=self.code_method,
                            iterations=self.code_iterations)
            self.objectives.append(objective(x, h, w, self.alpha))
            w = update_dictionary(x, h, w)
            self.objectives.append(objective(x, h, w, self.alpha))
            before, after = self.objectives[-3], self.objectives[-1]
            if before - after <= self.tol * max(abs(before), 1e-300):
                break
        self.codes_, self.dictionary_ = h, w
        return h, w
