"""The comparison protocol, on every problem (2-D surfaces and trainable tasks): tune the
learning rate (a log grid or Optuna's TPE, fixed budget, the tuning seed), keep the best, re-run
it with other seeds where runs depend on the seed, summarize, rank, and profile.

The learning rate is chosen on seed :data:`TUNING_SEED` and the reported runs use seeds 1 … n,
so the reported metric is not biased by the selection (the best of a grid on the same seed
would be optimistic). A surface is deterministic: its summary holds the best tuning run. Each
summary gives a 95 % percentile-bootstrap interval of the mean final metric and whether it is
statistically tied with the problem's best row (Welch's t-test, Holm-corrected): see
:mod:`optimlab.lab.stats`.

Every run is planned as a dict and executed by :func:`execute`, here or as a trial of a shared,
resumable sweep (:mod:`optimlab.lab.store`).

Performance profile (Dolan & Moré, Math. Programming 2002): for each task, an optimizer's cost
is its median steps to the task's target divided by the best optimizer's; ρ(τ) is the fraction
of tasks on which that ratio is at most τ (never reaching the target counts as ∞).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import stats
from .problems import SURFACES, Run, Surface
from .store import GRACE, quiet_optuna
from .tasks import Task, get_task

__all__ = ["Summary", "sweep", "performance_profile", "execute", "mark_ties", "get_problem",
           "planned", "TUNING_SEED", "DEFAULT_LRS"]

#: the seed of every tuning run; the reported runs use seeds 1, 2, …
TUNING_SEED = 0
#: 10 learning rates from 1e-4 to 10^0.5, half a decade apart.
DEFAULT_LRS = tuple(10 ** (-4 + 0.5 * i) for i in range(10))


def get_problem(name: str) -> Surface | Task:
    """A 2-D surface or a trainable task by name."""
    return SURFACES[name] if name in SURFACES else get_task(name)


def execute(run: dict) -> Run:
    """Run one planned run (a dict of problem, steps, target, optimizer, lr, seed, flavor)."""
    problem = dataclasses.replace(get_problem(run["problem"]), steps=run["steps"],
                                  target=run["target"])
    return problem.run(run["optimizer"], run["lr"], run["seed"], flavor=run["flavor"])


def planned(problems: Sequence[str], optimizers: Sequence[str], tries: int, seeds: int) -> int:
    """How many runs :func:`sweep` makes: ``tries`` learning rates per problem and optimizer,
    and ``seeds`` re-runs on each trainable task."""
    tasks = sum(get_problem(p).seeded for p in problems)
    return len(optimizers) * (len(problems) * tries + tasks * seeds)


@dataclass
class Summary:
    """One optimizer on one problem: the tuned learning rate and the reported runs there (a
    task's: the seeds 1 … n; a surface's: its one run)."""

    problem: str
    optimizer: str
    lr: float
    sensitivity: dict[float, float]  # lr → final metric of the tuning run (inf: diverged)
    runs: list[Run] = field(default_factory=list)
    #: whether the final metric is statistically tied with the problem's best row, and the
    #: Holm-adjusted p-value of that test (set by :func:`mark_ties`; None: not tested)
    tied_with_best: bool | None = None
    p_vs_best: float | None = None

    @property
    def not_applicable(self) -> str | None:
        """Why the optimizer does not apply to the problem's parameters (its runs were not
        run: :func:`~optimlab.lab.construct.not_applicable`), or None."""
        return next((r.not_applicable for r in self.runs if r.not_applicable), None)

    @property
    def finals(self) -> list[float]:
        return [r.final for r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.finals) if self.runs else math.inf

    @property
    def std(self) -> float:
        """Standard deviation of the final metric over the seeds; ∞ when a seed diverged
        (``statistics.stdev`` cannot take ∞)."""
        finals = self.finals
        if len(finals) < 2:
            return 0.0
        return statistics.stdev(finals) if all(map(math.isfinite, finals)) else math.inf

    @property
    def best(self) -> float:
        return min((r.best for r in self.runs), default=math.inf)

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
        return {"problem": self.problem, "optimizer": self.optimizer, "lr": self.lr,
                "sensitivity": {str(k): v for k, v in self.sensitivity.items()},
                "mean": self.mean, "std": self.std, "ci95": list(self.ci95),
                "tied_with_best": self.tied_with_best, "p_vs_best": self.p_vs_best,
                "best": self.best, "steps_to_target": self.steps_to_target,
                "seconds_to_target": self.seconds_to_target,
                "not_applicable": self.not_applicable, "tuning_seed": TUNING_SEED,
                "seeds": [r.seed for r in self.runs],
                "runs": [r.as_dict() for r in self.runs]}


def mark_ties(summaries: Sequence[Summary], alpha: float = stats.ALPHA) -> None:
    """Set ``tied_with_best`` and ``p_vs_best`` of every summary, problem by problem: the row
    with the lowest mean final metric is the best, every other row is compared with it (see
    :func:`optimlab.lab.stats.tied_with_best`). A not-applicable row is not tested (None)."""
    for problem in dict.fromkeys(s.problem for s in summaries):
        rows = sorted((s for s in summaries if s.problem == problem and not s.not_applicable),
                      key=lambda s: (s.mean, s.optimizer))  # ties of the mean: by name
        tied, p = stats.tied_with_best([s.finals for s in rows], alpha)
        for summary, t, value in zip(rows, tied, p, strict=True):
            summary.tied_with_best, summary.p_vs_best = t, value


def sweep(problems: Sequence[str], optimizers: Sequence[str],
          lrs: Sequence[float] = DEFAULT_LRS, *, seeds: int = 5, steps: int | None = None,
          target: float | None = None, flavor: str = "torch",
          on_run: Callable[[Run], None] | None = None, storage: str | None = None,
          workers: int = 1, tuner: str = "grid", grace: int = GRACE) -> list[Summary]:
    """For each problem and optimizer: every learning rate of ``lrs`` with the tuning seed (0),
    then the best (lowest final metric; diverged runs lose) with ``seeds`` other seeds on the
    tasks; the summaries are marked with their ties to each problem's best (:func:`mark_ties`).

    ``problems`` are surface and task names; ``steps`` and ``target`` the step budget and the
    loss that counts as reached on the surfaces (default: theirs, 1000 and 1e-4; a task has its
    own); ``on_run`` is called after every run done in this process. With a ``storage`` URL
    every run is a trial of an Optuna study there named by the sweep's settings: ``workers``
    processes share it, so do other commands with the same settings, and re-running an
    interrupted sweep redoes no finished run (None or "none": in memory); a run whose worker
    sent no heartbeat for ``grace`` seconds is taken as a dead worker's and redone (see
    :mod:`optimlab.lab.store`). ``tuner="tpe"``
    spends the same budget (``len(lrs)`` runs, in memory) within [min(lrs), max(lrs)] (log
    scale): a third on learning rates evenly spread over it, the rest on those Optuna's TPE
    sampler proposes.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be a positive integer")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or steps <= 0):
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if not lrs or any(not lr > 0 for lr in lrs):
        raise ValueError(f"lrs={list(lrs)!r} must be a non-empty list of positive numbers")
    if tuner not in ("grid", "tpe"):
        raise ValueError(f"tuner={tuner!r} must be 'grid' or 'tpe'")
    storage = None if storage == "none" else storage
    if tuner == "tpe" and storage is not None:
        raise ValueError("tuner='tpe' proposes one run at a time: use it without a storage")
    chosen = [dataclasses.replace(p, steps=steps or p.steps,
                                  target=p.target if target is None else target)
              if isinstance(p, Surface) else p for p in map(get_problem, problems)]
    execute_all = functools.partial(_run_here, on_run=on_run) if storage is None else _stored(
        storage, (problems, optimizers, list(lrs), seeds, steps, target, flavor), workers,
        on_run, grace)

    def plan(problem, optimizer: str, lr: float, seed: int) -> dict:
        return {"problem": problem.name, "steps": problem.steps, "target": problem.target,
                "optimizer": optimizer, "lr": float(lr), "seed": seed, "flavor": flavor}

    pairs = [(p, o) for p in chosen for o in optimizers]
    if tuner == "grid":
        tuning = execute_all([plan(p, o, lr, TUNING_SEED) for p, o in pairs for lr in lrs])
    else:
        tuning = [run for p, o in pairs for run in _tune_tpe(
            lambda lr, p=p, o=o: plan(p, o, lr, TUNING_SEED), lrs, execute_all)]
    tried = {(p.name, o): [r for r in tuning if (r.problem, r.optimizer) == (p.name, o)]
             for p, o in pairs}
    best = {pair: min(runs, key=lambda r: (r.final, r.lr)) for pair, runs in tried.items()}
    reruns = execute_all([plan(p, o, best[p.name, o].lr, seed) for p, o in pairs if p.seeded
                          for seed in range(TUNING_SEED + 1, TUNING_SEED + 1 + seeds)])
    summaries = [Summary(p.name, o, best[p.name, o].lr,
                         {r.lr: r.final for r in tried[p.name, o]},
                         [r for r in reruns if (r.problem, r.optimizer) == (p.name, o)]
                         if p.seeded else [best[p.name, o]])
                 for p, o in pairs]
    mark_ties(summaries)
    return summaries


