import math

import pytest

from optimlab.lab import compare
from optimlab.lab.compare import run_surface
from optimlab.lab.problems import SURFACES


def test_adam_solves_the_long_valley_and_reports_steps_to_target():
    result = run_surface(SURFACES["long_valley"], "adam", 0.1, 2000)
    assert not result.diverged
    assert result.final_loss < 1e-4
    assert result.steps_to_target is not None and result.steps_to_target < 2000
    assert result.distance < 0.2


def test_too_large_learning_rate_is_reported_as_diverged():
    result = run_surface(SURFACES["rosenbrock"], "sgd", 1.0, 100)
    assert result.diverged and math.isinf(result.final_loss) and math.isinf(result.distance)


def test_compare_keeps_the_best_learning_rate_per_optimizer():
    seen = []
    results = compare(["rosenbrock"], ["sgd", "adam"], steps=200, lrs=[1.0, 1e-3],
                      on_run=seen.append)
    assert len(seen) == 4 and len(results) == 2
    sgd = next(r for r in results if r.optimizer == "sgd")
    assert sgd.lr == 1e-3 and not sgd.diverged  # lr = 1 diverges on Rosenbrock
    for r in results:
        runs = [s for s in seen if s.optimizer == r.optimizer]
        assert r.final_loss == min(s.final_loss for s in runs)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps=0"), ({"steps": -5}, "steps=-5"), ({"lrs": [0.1, -1.0]}, "lrs"),
])
def test_bad_budget_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare(["beale"], ["adam"], **kwargs)
