"""L-BFGS: quasi-Newton steps from a limited history of gradient differences.

Not a chain of transforms: one :meth:`LBFGS.step` evaluates the closure many times (its
iterations and line search) and works on the flat vector of all gradients, so the class
overrides ``step(closure)``; the algorithm, its state and its numbers are torch.optim.LBFGS's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .linesearch import strong_wolfe
from .optimizer import Optimizer
from .transforms import Chain, Interval, chain, outside_graphs

__all__ = ["LBFGS", "LINE_SEARCHES"]

#: the values ``line_search_fn`` takes (None: a fixed step ``lr``).
LINE_SEARCHES = (None, "strong_wolfe")

#: torch's defaults, ``lr`` an int as torch's (a step the line search takes at its first trial
#: keeps the int, so the state's ``t`` has torch's type)
_DEFAULTS = {"lr": 1, "max_iter": 20, "max_eval": None, "tolerance_grad": 1e-7,
             "tolerance_change": 1e-9, "history_size": 100, "line_search_fn": None}

#: options of the base optimizer that change the gradient the closure computed or the state:
#: L-BFGS builds its curvature pairs and its line search from the loss and its exact gradient
#: and keeps torch's state, so it refuses them (name → the one value allowed).
_REFUSED = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None,
            "gradient_accumulation_steps": 1, "use_ema": False, "loss_scale_factor": None,
            "state_dtype": None}


class _NonFinite(Exception):
    """A closure gave a non-finite loss or gradient (``nonfinite`` "skip" or "raise")."""


def _check_integer(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is out of range: allowed an integer >= {low}")


class LBFGS(Optimizer):
    r"""L-BFGS, equal to ``torch.optim.LBFGS`` (its arguments, defaults, numbers and state).

    Each call of ``step(closure)`` runs up to ``max_iter`` iterations on the flat vector
    :math:`x` of all parameters, with :math:`g` the closure's gradient:

    .. math::
        s_k = x_{k+1} - x_k,\quad y_k = g_{k+1} - g_k,\quad \rho_k = 1/(y_k^\top s_k),\quad
        d = -H_k g,

    where :math:`H_k g` is the two-loop recursion over the last ``history_size`` pairs with
    :math:`\rho_k > 0` (pairs with :math:`y^\top s \le 10^{-10}` are not stored) and the
    initial scaling :math:`H^0 = y^\top s / y^\top y` of the newest pair, then
    :math:`x \leftarrow x + t d` with :math:`t` = ``lr`` (the very first iteration:
    :math:`\min(1, 1/\lVert g\rVert_1)\cdot` ``lr``), or the step that
    :func:`~optimlab.optim.linesearch.strong_wolfe` finds from it with
    ``line_search_fn="strong_wolfe"`` (c₁ = 10⁻⁴, c₂ = 0.9). A step stops early when
    :math:`\max|g| \le` ``tolerance_grad``, when :math:`g^\top d > -` ``tolerance_change``, when
    :math:`\max|t d|` or the change of the loss is below ``tolerance_change``, or after
    ``max_eval`` evaluations of the closure. As in torch, the line search's own bracket tolerance
    is 10⁻⁹ whatever ``tolerance_change`` is.

    References: Nocedal, "Updating Quasi-Newton Matrices with Limited Storage", Math. Comp.
    35 (1980); Liu & Nocedal, Math. Programming 45 (1989); Nocedal & Wright, "Numerical
    Optimization", Algorithms 7.4–7.5.

    Like torch's: one param group only; ``step`` needs a closure that re-evaluates the model and
    returns the loss (a ``TypeError`` without one); a parameter whose ``.grad`` is None counts
    as a zero gradient and is moved along the direction like the others; sparse gradients are
    made dense; complex parameters are pairs of real numbers. The state (``func_evals``,
    ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``al``,
    ``prev_flat_grad``, ``prev_loss``) is kept in the state of the first parameter, in torch's
    format, so state dicts load across the two libraries. The parameters are updated in place.

    Args:
        params: the parameters (one group).
        lr: the step length (the first trial step of the line search); default 1.
        max_iter: iterations per ``step``, an integer >= 1; default 20.
        max_eval: evaluations of the closure per ``step``; default ``max_iter * 5 // 4``.
        tolerance_grad: stop when the largest gradient component is at most this; 1e-7.
        tolerance_change: stop when the step or the change of the loss is below this; 1e-9.
        history_size: the pairs (s, y) kept, an integer >= 1; default 100.
        line_search_fn: None (a fixed step) or ``"strong_wolfe"``.
        **options: of :class:`~optimlab.optim.Optimizer`: ``maximize`` (ascend the closure's
            loss: L-BFGS minimizes its negative), ``nonfinite`` (``"skip"`` or ``"raise"``
            check every loss and gradient the closure gives during a step; on a non-finite one
            the parameters are put back and the state is left as before the step), ``flavor``
            (Keras has no L-BFGS: both flavors are torch's algorithm) and ``engine`` (accepted
            and unused: the step is vector arithmetic on one flat vector). The options that
            change the gradient (clipping, accumulation, loss scaling, weight decay, the EMA of
            the weights, ``state_dtype``) are refused with a ``ValueError``.
    """

    DEFAULTS = {"torch": _DEFAULTS, "keras": _DEFAULTS}
    counts_steps = False
    needs_closure = True
    #: the keys of the state, torch's, kept in the state of the first parameter.
    state_keys = ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
                  "al", "prev_flat_grad", "prev_loss")

    def __init__(self, params, lr: float | Tensor | None = None, max_iter: int | None = None,
                 max_eval: float | None = None, tolerance_grad: float | None = None,
                 tolerance_change: float | None = None, history_size: int | None = None,
                 line_search_fn: str | None = None, **options: Any):
        iterations = _DEFAULTS["max_iter"] if max_iter is None else max_iter
        if max_eval is None and isinstance(iterations, int) and not isinstance(iterations, bool):
            max_eval = iterations * 5 // 4  # as torch
        self._constructed = False
        super().__init__(params, lr=lr, max_iter=max_iter, max_eval=max_eval,
                         tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                         history_size=history_size, line_search_fn=line_search_fn, **options)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups): "
                             f"got {len(self.param_groups)} groups, allowed one")
        for name, allowed in _REFUSED.items():
            value = getattr(self, name)
            if value != allowed:
                raise ValueError(
                    f"LBFGS does not support {name}={value!r}: its curvature pairs and line "
                    f"search use the closure's exact loss and gradient, and its state is "
                    f"torch's, in the parameters' dtype; allowed: {allowed!r}")
        self._constructed = True

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        return chain()  # not a chain: step() is the algorithm

    def _validate(self, group) -> None:
        super()._validate(group)
        Interval.parse("[0, inf)").check("lr", group["lr"])
        _check_integer("max_iter", group["max_iter"])
        Interval.parse("[1, inf)").check("max_eval", group["max_eval"])
        for name in ("tolerance_grad", "tolerance_change"):
            Interval.parse("[0, inf)").check(name, group[name])
        _check_integer("history_size", group["history_size"])
        if group["line_search_fn"] not in LINE_SEARCHES:
            raise ValueError(f"line_search_fn={group['line_search_fn']!r} is not supported: "
                             f"allowed {', '.join(map(repr, LINE_SEARCHES))}")
        if group.get("weight_decay", 0) != 0:
            raise ValueError(f"LBFGS does not support weight_decay={group['weight_decay']!r}: "
                             f"add the penalty to the closure's loss; allowed: 0")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """During construction torch's checks; afterwards a ``ValueError`` (L-BFGS has exactly
        one param group), once the new group's values are checked."""
        if getattr(self, "_constructed", False):
            self._validate({**self.defaults, **param_group})
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups): "
                             "it has its one group already")
        super().add_param_group(param_group)

    def init_state(self) -> None:
        """The state the first step starts from (torch's counters, on the first parameter)."""
        state = self.state[self.param_groups[0]["params"][0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

    # ----------------------------------------------------------------- the flat vector
    @staticmethod
    def _flat_grad(params: Sequence[Tensor], sign: float) -> Tensor:
        """All gradients as one new vector (None → zeros; complex → real pairs)."""
        views = []
        for p in params:
            if p.grad is None:
                view = torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
            elif p.grad.is_sparse:
                view = p.grad.to_dense().view(-1)
            else:
                view = p.grad.reshape(-1)
            if view.is_complex():
                view = torch.view_as_real(view).view(-1)
            views.append(view)
        flat = torch.cat(views, 0)
        return flat.neg_() if sign < 0 else flat

    @staticmethod
    def _add(params: Sequence[Tensor], step: float | Tensor, direction: Tensor) -> None:
        """x ← x + step · direction, in place in every parameter."""
        offset = 0
        for p in params:
            target = torch.view_as_real(p) if p.is_complex() else p
            n = target.numel()
            target.add_(direction[offset:offset + n].view_as(target), alpha=step)
            offset += n

    @staticmethod
    def _copy(params: Sequence[Tensor]) -> list[Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in params]

    @staticmethod
    def _set(params: Sequence[Tensor], values: Sequence[Tensor]) -> None:
        for p, value in zip(params, values, strict=True):
            p.copy_(value)

    # ----------------------------------------------------------------------------- step
    @torch.no_grad()
    @outside_graphs  # outside any torch.compile graph, as Optimizer.step
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; returns the loss of the first evaluation.

        Args:
            closure: re-evaluates the model (zeroing the gradients, ``backward``) and returns
                the loss; required.
        """
        closure = torch.enable_grad()(closure)
        params = self.param_groups[0]["params"]
        state = self.state[params[0]]
        start = self._copy(params) if self.nonfinite != "ignore" else None
        try:
            loss, values = self._iterate(closure, params, state)
        except _NonFinite as error:
            self._set(params, start)
            if self.nonfinite == "raise":
                raise FloatingPointError(
                    f"LBFGS.step: {error} (nonfinite='raise'); parameters and state were not "
                    f"changed") from None
            self.skipped_steps += 1
            return error.args[1]
        state.update(values)
        self.iterations += 1
        return loss

    def _evaluate(self, closure: Callable[[], Any], params: Sequence[Tensor], sign: float,
                  first: Any = None) -> tuple[Any, float, Tensor]:
        """(what the closure returned, the loss L-BFGS minimizes, its flat gradient)."""
        returned = closure()
        loss = sign * float(returned)
        flat_grad = self._flat_grad(params, sign)
        if self.nonfinite != "ignore" and not (math.isfinite(loss)
                                               and bool(torch.isfinite(flat_grad).all())):
            raise _NonFinite("the closure gave a non-finite loss or gradient",
                             returned if first is None else first)
        return returned, loss, flat_grad

    def _iterate(self, closure: Callable[[], Any], params: Sequence[Tensor],
                 state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """torch.optim.LBFGS.step's algorithm; returns the first loss and the new state (the
        state itself is not changed, so a non-finite evaluation can leave it as it was)."""
        group = self.param_groups[0]
        lr = group["lr"]  # a Tensor lr stays a 0-d Tensor, as torch's _to_scalar keeps it
        if isinstance(lr, Tensor) and lr.dim() != 0:
            lr = lr.squeeze()
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]
        sign = -1.0 if group.get("maximize") else 1.0

        func_evals, total_iter = state.get("func_evals", 0), state.get("n_iter", 0)
        orig_loss, loss, flat_grad = self._evaluate(closure, params, sign)
        current_evals = 1
        func_evals += 1
        if flat_grad.abs().max() <= tolerance_grad:  # optimal already
            return orig_loss, {"func_evals": func_evals, "n_iter": total_iter}

        def listed(key: str) -> list | None:
            value = state.get(key)
            return None if value is None else list(value)

        d, t, H_diag = state.get("d"), state.get("t"), state.get("H_diag")
        old_dirs, old_stps, ro, al = (listed(k) for k in ("old_dirs", "old_stps", "ro", "al"))
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        def directional(x: list[Tensor], step: float | Tensor, direction: Tensor):
            """The loss and flat gradient at x + step · direction; the parameters back at x."""
            self._add(params, step, direction)
            _, value, grad = self._evaluate(closure, params, sign, orig_loss)
            self._set(params, x)
            return value, grad

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            total_iter += 1
            # the direction: steepest descent first, then the two-loop recursion
            if total_iter == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = y.dot(s)
                if ys > 1e-10:  # keep the pair (a positive-definite update)
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / y.dot(y)
                count = len(old_dirs)
                if al is None:
                    al = [None] * history_size
                q = flat_grad.neg()
                for i in range(count - 1, -1, -1):
                    al[i] = old_stps[i].dot(q) * ro[i]
                    q.add_(old_dirs[i], alpha=-al[i])
                d = r = torch.mul(q, H_diag)
                for i in range(count):
                    be_i = old_dirs[i].dot(r) * ro[i]
                    r.add_(old_stps[i], alpha=al[i] - be_i)
            prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            prev_loss = loss

            # the step length
            t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr if total_iter == 1 else lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:  # not a descent direction (any more)
                break
            evaluations = 0
            if line_search_fn is not None:
                loss, flat_grad, t, evaluations = strong_wolfe(
                    directional, self._copy(params), t, d, loss, flat_grad, gtd,
                    max_ls=max_eval - current_evals)
                self._add(params, t, d)
                optimal = flat_grad.abs().max() <= tolerance_grad
            else:
                self._add(params, t, d)
                optimal = False
                if n_iter != max_iter:  # the last iteration's point is not evaluated (torch)
                    _, loss, flat_grad = self._evaluate(closure, params, sign, orig_loss)
                    optimal = flat_grad.abs().max() <= tolerance_grad
                    evaluations = 1
            current_evals += evaluations
            func_evals += evaluations

            if (n_iter == max_iter or current_evals >= max_eval or optimal
                    or d.mul(t).abs().max() <= tolerance_change
                    or abs(loss - prev_loss) < tolerance_change):
                break

        values = {"func_evals": func_evals, "n_iter": total_iter, "d": d, "t": t,
                  "old_dirs": old_dirs, "old_stps": old_stps, "ro": ro, "H_diag": H_diag,
                  "prev_flat_grad": prev_flat_grad, "prev_loss": prev_loss}
        if al is not None:
            values["al"] = al
        return orig_loss, values
