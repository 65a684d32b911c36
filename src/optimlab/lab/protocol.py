"""The comparison protocol on trainable tasks: tune the learning rate on a log grid (the tuning
seed, fixed budget), re-run the best setting with other seeds, summarize, rank, and profile.

The learning rate is chosen on seed :data:`TUNING_SEED` and the reported runs use seeds 1 … n,
so the reported metric is not biased by the selection (the best of a grid on the same seed
would be optimistic). Each summary gives a 95 % percentile-bootstrap interval of the mean final
metric and whether it is statistically tied with the task's best row (Welch's t-test,
Holm-corrected): see :mod:`optimlab.lab.stats`.

Performance profile (Dolan & Moré, Math. Programming 2002): for each task, an optimizer's cost
is its median steps to the task's target divided by the best optimizer's; ρ(τ) is the fraction
of tasks on which that ratio is at most τ (never reaching the target counts as ∞).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from . import stats
from .tasks import RunResult, get_task, run_task

__all__ = ["Summary", "sweep", "performance_profile", "execute", "mark_ties", "TUNING_SEED"]

#: the seed of every tuning run; the reported runs use seeds 1, 2, …
TUNING_SEED = 0


def execute(run: dict) -> dict:
    """Run one planned run (a dict of task, optimizer, lr, seed, flavor); its result as a dict."""
    return run_task(run["task"], run["optimizer"], run["lr"], run["seed"],
                    flavor=run.get("flavor", "torch")).as_dict()


def _worker(url: str, study: str) -> None:
    from .store import Store

    Store(url, study).work(execute)


def _drive(store, runs: list[dict], workers: int, on_run, max_waits: int = 30) -> dict:
    """Plan ``runs`` and work until every one is complete: runs other processes are running
    are waited for (a dead worker's is re-enqueued once its heartbeat is stale and run here);
    gives up after ``max_waits`` rounds in which nothing was running or waiting."""
    import multiprocessing

    from .store import run_key

    keys = [run_key(r["task"], r["optimizer"], r["lr"], r["seed"], r["flavor"]) for r in runs]
    store.plan(runs)
    idle, context = 0, multiprocessing.get_context("spawn")
    helpers = [context.Process(target=_worker, args=(store.url, store.name))
               for _ in range(workers - 1)]  # for the first round; re-runs are done here
    while idle < max_waits:
        for helper in helpers:
            helper.start()

        def local(run: dict) -> dict:
            result = execute(run)
            if on_run:
                on_run(RunResult(**result))
            return result

        store.work(local)
        for helper in helpers:
            helper.join()
        helpers = []
        if store.complete(keys):
            break
        idle = 0 if store.wait_for_stale() else idle + 1
    results = store.results()
    missing = [k for k in keys if k not in results]
    if missing:
        raise RuntimeError(f"{len(missing)} planned runs did not complete, e.g. {missing[0]}")
    return {k: results[k] for k in keys}


@dataclass
class Summary:
    """One optimizer on one task: the tuned learning rate and the seeds' results there."""

    task: str
    optimizer: str
    lr: float
    sensitivity: dict[float, float]  # lr → final test metric of the tuning run (inf: diverged)
    runs: list[RunResult] = field(default_factory=list)
    #: whether the final metric is statistically tied with the task's best row, and the
    #: Holm-adjusted p-value of that test (set by :func:`mark_ties`; None: not tested)
    tied_with_best: bool | None = None
    p_vs_best: float | None = None

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

    @property
    def seconds_to_target(self) -> float | None:
        """Median over seeds of the training seconds until the target was first reached
        (None when most seeds never reach it)."""
        seconds = [r.seconds_to_target if r.seconds_to_target is not None else math.inf
                   for r in self.runs]
        median = statistics.median(seconds) if seconds else math.inf
        return median if math.isfinite(median) else None

    @property
    def ci95(self) -> tuple[float, float]:
        """95 % percentile-bootstrap interval of the mean final metric over the seeds."""
        return stats.bootstrap_ci(self.finals) if self.runs else (math.inf, math.inf)

    def as_dict(self) -> dict:
        return {"task": self.task, "optimizer": self.optimizer, "lr": self.lr,
                "sensitivity": {str(k): v for k, v in self.sensitivity.items()},
                "mean": self.mean, "std": self.std, "ci95": list(self.ci95),
                "tied_with_best": self.tied_with_best, "p_vs_best": self.p_vs_best,
                "best": self.best, "steps_to_target": self.steps_to_target,
                "seconds_to_target": self.seconds_to_target,
                "tuning_seed": TUNING_SEED, "seeds": [r.seed for r in self.runs],
                "runs": [asdict(r) for r in self.runs]}


def mark_ties(summaries: Sequence[Summary], alpha: float = stats.ALPHA) -> None:
    """Set ``tied_with_best`` and ``p_vs_best`` of every summary, task by task: the row with
    the lowest mean final metric is the best, every other row is compared with it (see
    :func:`optimlab.lab.stats.tied_with_best`)."""
    for task in dict.fromkeys(s.task for s in summaries):
        rows = sorted((s for s in summaries if s.task == task),
                      key=lambda s: (s.mean, s.optimizer))  # ties of the mean: by name
        tied, p = stats.tied_with_best([s.finals for s in rows], alpha)
        for summary, t, value in zip(rows, tied, p, strict=True):
            summary.tied_with_best, summary.p_vs_best = t, value


def sweep(tasks: Sequence[str], optimizers: Sequence[str], lrs: Sequence[float], *,
          seeds: int = 5, flavor: str = "torch",
          on_run: Callable[[RunResult], None] | None = None, store=None,
          workers: int = 1, tuner: str = "grid") -> list[Summary]:
    """For each task and optimizer: every learning rate with the tuning seed (0), then the best
    (lowest final test metric; diverged runs lose) with ``seeds`` other seeds (1 … ``seeds``);
    the summaries are marked with their ties to each task's best (:func:`mark_ties`).

    With a :class:`~optimlab.lab.store.Store` every run is a trial in its database: ``workers``
    processes share the work, and re-running an interrupted sweep redoes no finished run.

    ``tuner="tpe"`` spends the same budget (``len(lrs)`` runs) on learning rates proposed by
    Optuna's TPE sampler within [min(lrs), max(lrs)] (log scale) instead of the grid.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be a positive integer")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer")
    if not lrs or any(not lr > 0 for lr in lrs):
        raise ValueError(f"lrs={list(lrs)!r} must be a non-empty list of positive numbers")
    for name in tasks:
        get_task(name)
    if tuner not in ("grid", "tpe"):
        raise ValueError(f"tuner={tuner!r} must be 'grid' or 'tpe'")
    if tuner == "tpe" and store is not None:
        raise ValueError("tuner='tpe' proposes one run at a time: use it without a store")
    if store is not None:
        summaries = _stored_sweep(store, tasks, optimizers, lrs, seeds, flavor, on_run, workers)
        mark_ties(summaries)
        return summaries
    summaries = []
    for task_name in tasks:
        task = get_task(task_name)
        for name in optimizers:
            tuning = _tune_tpe(task, name, lrs, flavor, on_run) if tuner == "tpe" else []
            for lr in (lrs if tuner == "grid" else ()):
                run = run_task(task, name, lr, TUNING_SEED, flavor=flavor)
                tuning.append(run)
                if on_run:
                    on_run(run)
            best = min(tuning, key=lambda r: (r.final_test, r.lr))
            runs = []
            for seed in range(TUNING_SEED + 1, TUNING_SEED + 1 + seeds):
                run = run_task(task, name, best.lr, seed, flavor=flavor)
                runs.append(run)
                if on_run:
                    on_run(run)
            summaries.append(Summary(task.name, name, best.lr,
                                     {r.lr: r.final_test for r in tuning}, runs))
    mark_ties(summaries)
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


def _stored_sweep(store, tasks, optimizers, lrs, seeds, flavor, on_run, workers):
    def run(task, name, lr, seed):
        return {"task": task, "optimizer": name, "lr": float(lr), "seed": seed, "flavor": flavor}

    tuning = [run(t, o, lr, TUNING_SEED) for t in tasks for o in optimizers for lr in lrs]
    done = _drive(store, tuning, workers, on_run)
    results = list(done.values())
    best = {}
    for r in results:
        key = (r["task"], r["optimizer"])
        if key not in best or (r["final_test"], r["lr"]) < (best[key]["final_test"],
                                                            best[key]["lr"]):
            best[key] = r
    extra = [run(t, o, best[(t, o)]["lr"], seed) for t in tasks for o in optimizers
             for seed in range(TUNING_SEED + 1, TUNING_SEED + 1 + seeds)]
    more = list(_drive(store, extra, workers, on_run).values())
    summaries = []
    for t in tasks:
        for o in optimizers:
            chosen = best[(t, o)]
            runs = [RunResult(**r) for r in more if r["task"] == t and r["optimizer"] == o]
            sensitivity = {r["lr"]: r["final_test"] for r in results
                           if r["task"] == t and r["optimizer"] == o}
            summaries.append(Summary(t, o, chosen["lr"], sensitivity, runs))
    return summaries


def _tune_tpe(task, name, lrs, flavor, on_run) -> list[RunResult]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    runs = []
    for _ in range(len(lrs)):
        trial = study.ask()
        lr = trial.suggest_float("lr", min(lrs), max(lrs), log=True)
        run = run_task(task, name, lr, TUNING_SEED, flavor=flavor)
        study.tell(trial, run.final_test if math.isfinite(run.final_test) else 1e300)
        runs.append(run)
        if on_run:
            on_run(run)
    return runs