def _run_here(runs: list[dict], on_run) -> list[Run]:
    done = []
    for run in runs:
        done.append(execute(run))
        if on_run:
            on_run(done[-1])
    return done


def _stored(url: str, config: tuple, workers: int, on_run, grace: int = GRACE,
            max_waits: int = 30) -> Callable[[list[dict]], list[Run]]:
    """Runs executed as trials of the sweep's study at ``url``: planned, then worked on until
    every one is complete — runs other processes are running are waited for (a dead worker's
    is re-enqueued once its heartbeat is stale and run here); gives up after ``max_waits``
    rounds in which nothing was running or waiting."""
    import multiprocessing

    from .store import Store, run_key, study_name

    store = Store(url, study_name("sweep", *config), grace=grace)

    def local(run: dict) -> dict:
        return _run_here([run], on_run)[0].as_dict()

    def execute_all(runs: list[dict]) -> list[Run]:
        if not runs:
            return []
        keys = [run_key(r) for r in runs]
        store.plan(runs)
        idle, context = 0, multiprocessing.get_context("spawn")
        helpers = [context.Process(target=_worker, args=(store.url, store.name, grace))
                   for _ in range(workers - 1)]  # for the first round; re-runs are done here
        while idle < max_waits:
            for helper in helpers:
                helper.start()
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
        return [Run(**results[k]) for k in keys]

    return execute_all


