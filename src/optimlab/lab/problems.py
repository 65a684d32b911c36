"""The problems the lab optimizes — what one run of an optimizer on a problem gives
(:class:`Run`), and the classic 2-D surfaces with a known minimum (the trainable tasks are in
:mod:`optimlab.lab.tasks`).

Each surface is a function of a length-2 tensor, a standard starting point and its global
minimum (Surjanovic & Bingham, Virtual Library of Simulation Experiments, sfu.ca/~ssurjano).
A surface is deterministic (one start, no data): its runs do not depend on the seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

import torch
from torch import Tensor

from ..naming import unknown
from ..optim.stepping import mode
from ..optim.stepping import step as optimizer_step
from .construct import build, not_applicable

__all__ = ["Run", "Surface", "SURFACES", "get_surface", "run_surface", "DIVERGED"]

#: a surface's loss above this (or not finite) counts as diverged.
DIVERGED = 1e12


@dataclass
class Run:
    """One optimizer at one learning rate and seed on one problem: ``final`` and ``best`` are
    its metric (∞: diverged); tasks record ``curve`` (step, train_loss, test) and
    ``seconds_to_target``, surfaces the ``distance`` to the nearest minimum. An optimizer that
    does not apply to the problem's parameters (:func:`~optimlab.lab.construct.not_applicable`)
    is not run: ``not_applicable`` says why, and its metric is ∞."""

    problem: str
    optimizer: str
    lr: float
    seed: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    final: float = math.inf
    best: float = math.inf
    steps_to_target: int | None = None
    seconds_to_target: float | None = None
    seconds: float = 0.0
    diverged: bool = False
    distance: float | None = None
    not_applicable: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Surface:
    """A 2-D objective with a known global minimum.

    Attributes:
        name: registry id.
        f: the objective, f(θ) for θ of shape (2,).
        start: the standard starting point.
        minima: the global minimizers (the distance column measures to the nearest).
        bounds: ((x_lo, x_hi), (y_lo, y_hi)) for plots.
        steps: the step budget of a run; target: the loss that counts as reached.
    """

    name: str
    f: Callable[[Tensor], Tensor]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    steps: int = 1000
    target: float = 1e-4
    #: runs differ by seed (a surface's do not: one start, no data)
    seeded: ClassVar[bool] = False

    def __call__(self, theta: Tensor) -> Tensor:
        return self.f(theta)

    def run(self, optimizer: str, lr: float, seed: int = 0, *, flavor: str = "torch") -> Run:
        """One run of the surface's budget (``seed`` changes nothing: it is recorded)."""
        return replace(run_surface(self, optimizer, lr, self.steps, flavor=flavor,
                                   target=self.target), seed=seed)

    def distance_to_minimum(self, theta: Tensor) -> float:
        """Euclidean distance from θ to the nearest global minimizer."""
        points = torch.tensor(self.minima, dtype=theta.dtype)
        return torch.linalg.vector_norm(points - theta.detach(), dim=1).min().item()


def rosenbrock(t: Tensor) -> Tensor:
    """(1 − x)² + 100 (y − x²)²: a curved, narrow valley; minimum 0 at (1, 1)."""
    x, y = t[0], t[1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(t: Tensor) -> Tensor:
    """Σᵢ (cᵢ − x + x yⁱ)², c = (1.5, 2.25, 2.625): flat plateaus and sharp ridges; 0 at (3, ½)."""
    x, y = t[0], t[1]
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
            + (2.625 - x + x * y**3) ** 2)


def himmelblau(t: Tensor) -> Tensor:
    """(x² + y − 11)² + (x + y² − 7)²: four minima of value 0, one at (3, 2)."""
    x, y = t[0], t[1]
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def long_valley(t: Tensor) -> Tensor:
    """0.005 x² + 5 y²: a long narrow valley, condition number 1000; minimum 0 at (0, 0)."""
    x, y = t[0], t[1]
    return 0.005 * x**2 + 5.0 * y**2


SURFACES: dict[str, Surface] = {
    "rosenbrock": Surface("rosenbrock", rosenbrock, (-1.5, 2.0), ((1.0, 1.0),),
                          ((-2.0, 2.0), (-1.0, 3.0))),
    "beale": Surface("beale", beale, (1.0, 1.5), ((3.0, 0.5),),
                     ((-4.5, 4.5), (-4.5, 4.5))),
    "himmelblau": Surface("himmelblau", himmelblau, (0.0, -4.0),
                          ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186),
                           (3.584428, -1.848126)),
                          ((-5.0, 5.0), (-5.0, 5.0))),
    "long_valley": Surface("long_valley", long_valley, (-8.0, 1.0), ((0.0, 0.0),),
                           ((-10.0, 10.0), (-2.0, 2.0))),
}


def get_surface(name: str) -> Surface:
    if name not in SURFACES:
        raise ValueError(unknown("problem", name, SURFACES))
    return SURFACES[name]


def run_surface(surface: Surface, optimizer: str, lr: float, steps: int, *,
                flavor: str = "torch", target: float = 1e-4) -> Run:
    """Minimize ``surface`` from its start for ``steps`` steps; float64 throughout. An
    optimizer that does not apply to θ (Muon: matrices only) is not run (``not_applicable``)."""
    theta = torch.nn.Parameter(torch.tensor(surface.start, dtype=torch.float64))
    reason = not_applicable(optimizer, [theta], flavor=flavor)
    if reason is not None:
        return Run(surface.name, optimizer, lr, distance=math.inf, not_applicable=reason)
    opt = build(optimizer, [theta], lr=lr, flavor=flavor)
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
    return Run(surface.name, optimizer, lr, final=math.inf if diverged else loss, best=best,
               steps_to_target=reached, seconds=seconds, diverged=diverged,
               distance=math.inf if diverged else surface.distance_to_minimum(theta))
