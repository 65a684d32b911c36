"""Line search: the Armijo condition holds at every accepted step; on a badly conditioned
quadratic both line searches need fewer steps than the best fixed learning rate."""

from __future__ import annotations

import pytest
import torch

from optimlab import data
from optimlab.optim import SGD, ArmijoLineSearch, ExactLineSearch

A = torch.diag(torch.logspace(0, 2, 10, dtype=torch.float64))  # condition number 100


def quadratic(theta):
    return 0.5 * theta @ A @ theta


def steps_to(make, target=1e-10, limit=1000):
    theta = torch.nn.Parameter(torch.ones(10, dtype=torch.float64))
    opt = make([theta])

    def closure():
        opt.zero_grad()
        loss = quadratic(theta)
        loss.backward()
        return loss

    for k in range(limit):
        if quadratic(theta).item() < target:
            return k, opt
        opt.step(closure)
    return limit, opt


def test_line_searches_beat_the_best_fixed_learning_rate():
    grid = torch.logspace(-3, 0, 61).tolist()  # the best fixed rate is about 0.018
    best_fixed = min(steps_to(lambda p, lr=lr: SGD(p, lr=lr))[0] for lr in grid)
    exact, _ = steps_to(lambda p: ExactLineSearch(p, lr=0.01))
    backtracking, opt = steps_to(lambda p: ArmijoLineSearch(p, lr=1.0, c=1e-4, reset="reset"))
    assert exact < best_fixed and backtracking < best_fixed
    for record in opt.log:
        assert record["new_loss"] <= record["loss"] - record["c"] * record["lr"] * \
            record["grad_norm_sq"]


def test_stochastic_armijo_on_minibatches_satisfies_the_condition_and_learns():
    moons = data.moons(seed=0)
    torch.manual_seed(0)  # the initial weights: not whatever the tests before left the RNG at
    model = torch.nn.Linear(2, 2)
    opt = ArmijoLineSearch(model.parameters(), lr=10.0, c=0.1, reset="grow")
    losses = []
    for epoch in range(3):
        for x, y in data.loader(moons.train, batch_size=64, seed=epoch):
            def closure(x=x, y=y):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss

            losses.append(opt.step(closure))
    assert all(r["new_loss"] <= r["loss"] - r["c"] * r["lr"] * r["grad_norm_sq"] + 1e-12
               for r in opt.log)
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0]
    assert len({round(r["lr"], 6) for r in opt.log}) > 1  # the step size adapts


def test_convergence_criteria_stop_early():
    _, opt = steps_to(lambda p: ExactLineSearch(p, grad_tol=1e-3), target=0.0, limit=2000)
    assert opt.converged
    theta = torch.nn.Parameter(torch.ones(10, dtype=torch.float64))
    ls = ArmijoLineSearch([theta], lr=1.0, step_tol=1e-6)

    def closure():
        ls.zero_grad()
        loss = quadratic(theta)
        loss.backward()
        return loss

    steps = 0
    while not ls.converged and steps < 5000:
        ls.step(closure)
        steps += 1
    assert ls.converged and steps < 5000 and quadratic(theta).item() < 1e-8


def test_bad_arguments():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="c=1.5 is out of range"):
        ArmijoLineSearch(p, c=1.5)
    with pytest.raises(ValueError, match="reset='never'"):
        ArmijoLineSearch(p, reset="never")
    with pytest.raises(ValueError, match="needs a closure"):
        ArmijoLineSearch(p).step(None)
