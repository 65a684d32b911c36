"""Compare optimizers on the 2-D surfaces: tune the learning rate on a log grid, keep the best.

For each (problem, optimizer) every learning rate of the grid runs the same step budget from the
surface's standard start; the best final loss wins and its run is reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from ..optim import get
from .construct import not_applicable
from .problems import Surface, get_surface
from .stepping import mode
from .stepping import step as optimizer_step

__all__ = ["Result", "compare", "run_surface", "DEFAULT_LRS"]

#: 10 learning rates from 1e-4 to 10^0.5, half a decade apart.
DEFAULT_LRS = tuple(10 ** (-4 + 0.5 * i) for i in range(10))
#: a loss above this (or not finite) counts as diverged.
DIVERGED = 1e12


@dataclass
class Result:
    """One optimizer on one problem at one learning rate."""

    problem: str
    optimizer: str
    lr: float
    final_loss: float
    best_loss: float
    distance: float
    steps_to_target: int | None
    seconds: float
    diverged: bool
    #: why the optimizer does not apply to a vector of 2 numbers (None: it does; not run)
    not_applicable: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def run_surface(surface: Surface, optimizer: str, lr: float, steps: int, *,
                flavor: str = "torch", target: float = 1e-4) -> Result:
    """Minimize ``surface`` from its start for ``steps`` steps; float64 throughout. An
    optimizer that does not apply to θ (see :func:`~optimlab.lab.construct.not_applicable`)
    is not run: its result has the reason and infinite losses."""
    theta = torch.nn.Parameter(torch.tensor(surface.start, dtype=torch.float64))
    reason = not_applicable(optimizer, [theta], flavor=flavor)
    if reason is not None:
        return Result(surface.name, optimizer, lr, math.inf, math.inf, math.inf, None, 0.0,
                      False, reason)
    opt = get(optimizer, [theta], lr=lr, flavor=flavor)
    best, reached, loss = math.inf, None, math.inf
    mode(opt, training=True)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = surface(theta)
        value.backward()
        return value

    start = time.perf_counter()
    for step in range(1, steps + 1):
        opt.zero_grad()
        value = surface(theta)
        loss = value.item()
        if not math.isfinite(loss) or loss > DIVERGED:
            break
        best = min(best, loss)
        if reached is None and loss <= target:
            reached = step - 1
        value.backward()
        optimizer_step(opt, closure)
    else:
        mode(opt, training=False)  # the final loss at the evaluation point
        with torch.no_grad():
            loss = surface(theta).item()
        best = min(best, loss)
        if reached is None and loss <= target:
            reached = steps
    seconds = time.perf_counter() - start
    diverged = not math.isfinite(loss) or loss > DIVERGED
    distance = math.inf if diverged else surface.distance_to_minimum(theta)
    return Result(surface.name, optimizer, lr, math.inf if diverged else loss, best, distance,
                  reached, seconds, diverged)


def compare(problems: Sequence[str], optimizers: Sequence[str], *, steps: int = 1000,
            lrs: Sequence[float] = DEFAULT_LRS, flavor: str = "torch", target: float = 1e-4,
            on_run: Callable[[Result], None] | None = None) -> list[Result]:
    """For every problem and optimizer, the best run over the learning-rate grid.

    Args:
        problems: surface names (see :data:`optimlab.lab.SURFACES`).
        optimizers: registry names (see :func:`optimlab.optim.names`).
        steps: the step budget of every run (> 0).
        lrs: the learning-rate grid (each > 0).
        flavor: "torch" or "keras" conventions.
        target: the loss that counts as reached for ``steps_to_target``.
        on_run: called after every single run (progress reporting).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if not lrs or any(not (lr > 0) for lr in lrs):
        raise ValueError(f"lrs={list(lrs)!r} must be a non-empty list of positive numbers")
    surfaces = [get_surface(p) for p in problems]
    best: list[Result] = []
    for surface in surfaces:
        for name in optimizers:
            runs = []
            for lr in lrs:
                result = run_surface(surface, name, lr, steps, flavor=flavor, target=target)
                runs.append(result)
                if on_run is not None:
                    on_run(result)
            best.append(min(runs, key=lambda r: (r.final_loss, r.lr)))
    return best
