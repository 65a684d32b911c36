"""The property table of the optimizers, decided by measurements rather than typed in.

* adaptive per-coordinate learning rate — constant gradient (1, 1) versus (1000, 1) for 10
  steps from a fresh state: the share of the 1000× that reaches the first coordinate's
  displacement relative to the second's. Adaptive when less than a tenth passes.
* consistent units — minimize f(θ) = ½θ² from θ₀ = 1 and the same problem in units 100× smaller
  (θ' = 100θ, f'(θ') = f(θ'/100), from θ'₀ = 100) for 50 steps: a method whose updates carry the
  units of θ moves 100× further on the second; consistent when the ratio of the two
  displacements, divided by 100, lies in [½, 2].
* escapes saddle points easily — from (1, 10⁻⁸) on f(x, y) = x² − y², the steps until |y| ≥ 1;
  easy when at most half the steps plain SGD needs.

Every optimizer runs with its default hyper-parameters (torch flavor), float64. One that has no
meaning on these vectors (e.g. Muon, which orthogonalizes matrices) is listed as not applicable,
with the reason (:func:`optimlab.lab.construct.not_applicable`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ..optim import get
from .construct import not_applicable

__all__ = ["Properties", "measure", "table"]

SCALE = 1000.0
UNITS = 100.0
MAX_STEPS = 20000


@dataclass
class Properties:
    """One optimizer's measured properties; every measurement is None when the optimizer does
    not apply to a vector (``not_applicable`` says why)."""

    optimizer: str
    gradient_scale_passed: float | None
    adaptive: bool | None
    units_ratio: float | None
    consistent_units: bool | None
    saddle_steps: int | None
    escapes_saddle: bool | None
    not_applicable: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _run(name: str, start: list[float], grad: Callable[[Tensor], Tensor], steps: int,
         until: Callable[[Tensor], bool] | None = None) -> tuple[Tensor, int]:
    theta = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = get(name, [theta], engine="reference")
    for step in range(steps):
        if until is not None and until(theta.detach()):
            return theta.detach(), step
        theta.grad = grad(theta.detach())
        opt.step()
    return theta.detach(), steps


def gradient_scale_passed(name: str) -> float:
    """(|Δθ₁|/|Δθ₂| with gradient (1000, 1)) / 1000; 1 for SGD, ≈ 0 for an adaptive method."""
    base = torch.tensor([1.0, 1.0], dtype=torch.float64)
    scaled = torch.tensor([SCALE, 1.0], dtype=torch.float64)
    moved, _ = _run(name, [0.0, 0.0], lambda t: scaled, 10)
    reference, _ = _run(name, [0.0, 0.0], lambda t: base, 10)
    ratio = (moved[0].abs() / moved[1].abs()) / (reference[0].abs() / reference[1].abs())
    return float(ratio / SCALE)


def units_ratio(name: str) -> float:
    """Displacement on the problem in 100× smaller units over 100 × the original's."""
    original, _ = _run(name, [1.0], lambda t: t, 50)
    rescaled, _ = _run(name, [UNITS], lambda t: t / UNITS**2, 50)
    return float((rescaled - UNITS).abs() / (UNITS * (original - 1.0).abs()))


def saddle_steps(name: str) -> int:
    def grad(t: Tensor) -> Tensor:
        return torch.stack([2 * t[0], -2 * t[1]])

    _, steps = _run(name, [1.0, 1e-8], grad, MAX_STEPS, until=lambda t: bool(t[1].abs() >= 1))
    return steps


def measure(names: list[str]) -> list[Properties]:
    """The three properties of each optimizer (SGD is measured too, as the saddle baseline)."""
    sgd = saddle_steps("sgd")
    rows = []
    for name in names:
        reason = not_applicable(name, [torch.zeros(2, dtype=torch.float64)])
        if reason is not None:
            rows.append(Properties(name, None, None, None, None, None, None, reason))
            continue
        passed, units = gradient_scale_passed(name), units_ratio(name)
        saddle = sgd if name == "sgd" else saddle_steps(name)  # deterministic: measured once
        rows.append(Properties(name, passed, passed < 0.1, units, 0.5 <= units <= 2.0, saddle,
                               saddle <= sgd / 2))
    return rows


def table(rows: list[Properties]):
    """A rich Table: each verdict with the number behind it."""
    from rich.table import Table

    t = Table(title="optimizer properties, measured (default hyper-parameters)")
    for column in ("optimizer", "adaptive per-coordinate lr", "consistent units",
                   "escapes saddles easily"):
        t.add_column(column)

    def yes(flag: bool) -> str:
        return "[green]yes[/]" if flag else "[red]no[/]"

    for r in rows:
        if r.not_applicable is not None:
            t.add_row(r.optimizer, f"not applicable: {r.not_applicable}", "", "")
            continue
        t.add_row(r.optimizer,
                  f"{yes(r.adaptive)}  ({r.gradient_scale_passed:.3g} of a 1000× gradient)",
                  f"{yes(r.consistent_units)}  (moves {r.units_ratio:.3g}× the units' 100×)",
                  f"{yes(r.escapes_saddle)}  ({r.saddle_steps} steps)")
    return t
