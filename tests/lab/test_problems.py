import pytest
import torch

from optimlab.lab import SURFACES
from optimlab.lab.problems import get_surface


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
