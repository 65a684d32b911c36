"""The lab's loops drive optimizers whose step needs a closure (L-BFGS) and optimizers with
separate training and evaluation points (Schedule-Free's train()/eval())."""

from __future__ import annotations

import dataclasses

import torch

from optimlab import optim
from optimlab.lab import problems, tasks
from optimlab.lab.problems import SURFACES


class _ClosureLBFGS(torch.optim.LBFGS):
    needs_closure = True


def test_a_closure_optimizer_runs_on_a_surface_and_a_task(monkeypatch):
    def get(params, **kwargs):
        return _ClosureLBFGS(params, lr=kwargs.get("lr", 1.0), line_search_fn="strong_wolfe")

    monkeypatch.setitem(optim.REGISTRY, "lbfgs", get)
    result = problems.run_surface(SURFACES["rosenbrock"], "lbfgs", 1.0, 30)
    assert not result.diverged and result.final < 1e-8  # SGD is far from this in 30 steps
    # 50 of the task's 300 steps: each L-BFGS step evaluates the closure up to 25 times, and
    # it reaches the target (test error 0.2) within 2 steps
    moons = dataclasses.replace(tasks.get_task("moons"), steps=50)
    run = tasks.run_task(moons, "lbfgs", 1.0)
    assert not run.diverged and run.final < moons.target


class _Modes(torch.optim.SGD):
    """SGD with a train/eval switch that records the mode of every step and evaluation."""

    def __init__(self, params, **kwargs):
        super().__init__(params, lr=kwargs.get("lr", 0.1))
        self.training, self.log = None, []

    def train(self):
        self.training = True

    def eval(self):
        self.training = False
        self.log.append("eval")

    def step(self, closure=None):
        self.log.append("step" if self.training else "step while evaluating")
        return super().step(closure)


def test_the_optimizer_is_in_eval_mode_for_every_evaluation_and_trains_in_train_mode(
        monkeypatch):
    made = []  # the last one is the run's (the first checks that it applies)
    monkeypatch.setitem(optim.REGISTRY, "modes", lambda params, **kw: made.append(
        _Modes(params, **kw)) or made[-1])
    run = tasks.run_task("moons", "modes", 0.1, evaluations=10)
    opt = made[-1]
    assert opt.log.count("eval") == len(run.curve) == 10
    assert opt.log.count("step") == tasks.get_task("moons").steps
    assert "step while evaluating" not in opt.log
    made.clear()
    problems.run_surface(SURFACES["beale"], "modes", 0.01, 20)
    assert made[-1].log == ["step"] * 20 + ["eval"]  # the final loss at the evaluation point
