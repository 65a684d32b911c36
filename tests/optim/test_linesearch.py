"""Line search: the Armijo condition holds at every accepted step; on a badly conditioned
quadratic both line searches need fewer steps than the best fixed learning rate."""

from __future__ import annotations

import math

import pytest
import torch

from optimlab import data
from optimlab.optim import SGD, ArmijoLineSearch, ExactLineSearch

A = torch.diag(torch.logspace(0, 2, 10, dtype=torch.float64))  # condition number 100


def quadratic(theta):
    return 0.5 * theta @ A @ theta


def on_quadratic(make):
    """(θ, ``make([θ])``, its closure) on the quadratic, from θ = 1."""
    theta = torch.nn.Parameter(torch.ones(10, dtype=torch.float64))
    opt = make([theta])

    def closure():
        opt.zero_grad()
        loss = quadratic(theta)
        loss.backward()
        return loss
    return theta, opt, closure


def steps_to(make, target=1e-10, limit=1000):
    theta, opt, closure = on_quadratic(make)
    for k in range(limit):
        if quadratic(theta).item() < target:
            return k, opt
        opt.step(closure)
    return limit, opt


def fewest_steps_of_sgd(lrs, target=1e-10, limit=1000):
    """min over ``lrs`` of ``steps_to(SGD at lr)`` and the learning rate that needs them: the
    runs side by side, one θ and one parameter group per learning rate in one SGD, until the
    first reaches the target (the groups' updates are those of separate runs)."""
    thetas = [torch.nn.Parameter(torch.ones(10, dtype=torch.float64)) for _ in lrs]
    opt = SGD([{"params": [theta], "lr": lr} for theta, lr in zip(thetas, lrs, strict=True)])
    for k in range(limit):
        opt.zero_grad()
        losses = torch.stack([quadratic(theta) for theta in thetas])
        reached = (losses.detach() < target).nonzero()  # not the diverged (∞, NaN)
        if len(reached):
            return k, lrs[int(reached[0])]
        losses.sum().backward()
        opt.step()
    return limit, None


def test_line_searches_beat_the_best_fixed_learning_rate():
    grid = torch.logspace(-3, 0, 61).tolist()  # the best fixed rate is about 0.018
    best_fixed, best_lr = fewest_steps_of_sgd(grid)
    assert steps_to(lambda p: SGD(p, lr=best_lr))[0] == best_fixed  # the same run alone
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


def until_converged(make, limit):
    """Steps of ``make([θ])`` on the quadratic until it says it has converged (at most
    ``limit``); the steps, the optimizer and θ."""
    theta, opt, closure = on_quadratic(make)
    steps = 0
    while not opt.converged and steps < limit:
        opt.step(closure)
        steps += 1
    return steps, opt, theta


def test_convergence_criteria_stop_early():
    """Each criterion stops the run at the first step at which it holds."""
    steps, exact, _ = until_converged(lambda p: ExactLineSearch(p, grad_tol=1e-3), 2000)
    grad_norms = [math.sqrt(r["grad_norm_sq"]) for r in exact.log]
    assert exact.converged and steps < 2000
    assert grad_norms[-1] < 1e-3 <= min(grad_norms[:-1])
    steps, armijo, theta = until_converged(
        lambda p: ArmijoLineSearch(p, lr=1.0, step_tol=1e-6), 5000)
    moved = [r["lr"] * math.sqrt(r["grad_norm_sq"]) for r in armijo.log]
    assert armijo.converged and steps < 5000 and quadratic(theta).item() < 1e-8
    assert moved[-1] < 1e-6 <= min(moved[:-1])


def test_bad_arguments():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="c=1.5 is out of range"):
        ArmijoLineSearch(p, c=1.5)
    with pytest.raises(ValueError, match="reset='never'"):
        ArmijoLineSearch(p, reset="never")
    with pytest.raises(ValueError, match="needs a closure"):
        ArmijoLineSearch(p).step(None)
