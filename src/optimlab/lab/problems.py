"""Test problems: classic 2-D surfaces with a known minimum, for trajectories and quick comparisons.

Each surface is a function of a length-2 tensor, a standard starting point and its global
minimum (Surjanovic & Bingham, Virtual Library of Simulation Experiments, sfu.ca/~ssurjano).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Surface", "SURFACES", "get_surface"]


@dataclass(frozen=True)
class Surface:
    """A 2-D objective with a known global minimum.

    Attributes:
        name: registry id.
        f: the objective, f(θ) for θ of shape (2,).
        start: the standard starting point.
        minima: the global minimizers (the distance column measures to the nearest).
        bounds: ((x_lo, x_hi), (y_lo, y_hi)) for plots.
    """

    name: str
    f: Callable[[Tensor], Tensor]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    bounds: tuple[tuple[float, float], tuple[float, float]]

    def __call__(self, theta: Tensor) -> Tensor:
        return self.f(theta)

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
        raise ValueError(f"unknown problem {name!r}: choose one of {', '.join(SURFACES)}")
    return SURFACES[name]