def _worker(url: str, study: str, grace: int) -> None:
    from .store import Store

    Store(url, study, grace=grace).work(lambda run: execute(run).as_dict())


def _tune_tpe(plan: Callable[[float], dict], lrs: Sequence[float],
              execute_all: Callable[[list[dict]], list[Run]]) -> list[Run]:
    optuna = quiet_optuna()
    # TPE's start-up trials are random: with seed 0 its ten log-uniform draws over 1e-4 ... 5
    # all fell above 5e-3, so no run tried the smaller half of the range. A third of the
    # budget goes to learning rates evenly spread over the range instead (its ends included),
    # the rest to TPE's proposals.
    low, high = math.log(min(lrs)), math.log(max(lrs))
    start = max(1, len(lrs) // 3)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(
        seed=0, n_startup_trials=start))
    for i in range(start):
        share = i / (start - 1) if start > 1 else 0.5
        study.enqueue_trial({"lr": math.exp(low + share * (high - low))})
    runs = []
    for _ in range(len(lrs)):
        trial = study.ask()
        (run,) = execute_all([plan(trial.suggest_float("lr", min(lrs), max(lrs), log=True))])
        study.tell(trial, run.final if math.isfinite(run.final) else 1e300)
        runs.append(run)
    return runs


def profile_ratios(summaries: Sequence[Summary]) -> dict[str, list[float]]:
    """optimizer → its steps to target over the fewest of any optimizer, on each task it has a
    row for (∞ where it never reached the target). A task without a row for an optimizer (not
    applicable: left out of ``summaries``) is not one of its tasks."""
    cost: dict[tuple[str, str], float] = {}
    for s in summaries:
        steps = s.steps_to_target
        cost[(s.problem, s.optimizer)] = math.inf if steps is None else steps
    best: dict[str, float] = {}
    for (task, _), steps in cost.items():
        best[task] = min(best.get(task, math.inf), steps)
    ratios: dict[str, list[float]] = {}
    for (task, name), steps in sorted(cost.items()):
        finite = math.isfinite(best[task]) and math.isfinite(steps)
        ratios.setdefault(name, []).append(steps / best[task] if finite else math.inf)
    return ratios


def performance_profile(summaries: Sequence[Summary], taus: Sequence[float] = (1, 2, 4, 8, 16)
                        ) -> dict[str, list[float]]:
    """optimizer → ρ(τ) for each τ: the fraction of its tasks solved within τ × the best steps
    (Dolan and Moré's profile; see :func:`profile_ratios`)."""
    return {name: [sum(r <= tau for r in ratios) / len(ratios) for tau in taus]
            for name, ratios in sorted(profile_ratios(summaries).items())}


def profile_breakpoints(summaries: Sequence[Summary], taus: Sequence[float]) -> list[float]:
    """``taus`` and every ratio between the first and the last of them: where ρ(τ) steps, so
    that a profile drawn through these points is exact between them."""
    ratios = {r for rs in profile_ratios(summaries).values() for r in rs
              if taus[0] <= r <= taus[-1]}
    return sorted(set(taus) | ratios)
