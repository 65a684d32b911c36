"""Often-quoted results about optimizers, re-run on our offline problems, with what we observe
stated plainly — agreeing or not — and the numbers behind it:

* on MNIST, adaptive methods beat SGD and momentum (Kingma & Ba 2015, figure 2);
* on word2vec, L2 adaptation (Adagrad, RMSprop, Adam) beats plain and momentum SGD
  (Mikolov et al. and many since; sparse word frequencies favour per-coordinate rates);
* on an LSTM language model, plain momentum SGD is competitive with the adaptive methods
  (Wilson et al., NeurIPS 2017);
* Muon reaches a transformer's target in less wall-clock time than AdamW (Jordan et al. 2024,
  the modded-nanoGPT speedruns; Liu et al., "Muon is scalable for LLM training", 2025) — the
  median over seeds of the training seconds to ``char_transformer``'s target;
* Schedule-Free AdamW, without a schedule, matches AdamW with a cosine schedule (Defazio et
  al., NeurIPS 2024): the mean final metrics within 5 %, or not distinguishable by Welch's test
  over the seeds;
* Lion's best learning rate is 3–10× smaller than AdamW's (Chen et al., "Symbolic Discovery of
  Optimization Algorithms", NeurIPS 2023): the ratio of the tuned learning rates;
* across tasks, no optimizer dominates once tuned (Schmidt, Schneider & Hennig, ICML 2021):
  among the optimizers run on at least two of the tasks of the claims judged together, none is
  best or tied with the best (:func:`optimlab.lab.protocol.mark_ties`) on every one of them.

Every number comes from :func:`optimlab.lab.protocol.sweep`: the learning rate tuned on seed 0,
the reported runs on other seeds. Claims on the same task share one sweep (their optimizers and
learning-rate grids together), so every optimizer on a task has the same budget. A claim whose
optimizers are not all in the registry is skipped, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..optim import REGISTRY
from . import stats
from .protocol import Summary, sweep
from .tasks import get_task, parse_optimizer

__all__ = ["CLAIMS", "Claim", "verdict", "run", "missing"]

ADAPTIVE = ("adagrad", "rmsprop", "adam")
PLAIN = ("sgd", "momentum")
#: half a decade apart, so that a ratio of tuned learning rates is 1, 3.16, 10, ...
DIGITS_LRS = tuple(10 ** (e / 2) for e in range(-8, -2))  # 1e-4 … 3.16e-2
TRANSFORMER_LRS = (1e-3, 3e-3, 1e-2, 3e-2)


@dataclass(frozen=True)
class Claim:
    """A quoted result: ``kind`` names the verdict function, ``optimizers`` are registry
    names (``"name+cosine"``: with a cosine schedule), the first being the claim's subject."""

    task: str
    statement: str
    optimizers: tuple[str, ...]
    lrs: tuple[float, ...]
    kind: str  # a key of VERDICTS


CLAIMS = (
    Claim("mnist_cnn", "on MNIST, adaptive methods win", PLAIN + ADAPTIVE,
          (1e-3, 1e-2, 0.1), "adaptive wins"),
    Claim("word2vec", "on word2vec, L2 adaptation wins", PLAIN + ADAPTIVE,
          (1e-2, 0.1, 1.0), "adaptive wins"),
    Claim("char_lstm", "on an LSTM language model, plain momentum is competitive",
          PLAIN + ADAPTIVE, (1e-3, 1e-2, 0.1, 1.0), "momentum competitive"),
    Claim("char_transformer", "Muon reaches the transformer's target in less wall-clock time "
          "than AdamW", ("muon", "adamw"), TRANSFORMER_LRS, "faster to target"),
    Claim("digits_mlp", "Schedule-Free AdamW without a schedule matches AdamW with a cosine "
          "schedule", ("schedulefree_adamw", "adamw+cosine"), DIGITS_LRS, "matches"),
    Claim("digits_mlp", "Lion's best learning rate is 3–10× smaller than AdamW's",
          ("lion", "adamw"), DIGITS_LRS, "lr ratio"),
    Claim("digits_mlp", "across tasks, no optimizer dominates once tuned", ("adam",),
          DIGITS_LRS, "no dominance"),
)


def _scores(claim: Claim, summaries: Sequence[Summary]) -> dict[str, Summary]:
    return {s.optimizer: s for s in summaries if s.problem == claim.task}


def _says(agrees: bool) -> str:
    return "agrees" if agrees else "disagrees"


