"""The comparison protocol on trainable tasks: tune the learning rate on a log grid (one seed,
fixed budget), re-run the best setting with several seeds, summarize, rank, and profile.

Performance profile (Dolan & Moré, Math. Programming 2002): for each task, an optimizer's cost
is its median steps to the task's target divided by the best optimizer's; ρ(τ) is the fraction
of tasks on which that ratio is at most τ (never reaching the target counts as ∞).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from .tasks import RunResult, get_task, run_task

__all__ = ["Summary", "sweep", "performance_profile"]


@dataclass
class Summary:
    """One optimizer on one task: the tuned learning rate and the seeds' results there."""

    task: str
    optimizer: str
    lr: float
    sensitivity: dict[float, float]  # lr → final test metric of the tuning run (inf: diverged)
    runs: list[RunResult] = field(default_factory=list)

    @property
    def finals(self) -> list[float]:
        return [r.final_test for r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.finals) if self.runs else math.inf

    @property
    def std(self) -> float:
        return statistics.stdev(self.finals) if len(self.runs) > 1 else 0.0

    @property
    def best(self) -> float:
        return min((r.best_test for r in self.runs), default=math.inf)

    @property
    def steps_to_target(self) -> float:
        """Median steps to the target over seeds (∞ when most seeds never reach it)."""
        steps = [r.steps_to_target if r.steps_to_target is not None else math.inf
                 for r in self.runs]
        return statistics.median(steps) if steps else math.inf

    def as_dict(self) -> dict:
        return {"task": self.task, "optimizer": self.optimizer, "lr": self.lr,
                "sensitivity": {str(k): v for k, v in self.sensitivity.items()},
                "mean": self.mean, "std": self.std, "best": self.best,
                "steps_to_target": self.steps_to_target,
                "runs": [asdict(r) for r in self.runs]}


def sweep(tasks: Sequence[str], optimizers: Sequence[str], lrs: Sequence[float], *,
          seeds: int = 3, flavor: str = "torch",
          on_run: Callable[[RunResult], None] | None = None) -> list[Summary]:
    """For each task and optimizer: every learning rate with seed 0, then the best (lowest final
    test metric; diverged runs lose) with ``seeds`` seeds (seed 0's run is reused)."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be a positive integer")
    if not lrs or any(not lr > 0 for lr in lrs):
        raise ValueError(f"lrs={list(lrs)!r} must be a non-empty list of positive numbers")
    summaries = []
    for task_name in tasks:
        task = get_task(task_name)
        for name in optimizers:
            tuning = []
            for lr in lrs:
                run = run_task(task, name, lr, 0, flavor=flavor)
                tuning.append(run)
                if on_run:
                    on_run(run)
            best = min(tuning, key=lambda r: (r.final_test, r.lr))
            runs = [best]
            for seed in range(1, seeds):
                run = run_task(task, name, best.lr, seed, flavor=flavor)
                runs.append(run)
                if on_run:
                    on_run(run)
            summaries.append(Summary(task.name, name, best.lr,
                                     {r.lr: r.final_test for r in tuning}, runs))
    return summaries


def performance_profile(summaries: Sequence[Summary], taus: Sequence[float] = (1, 2, 4, 8, 16)
                        ) -> dict[str, list[float]]:
    """optimizer → ρ(τ) for each τ: the fraction of tasks solved within τ × the best steps."""
    tasks = sorted({s.task for s in summaries})
    optimizers = sorted({s.optimizer for s in summaries})
    cost = {(s.task, s.optimizer): s.steps_to_target for s in summaries}
    profile = {}
    for name in optimizers:
        ratios = []
        for task in tasks:
            best = min(cost.get((task, o), math.inf) for o in optimizers)
            mine = cost.get((task, name), math.inf)
            ratios.append(mine / best if math.isfinite(best) and math.isfinite(mine)
                          else math.inf)
        profile[name] = [sum(r <= tau for r in ratios) / len(tasks) for tau in taus]
    return profile
