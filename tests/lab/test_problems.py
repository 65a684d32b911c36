import math

import pytest
import torch

from optimlab.lab import SURFACES
from optimlab.lab.problems import get_surface, run_surface


@pytest.mark.parametrize("name", list(SURFACES))
def test_minima_are_stationary_with_value_zero(name):
    surface = SURFACES[name]
    for point in surface.minima:
        theta = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        value = surface(theta)
        (grad,) = torch.autograd.grad(value, theta)
        assert value.item() == pytest.approx(0.0, abs=1e-9)
        assert grad.abs().max().item() < 1e-4
        assert surface.distance_to_minimum(theta) == 0.0
    start = torch.tensor(surface.start, dtype=torch.float64)
    assert surface(start).item() > 1.0
    assert surface.distance_to_minimum(start) > 1.0


def test_unknown_problem_lists_choices():
    with pytest.raises(ValueError, match="unknown problem 'rosenbrok'.*rosenbrock"):
        get_surface("rosenbrok")


def test_adam_solves_the_long_valley_and_reports_steps_to_target():
    result = run_surface(SURFACES["long_valley"], "adam", 0.1, 2000)
    assert not result.diverged
    assert result.final < 1e-4
    assert result.steps_to_target is not None and result.steps_to_target < 2000
    assert result.distance < 0.2


def test_too_large_learning_rate_is_reported_as_diverged():
    result = run_surface(SURFACES["rosenbrock"], "sgd", 1.0, 100)
    assert result.diverged and math.isinf(result.final) and math.isinf(result.distance)
