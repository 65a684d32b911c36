"""Line search: the step size chosen at every step instead of fixed in advance.

* :class:`ArmijoLineSearch` — backtracking until the Armijo (sufficient decrease) condition
  holds; on mini-batches this is the stochastic line search of Vaswani et al. (NeurIPS 2019),
  on the full batch classic backtracking gradient descent (Nocedal & Wright, Algorithm 3.1).
* :class:`ExactLineSearch` — full-batch steepest descent with the 1-D minimization of
  φ(η) = f(θ − η∇f(θ)) done by bracketing and golden-section search.

Both take a ``closure`` that zeroes the gradients, computes the loss, calls ``backward`` and
returns the loss (torch's convention), and both stop (``converged``) when ‖θₖ₊₁ − θₖ‖ < ``step_tol``
or ‖∇f‖ < ``grad_tol``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["ArmijoLineSearch", "ExactLineSearch"]


def _number(loss) -> float:
    return loss.item() if torch.is_tensor(loss) else float(loss)


class _LineSearch(torch.optim.Optimizer):
    def __init__(self, params, defaults: dict, step_tol: float, grad_tol: float):
        for name, value in (("step_tol", step_tol), ("grad_tol", grad_tol)):
            if value < 0:
                raise ValueError(f"{name}={value!r} must be >= 0")
        super().__init__(params, defaults)
        self.step_tol, self.grad_tol = step_tol, grad_tol
        self.converged = False
        #: per step: {"lr", "loss", "new_loss", "grad_norm_sq", "evaluations"}
        self.log: list[dict[str, float]] = []

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _direction(self, closure) -> tuple[float, list[Tensor], list[Tensor], float]:
        with torch.enable_grad():
            loss = _number(closure())
        params = self._params()
        grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                 for p in params]
        start = [p.detach().clone() for p in params]
        return loss, start, grads, sum(float((g * g).sum()) for g in grads)

    @torch.no_grad()
    def _move(self, start: list[Tensor], grads: list[Tensor], lr: float) -> None:
        for p, p0, g in zip(self._params(), start, grads, strict=True):
            p.copy_(p0 - lr * g)

    def _evaluate(self, closure) -> float:
        with torch.enable_grad():
            return _number(closure())

    def _finish(self, grad_norm_sq: float, lr: float) -> None:
        moved = lr * math.sqrt(grad_norm_sq)
        self.converged = math.sqrt(grad_norm_sq) < self.grad_tol or moved < self.step_tol


class ArmijoLineSearch(_LineSearch):
    r"""Gradient steps whose size η satisfies the Armijo condition

    .. math:: f(\theta - \eta g) \le f(\theta) - c\,\eta\,\lVert g\rVert^2,

    found by backtracking η ← β·η from a trial step that is reset to ``lr`` (``reset="reset"``)
    or grown from the last accepted one, η ← min(γ·η_prev, ``lr``) (``reset="grow"``).

    Args:
        lr: the largest (first) trial step η_max > 0.
        c: sufficient-decrease constant in (0, 1).
        beta: backtracking factor in (0, 1).
        gamma: growth factor ≥ 1 for ``reset="grow"``.
        max_backtracks: give up (take the smallest tried step) after this many.
    """

    def __init__(self, params, lr: float = 1.0, *, c: float = 0.1, beta: float = 0.5,
                 gamma: float = 2.0, reset: str = "grow", max_backtracks: int = 50,
                 step_tol: float = 0.0, grad_tol: float = 0.0):
        checks = (("lr", lr, lr > 0, "> 0"), ("c", c, 0 < c < 1, "in (0, 1)"),
                  ("beta", beta, 0 < beta < 1, "in (0, 1)"), ("gamma", gamma, gamma >= 1, ">= 1"))
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={value!r} is out of range: must be {allowed}")
        if reset not in ("grow", "reset"):
            raise ValueError(f"reset={reset!r} must be 'grow' or 'reset'")
        super().__init__(params, {"lr": lr, "c": c, "beta": beta, "gamma": gamma},
                         step_tol, grad_tol)
        self.reset, self.max_backtracks = reset, max_backtracks
        self.last_lr: float | None = None

    def step(self, closure: Callable[[], Tensor]) -> float:  # type: ignore[override]
        if closure is None:
            raise ValueError("ArmijoLineSearch.step needs a closure that returns the loss")
        group = self.param_groups[0]
        loss, start, grads, gg = self._direction(closure)
        lr = group["lr"] if self.reset == "reset" or self.last_lr is None \
            else min(group["lr"], group["gamma"] * self.last_lr)
        evaluations = 1
        for _ in range(self.max_backtracks):
            self._move(start, grads, lr)
            new_loss = self._evaluate(closure)
            evaluations += 1
            if new_loss <= loss - group["c"] * lr * gg:
                break
            lr *= group["beta"]
        self.last_lr = lr
        self.log.append({"lr": lr, "loss": loss, "new_loss": new_loss, "grad_norm_sq": gg,
                         "evaluations": evaluations, "c": group["c"]})
        self._finish(gg, lr)
        return loss


class ExactLineSearch(_LineSearch):
    """Steepest descent with η = argmin φ(η), φ(η) = f(θ − η g), for full-batch objectives.

    The minimum is bracketed by doubling from ``lr`` and located by golden-section search to a
    relative tolerance ``tol``.
    """

    GOLDEN = (math.sqrt(5) - 1) / 2

    def __init__(self, params, lr: float = 1.0, *, tol: float = 1e-8, max_evaluations: int = 200,
                 step_tol: float = 0.0, grad_tol: float = 0.0):
        if not lr > 0:
            raise ValueError(f"lr={lr!r} is out of range: must be > 0")
        super().__init__(params, {"lr": lr}, step_tol, grad_tol)
        self.tol, self.max_evaluations = tol, max_evaluations

    def step(self, closure: Callable[[], Tensor]) -> float:  # type: ignore[override]
        if closure is None:
            raise ValueError("ExactLineSearch.step needs a closure that returns the loss")
        loss, start, grads, gg = self._direction(closure)
        evaluations = [0]

        def phi(lr: float) -> float:
            evaluations[0] += 1
            self._move(start, grads, lr)
            return self._evaluate(closure)

        # bracket [a, b] around the minimum by doubling
        a, b = 0.0, self.param_groups[0]["lr"]
        fb = phi(b)
        while fb < loss and evaluations[0] < self.max_evaluations:
            a, b = b, 2 * b
            loss_a, fb = fb, phi(b)
            if fb > loss_a:
                a = a / 2
                break
        lo, hi = (0.0, b) if a == 0 else (a, b)
        x1, x2 = hi - self.GOLDEN * (hi - lo), lo + self.GOLDEN * (hi - lo)
        f1, f2 = phi(x1), phi(x2)
        while hi - lo > self.tol * max(1.0, hi) and evaluations[0] < self.max_evaluations:
            if f1 < f2:
                hi, x2, f2 = x2, x1, f1
                x1 = hi - self.GOLDEN * (hi - lo)
                f1 = phi(x1)
            else:
                lo, x1, f1 = x1, x2, f2
                x2 = lo + self.GOLDEN * (hi - lo)
                f2 = phi(x2)
        lr = x1 if f1 < f2 else x2
        new_loss = phi(lr)
        self.log.append({"lr": lr, "loss": loss, "new_loss": new_loss, "grad_norm_sq": gg,
                         "evaluations": evaluations[0] + 1})
        self._finish(gg, lr)
        return loss
