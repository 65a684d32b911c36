"""Curriculum learning: score each example's difficulty, then train on a pool of the easiest
examples that a pacing function grows to the whole set (Bengio et al., ICML 2009; Hacohen &
Weinshall, ICML 2019)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["score_by_loss", "score_by_confidence", "pacing", "CurriculumSampler", "PACINGS"]


@torch.no_grad()
def score_by_loss(model: nn.Module, x: Tensor, y: Tensor,
                  loss_fn: Callable = torch.nn.functional.cross_entropy) -> Tensor:
    """Difficulty = a reference model's per-example loss (lower is easier)."""
    model.eval()
    return loss_fn(model(x), y, reduction="none")


@torch.no_grad()
def score_by_confidence(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Difficulty = 1 − the reference model's probability of the true class."""
    model.eval()
    return 1 - torch.softmax(model(x), -1).gather(1, y[:, None]).squeeze(1)


def _linear(p, start):
    return start + (1 - start) * p


def _root(p, start):
    return math.sqrt(start**2 + (1 - start**2) * p)


def _step(p, start, stages=4):
    return start + (1 - start) * min(math.floor(p * stages) / (stages - 1), 1.0)


def _exponential(p, start):
    return start * (1 / start) ** p


PACINGS = {"linear": _linear, "root": _root, "step": _step, "exponential": _exponential}


def pacing(name: str, progress: float, start: float) -> float:
    """The fraction of the data (easiest first) available at ``progress`` ∈ [0, 1]."""
    if name not in PACINGS:
        raise ValueError(f"pacing={name!r} is not one of {', '.join(PACINGS)}")
    return min(1.0, max(start, PACINGS[name](min(max(progress, 0.0), 1.0), start)))


class CurriculumSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices drawn (without replacement within the batch) from the easiest
    ⌈f(t)·n⌉ examples, f the pacing function of the step t / ``steps``.

    Args:
        scores: difficulty per example (lower is easier).
        steps: batches until the pool reaches the whole set (and the sampler's length).
        start: the initial fraction in (0, 1].
    """

    def __init__(self, scores: Tensor, batch_size: int, steps: int, *,
                 pacing: str = "linear", start: float = 0.2, seed: int = 0):
        if not 0 < start <= 1:
            raise ValueError(f"start={start!r} must be in (0, 1]")
        if pacing not in PACINGS:
            raise ValueError(f"pacing={pacing!r} is not one of {', '.join(PACINGS)}")
        self.order = torch.argsort(scores, stable=True)  # easiest first
        self.batch_size, self.steps, self.pacing, self.start = batch_size, steps, pacing, start
        self.generator = torch.Generator().manual_seed(seed)

    def pool_size(self, t: int) -> int:
        n = len(self.order)
        fraction = pacing(self.pacing, t / max(self.steps - 1, 1), self.start)
        return max(min(self.batch_size, n), math.ceil(fraction * n))

    def __iter__(self) -> Iterator[list[int]]:
        for t in range(self.steps):
            pool = self.order[: self.pool_size(t)]
            pick = torch.randperm(len(pool), generator=self.generator)[: self.batch_size]
            yield pool[pick].tolist()

    def __len__(self) -> int:
        return self.steps
