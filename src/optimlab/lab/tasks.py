"""Trainable problems for the lab — a model, its data, a loss, a metric, a step budget and a
target — and one run of an optimizer on one of them, with its curves."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .. import data
from .. import nn as onn
from ..optim import get

__all__ = ["Task", "TASKS", "RunResult", "run_task", "get_task"]


@dataclass(frozen=True)
class Task:
    """A problem to train on.

    Attributes:
        build: seed → (model, train split, test split).
        loss: loss(model output, targets) → scalar.
        metric: "error" (classification error, lower is better) or "loss" (test loss).
        steps: optimizer steps per run; batch_size: examples per step.
        target: the test metric that counts as reached.
    """

    name: str
    build: Callable[[int], tuple[nn.Module, data.Split, data.Split]]
    loss: Callable[[Tensor, Tensor], Tensor]
    metric: str
    steps: int
    batch_size: int
    target: float
    description: str = ""


class _Quadratic(nn.Module):
    """θ ∈ ℝᵈ; the 'output' for a batch of centres c is θ itself (the loss uses c)."""

    def __init__(self, dim: int):
        super().__init__()
        self.theta = nn.Parameter(torch.ones(dim) * 3.0)

    def forward(self, c: Tensor) -> Tensor:
        return self.theta.expand_as(c)


def _noisy_quadratic(seed: int):
    splits = data.noisy_quadratic(dim=100, n=4000, seed=0)
    torch.manual_seed(seed)
    model = _Quadratic(100)
    train = data.Split(splits.train.x, splits.train.x)  # targets = centres
    test = data.Split(splits.test.x, splits.test.x)
    return model, train, test


def _quadratic_loss(theta: Tensor, centres: Tensor) -> Tensor:
    """½ Σᵢ hᵢ(θᵢ − cᵢ)² with hᵢ = 1/i (the curvatures of data.noisy_quadratic), batch mean."""
    h = 1.0 / torch.arange(1, theta.shape[-1] + 1, dtype=theta.dtype)
    return 0.5 * (h * (theta - centres) ** 2).sum(-1).mean()


def _moons(seed: int):
    splits = data.moons(n=1000, noise=0.2, seed=0)
    torch.manual_seed(seed)
    return nn.Linear(2, 2), splits.train, splits.test


def _digits_mlp(seed: int):
    splits = data.digits(seed=0)
    scaler = data.Standardize().fit(splits.train.x)
    train = data.Split(scaler.transform(splits.train.x), splits.train.y)
    test = data.Split(scaler.transform(splits.test.x), splits.test.y)
    torch.manual_seed(seed)
    return onn.MLP(64, [64], 10), train, test


TASKS: dict[str, Task] = {
    "noisy_quadratic": Task("noisy_quadratic", _noisy_quadratic, _quadratic_loss, "loss", 300,
                            32, 52.0, "100-d noisy quadratic, curvatures 1/i (optimum ≈ 50)"),
    "moons": Task("moons", _moons, nn.functional.cross_entropy, "error", 300, 32, 0.2,
                  "logistic regression on two moons"),
    "digits_mlp": Task("digits_mlp", _digits_mlp, nn.functional.cross_entropy, "error", 400,
                       32, 0.06, "64-64-10 ReLU MLP on scikit-learn's digits"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


@dataclass
class RunResult:
    """One optimizer at one learning rate and seed on one task."""

    task: str
    optimizer: str
    lr: float
    seed: int
    curve: list[dict[str, float]] = field(default_factory=list)  # step, train_loss, test
    final_test: float = math.inf
    best_test: float = math.inf
    steps_to_target: int | None = None
    seconds_to_target: float | None = None
    seconds: float = 0.0
    diverged: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def _evaluate(task: Task, model: nn.Module, split: data.Split) -> float:
    model.eval()
    out = model(split.x)
    model.train()
    if task.metric == "error":
        return float((out.argmax(-1) != split.y).float().mean())
    return float(task.loss(out, split.y))


def run_task(task: Task | str, optimizer: str, lr: float, seed: int = 0, *,
             evaluations: int = 20, flavor: str = "torch") -> RunResult:
    """Train with ``optimizer`` at ``lr`` for the task's step budget, evaluating the test
    metric ``evaluations`` times; a non-finite or exploding loss ends the run as diverged."""
    task = get_task(task) if isinstance(task, str) else task
    model, train, test = task.build(seed)
    opt = get(optimizer, model.parameters(), lr=lr, flavor=flavor)
    result = RunResult(task.name, optimizer, lr, seed)
    every = max(1, task.steps // evaluations)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=gen)
    cursor, start, first_loss = 0, time.perf_counter(), None
    for step in range(1, task.steps + 1):
        if cursor + task.batch_size > len(order):
            order, cursor = torch.randperm(len(train), generator=gen), 0
        index = order[cursor:cursor + task.batch_size]
        cursor += task.batch_size
        opt.zero_grad()
        loss = task.loss(model(train.x[index]), train.y[index])
        value = float(loss.detach())
        first_loss = value if first_loss is None else first_loss
        if not math.isfinite(value) or value > 1e3 * max(first_loss, 1.0):
            result.diverged = True
            break
        loss.backward()
        opt.step()
        if step % every == 0 or step == task.steps:
            metric = _evaluate(task, model, test)
            result.curve.append({"step": step, "train_loss": value, "test": metric})
            result.best_test = min(result.best_test, metric)
            if result.steps_to_target is None and metric <= task.target:
                result.steps_to_target = step
                result.seconds_to_target = time.perf_counter() - start
    result.seconds = time.perf_counter() - start
    if not result.diverged and result.curve:
        result.final_test = result.curve[-1]["test"]
    return result
