"""Line search: the step size chosen at every step instead of fixed in advance.

* :class:`ArmijoLineSearch` — backtracking until the Armijo (sufficient decrease) condition
  holds; on mini-batches this is the stochastic line search of Vaswani et al. (NeurIPS 2019),
  on the full batch classic backtracking gradient descent (Nocedal & Wright, Algorithm 3.1).
* :class:`ExactLineSearch` — full-batch steepest descent with the 1-D minimization of
  φ(η) = f(θ − η∇f(θ)) done by bracketing and golden-section search.
* :func:`strong_wolfe` — a step satisfying the strong Wolfe conditions (bracketing and cubic
  zoom, Nocedal & Wright Algorithms 3.5–3.6), the line search of :class:`~optimlab.optim.LBFGS`.

The two classes take a ``closure`` that zeroes the gradients, computes the loss, calls
``backward`` and returns the loss (torch's convention), and stop (``converged``) when
‖θₖ₊₁ − θₖ‖ < ``step_tol`` or ‖∇f‖ < ``grad_tol``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["ArmijoLineSearch", "ExactLineSearch", "strong_wolfe", "cubic_interpolate"]


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


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimizer of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clipped
    to ``bounds`` (default: between x1 and x2); their midpoint where the cubic has none.

    Nocedal & Wright, "Numerical Optimization" (2nd ed.), eq. 3.59; written as torch's LBFGS
    (ported from minFunc's ``polyinterp``) writes it, so that the numbers are equal.
    """
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if not d2_square >= 0:  # no minimizer (or NaN): the midpoint
        return (low + high) / 2.0
    d2 = d2_square.sqrt()
    if x1 <= x2:
        minimum = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        minimum = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(minimum, low), high)


def strong_wolfe(evaluate, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                 max_ls=25):
    r"""A step length t along ``d`` satisfying the strong Wolfe conditions

    .. math:: f(x + t d) \le f(x) + c_1 t\, g^\top d, \qquad
              |\nabla f(x + t d)^\top d| \le -c_2\, g^\top d,

    by bracketing (growing t by cubic interpolation, at most 10× per trial) and zooming
    (cubic interpolation inside the bracket, kept 10% away from its ends when progress
    stalls) — Nocedal & Wright, "Numerical Optimization" (2nd ed.), Algorithms 3.5 and 3.6, as
    torch's ``LBFGS`` implements them (torch/optim/lbfgs.py ``_strong_wolfe``, itself ported
    from Torch7's ``lswolfe``): the same trials in the same order, so the numbers are equal.

    Args:
        evaluate: ``evaluate(x, t, d)`` → (loss as a float, flat gradient) at x + t·d; it must
            leave the parameters at ``x``.
        x: what ``evaluate`` restores the parameters from.
        t: the first trial step; d: the direction; f, g, gtd: loss, flat gradient and
            directional derivative gᵀd at x (gtd < 0).
        c1, c2: the sufficient-decrease and curvature constants, 0 < c1 < c2 < 1.
        tolerance_change: stop zooming when the bracket times max|d| is smaller.
        max_ls: the most evaluations.

    Returns:
        (loss, flat gradient, t, evaluations) at the step found (or the lowest one tried).
    """
    d_norm = d.abs().max()
    g = g.clone(memory_format=torch.contiguous_format)
    f_new, g_new = evaluate(x, t, d)
    evaluations = 1
    gtd_new = g_new.dot(d)

    # bracketing: an interval containing a point that satisfies the conditions
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    iteration = 0
    while iteration < max_ls:
        if f_new > (f + c1 * t * gtd) or (iteration > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        # extrapolate: a cubic step between 1.01 t and 10 t
        low, high = t + 0.01 * (t - t_prev), t * 10
        t_prev, t = t, cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                         bounds=(low, high))
        f_prev, g_prev = f_new, g_new.clone(memory_format=torch.contiguous_format)
        gtd_prev = gtd_new
        f_new, g_new = evaluate(x, t, d)
        evaluations += 1
        gtd_new = g_new.dot(d)
        iteration += 1
    if iteration == max_ls:  # no bracket found within the budget
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point satisfies the conditions
    insufficient_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and iteration < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                              bracket[1], bracket_f[1], bracket_gtd[1])
        # near an end of the bracket: after a stalled trial (or outside it), move to 10% in
        margin = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < margin:
            if insufficient_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - margin
                else:
                    t = min(bracket) + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = evaluate(x, t, d)
        evaluations += 1
        gtd_new = g_new.dot(d)
        iteration += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # no sufficient decrease, or not below the lowest point: the new high end
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the old high end becomes the low end
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[low_pos] = gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evaluations