def _family(claim: Claim, summaries: Sequence[Summary], tolerance: float) -> str:
    score = {o: s.mean for o, s in _scores(claim, summaries).items()}
    best_adaptive = min((score[o], o) for o in ADAPTIVE if o in score)
    best_plain = min((score[o], o) for o in PLAIN if o in score)
    if claim.kind == "adaptive wins":
        agrees = best_adaptive[0] < best_plain[0]
        return (f"{_says(agrees)}: best adaptive {best_adaptive[1]} "
                f"{best_adaptive[0]:.4g} vs best of SGD/momentum {best_plain[1]} "
                f"{best_plain[0]:.4g}")
    best = min(score.values())
    momentum = score.get("momentum", float("inf"))
    agrees = momentum <= best + tolerance * abs(best)
    return (f"{_says(agrees)}: momentum {momentum:.4g} vs best "
            f"{min(score, key=score.get)} {best:.4g} (competitive = within "
            f"{tolerance:.0%})")


def _pair(claim: Claim, summaries: Sequence[Summary]) -> tuple[Summary, Summary] | str:
    """The claim's two summaries, or why the claim cannot be judged."""
    rows = _scores(claim, summaries)
    subject, reference = claim.optimizers[:2]
    for name in (subject, reference):
        if name not in rows:
            return f"not tested: no {name} run on {claim.task}"
        if rows[name].not_applicable:
            return (f"not tested: {name} does not apply to {claim.task}'s model "
                    f"({rows[name].not_applicable})")
    return rows[subject], rows[reference]


def _paired(judge: Callable[[Claim, Summary, Summary, float], str]
            ) -> Callable[[Claim, Sequence[Summary], float], str]:
    """A verdict on the claim's subject ``a`` and reference ``b``, "not tested" without them."""
    def verdict(claim: Claim, summaries: Sequence[Summary], tolerance: float) -> str:
        pair = _pair(claim, summaries)
        return pair if isinstance(pair, str) else judge(claim, *pair, tolerance)
    return verdict


def _seconds(s: Summary) -> str:
    seconds = s.seconds_to_target
    return (f"{s.optimizer} never reached it (median of {len(s.runs)} seeds)" if seconds is None
            else f"{s.optimizer} {seconds:.3g} s ({s.steps_to_target:g} steps; lr {s.lr:.2g}, "
                 f"median of {len(s.runs)} seeds)")


@_paired
def _faster(claim: Claim, a: Summary, b: Summary, tolerance: float) -> str:
    spec = get_task(claim.task)
    inf = math.inf
    ta = inf if a.seconds_to_target is None else a.seconds_to_target
    tb = inf if b.seconds_to_target is None else b.seconds_to_target
    return (f"{_says(ta < tb)}: training seconds to {spec.label} {spec.target:g}: "
            f"{_seconds(a)} vs {_seconds(b)}")


@_paired
def _matches(claim: Claim, a: Summary, b: Summary, tolerance: float) -> str:
    close = abs(a.mean - b.mean) <= tolerance * abs(b.mean)
    p = None
    if len(a.runs) > 1 and len(b.runs) > 1 and all(map(math.isfinite, a.finals + b.finals)):
        p = stats.welch_t_test(a.finals, b.finals)[2]
    tied = p is not None and p > stats.ALPHA
    why = (f"within {tolerance:.0%}" if close else
           f"not within {tolerance:.0%}" + (f" but not distinguishable (Welch p = {p:.2g} > "
                                            f"{stats.ALPHA:g})" if tied else
                                            "" if p is None else f", Welch p = {p:.2g}"))
    return (f"{_says(close or tied)}: {a.optimizer} {a.mean:.4g} (lr {a.lr:.2g}) vs "
            f"{b.optimizer} {b.mean:.4g} (lr {b.lr:.2g}), mean final "
            f"{get_task(claim.task).label} over {len(a.runs)} seeds: {why}")


@_paired
def _ratio(claim: Claim, a: Summary, b: Summary, tolerance: float) -> str:
    ratio = b.lr / a.lr
    agrees = 3 * (1 - 1e-9) <= ratio <= 10 * (1 + 1e-9)
    grid = sorted(set(a.sensitivity) | set(b.sensitivity))
    edges = [f"{s.optimizer}'s is the grid's {'smallest' if s.lr == grid[0] else 'largest'}"
             for s in (a, b) if grid and s.lr in (grid[0], grid[-1])]
    edge = f" ({'; '.join(edges)}: the ratio is a bound)" if edges else ""
    spacing = f", ×{grid[1] / grid[0]:.3g} apart" if len(grid) > 1 else ""
    return (f"{_says(agrees)}: tuned lr {a.optimizer} {a.lr:.3g}, {b.optimizer} {b.lr:.3g}: "
            f"{b.optimizer}'s is {ratio:.3g}× {a.optimizer}'s (grid of {len(grid)}{spacing})"
            f"{edge}")


def _best_or_tied(s: Summary, rows: Sequence[Summary]) -> bool:
    """Tied with the task's best by the tie test, or, untested (one seed), the best itself."""
    if s.tied_with_best is not None:
        return s.tied_with_best
    return s.mean <= min(r.mean for r in rows)


def _dominance(claim: Claim, summaries: Sequence[Summary], tolerance: float) -> str:
    tasks = list(dict.fromkeys(s.problem for s in summaries))
    by_task = {t: [s for s in summaries if s.problem == t] for t in tasks}
    ran = {}
    for s in summaries:
        ran.setdefault(s.optimizer, []).append(s)
    judged = {o: rows for o, rows in ran.items() if len(rows) >= 2}
    if len(tasks) < 2 or not judged:
        return (f"not tested: {len(tasks)} task{'s' * (len(tasks) != 1)} ran, and no optimizer "
                f"on two or more")
    lines, dominant = [], []
    for name, rows in sorted(judged.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lost = [s for s in rows if not _best_or_tied(s, by_task[s.problem])]
        if not lost:
            dominant.append(name)
        best = {t: min(by_task[t], key=lambda r: (r.mean, r.optimizer)) for t in tasks}
        worst = [f"{s.problem} {s.mean:.4g} vs {best[s.problem].optimizer} "
                 f"{best[s.problem].mean:.4g}" for s in lost[:2]]
        lines.append(f"{name} best or tied on {len(rows) - len(lost)} of {len(rows)}"
                     + (f" (not {'; '.join(worst)})" if worst else ""))
    head = (f"{', '.join(dominant)} best or tied on every task it ran" if dominant else
            "none is best or tied on every task it ran")
    return (f"{_says(not dominant)}: over {len(tasks)} tasks ({', '.join(tasks)}), among the "
            f"{len(judged)} optimizers run on two or more, {head}: " + "; ".join(lines))


#: kind → verdict(claim, summaries, tolerance) → "agrees: …" / "disagrees: …" / "not tested: …"
VERDICTS: dict[str, Callable[[Claim, Sequence[Summary], float], str]] = {
    "adaptive wins": _family, "momentum competitive": _family, "faster to target": _faster,
    "matches": _matches, "lr ratio": _ratio, "no dominance": _dominance,
}


def verdict(claim: Claim, summaries: Sequence[Summary], tolerance: float = 0.05) -> str:
    """What we observe about ``claim`` from the tuned, seed-averaged runs: ``summaries`` of
    the claim's task (of every task judged together, for "no dominance")."""
    return VERDICTS[claim.kind](claim, summaries, tolerance)


def missing(claim: Claim) -> list[str]:
    """The claim's optimizers that are not in the registry."""
    return [o for o in claim.optimizers if parse_optimizer(o)[0] not in REGISTRY]


def run(claims: Sequence[Claim] = CLAIMS, *, seeds: int = 2,
        on_run: Callable | None = None) -> list[tuple[Claim, str, list[Summary]]]:
    """Tune, re-run with seeds and judge every claim: one sweep per task (the optimizers and
    learning rates of the claims on it together); a claim with an optimizer missing from the
    registry is skipped, with the reason as its verdict."""
    ready = [c for c in claims if not missing(c)]
    everything: list[Summary] = []
    for task in dict.fromkeys(c.task for c in ready):
        on_task = [c for c in ready if c.task == task]
        names = list(dict.fromkeys(o for c in on_task for o in c.optimizers))
        lrs = sorted({lr for c in on_task for lr in c.lrs})
        everything += sweep([task], names, lrs, seeds=seeds, on_run=on_run)
    out = []
    for claim in claims:
        if missing(claim):
            out.append((claim, f"skipped: {', '.join(missing(claim))} not in the registry "
                               f"(optimlab.optim.names())", []))
            continue
        mine = [s for s in everything
                if s.problem == claim.task and s.optimizer in claim.optimizers]
        judged = everything if claim.kind == "no dominance" else mine
        out.append((claim, verdict(claim, judged), mine))
    return out
