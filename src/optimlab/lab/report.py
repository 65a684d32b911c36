"""The lab's report: one self-contained HTML page (images and GIFs embedded) with the
leaderboards (95 % confidence intervals, the group tied with the best), curves with seed
bands, learning-rate sensitivity, the performance profile, the property table and the
animations; plus CSV and JSON of every run. It renders results: the experiments are run by
the commands and by :mod:`optimlab.lab.suite`.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .figures import animation, curves, profile, seeds_in_words, styles
from .problems import SURFACES
from .properties import Properties
from .protocol import TUNING_SEED, Summary, mark_ties, performance_profile, profile_breakpoints
from .stats import ALPHA
from .tasks import get_task

__all__ = ["Report", "write", "exported"]

TAUS = (1, 2, 4, 8, 16)


@dataclass
class Report:
    summaries: list[Summary] = field(default_factory=list)  # surfaces and tasks
    properties: list[Properties] = field(default_factory=list)
    animations: list[str] = field(default_factory=list)  # GIF / PNG paths
    ablation: list = field(default_factory=list)  # optimlab.lab.ablation.Row
    classics: list[tuple[str, str]] = field(default_factory=list)  # (claim, what we observe)
    seconds: float = 0.0


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]],
           classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join((f'<tr class="{html.escape(c)}">' if c else "<tr>")
                   + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row, c in zip(rows, classes or [""] * len(rows), strict=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isinf(x)) else f"{x:.4g}"


def _ci(s: Summary) -> str:
    low, high = s.ci95
    return f"[{_fmt(low)}, {_fmt(high)}]" if math.isfinite(low) and len(s.runs) > 1 else "—"


def _std(s: Summary) -> str:
    """The spread over the seeds; none for one seed."""
    return _fmt(s.std) if len(s.runs) > 1 else "—"


def _tied(s: Summary, rank: int) -> str:
    if s.tied_with_best is None:
        return "not tested"
    return ("best" if rank == 1 else "tied") if s.tied_with_best else "worse"


def _tied_group(ranked: list[Summary]) -> str:
    """The sentence under a leaderboard that names the group tied with the best."""
    tested = sum(1 for s in ranked[1:] if s.tied_with_best is not None)
    if not ranked or not tested:
        return ("<p class='tie'>Tied with the best: not tested (a test needs at least 2 seeds "
                "per optimizer).</p>")
    names = ", ".join(html.escape(s.optimizer) for s in ranked if s.tied_with_best)
    return (f"<p class='tie'><b>Tied with the best:</b> {names} — not different from "
            f"{html.escape(ranked[0].optimizer)} by Welch's t-test on the seeds' final values, "
            f"Holm-corrected over {tested} comparison{'s' * (tested != 1)}, α = {ALPHA:g}."
            f"</p>")


#: what the optimizers sold as free of learning-rate tuning or of a schedule do with the lr
#: the grid gives them (they are tuned on the same grid, with the same budget, as every other)
LR_MEANING = {
    "prodigy": "prodigy's lr multiplies its own step-size estimate d (1 is the authors' "
               "setting)",
    "schedulefree_adamw": "schedulefree_adamw's lr is its peak step size (it needs no decay "
                          "schedule, not no lr)",
    "schedulefree_sgd": "schedulefree_sgd's lr is its peak step size (it needs no decay "
                        "schedule, not no lr)",
}


def _budget(ranked: list[Summary], steps: int) -> str:
    """The sentence under a leaderboard that says how many runs each optimizer got."""
    groups: dict[tuple[int, int], list[str]] = {}
    for s in ranked:
        groups.setdefault((len(s.sensitivity), len(s.runs)), []).append(s.optimizer)

    def words(lrs: int, seeds: int) -> str:
        return (f"{lrs} learning rate{'s' * (lrs != 1)} on the tuning seed {TUNING_SEED}, then "
                f"the best on {seeds} other seed{'s' * (seeds != 1)}: {lrs + seeds} runs of "
                f"{steps} steps")

    if len(groups) == 1:
        (lrs, seeds), = groups
        text = f"every optimizer ran {words(lrs, seeds)}"
    else:
        text = "; ".join(f"{', '.join(map(html.escape, names))}: {words(*key)}"
                         for key, names in groups.items())
    free = [LR_MEANING[s.optimizer.partition("+")[0]] for s in ranked
            if s.optimizer.partition("+")[0] in LR_MEANING]
    extra = f" The same grid tunes {'; '.join(dict.fromkeys(free))}." if free else ""
    return f"<p class='tie'><b>Budget:</b> {text}.{extra}</p>"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.4em 0}
tr.tied td{background:#eaf6ea}p.tie,p.note{font-size:13px;margin-top:-.8em}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
figure{margin:.4em 0 1.4em}figcaption{font-size:13px;color:#444;max-width:900px}"""

# after load: how many images failed to decode (read back by the headless-browser test)
CHECK = """<script>window.addEventListener('load',function(){var b=0;
for(const i of document.images){if(!i.complete||i.naturalWidth===0)b++;}
document.body.setAttribute('data-broken-images',String(b));
document.body.setAttribute('data-images',String(document.images.length));});</script>"""


def exported(summaries: Sequence[Summary]) -> dict[str, list[dict]]:
    """The JSON of a sweep: each surface's best run, and each task's summary with its runs."""
    return {"surfaces": [s.runs[0].as_dict() for s in summaries if s.problem in SURFACES],
            "tasks": [s.as_dict() for s in summaries if s.problem not in SURFACES]}


def write(report: Report, out: str) -> str:
    """Write ``out/index.html``, ``out/runs.csv`` and ``out/runs.json``; returns the page."""
    os.makedirs(out, exist_ok=True)
    took = f" in {report.seconds:.0f} s" if report.seconds else ""
    report.summaries = list({id(s): s for s in report.summaries}.values())  # each once
    mark_ties(report.summaries)
    style = styles([s.optimizer for s in report.summaries])
    surfaces = [s for s in report.summaries if s.problem in SURFACES]
    tasks = [s for s in report.summaries if s.problem not in SURFACES]
    parts = [f"<h1>optimlab report</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M')}{took}. "
             f"Every optimizer's learning rate is tuned on a log grid with a fixed budget; "
             f"trainable tasks re-run the best setting with several seeds.</p>"]
    seeds = sorted({len(s.runs) for s in tasks})
    if seeds:
        few = (f" <b>Only {seeds[0]} seed{'s' * (seeds[0] != 1)}</b> here (a quick run; "
               f"<code>optimlab compare</code> uses 5 by default): the intervals are rough and "
               f"a real difference is rarely detected, so the tied groups are generous."
               if seeds[0] < 5 else "")
        parts.append(
            f"<p class='note'>Trainable tasks: the learning rate is tuned on seed {TUNING_SEED} "
            f"and the reported runs use {'/'.join(map(str, seeds))} other seeds, so the "
            f"selection does not flatter the reported numbers. 95 % CI: percentile bootstrap "
            f"of the mean over the seeds (10,000 resamples, fixed generator; too narrow for "
            f"few seeds). Rows tied with the best (highlighted) are not different from it by "
            f"Welch's t-test, Holm-corrected, α = {ALPHA:g}.{few}</p>")
    if surfaces:
        parts.append("<h2>2-D surfaces</h2>")
        for name in sorted({s.problem for s in surfaces}):
            rows = [s.runs[0] for s in sorted((s for s in surfaces if s.problem == name),
                                              key=lambda s: (s.mean, s.optimizer))]
            parts.append(f"<h3>{html.escape(name)}</h3>" + _table(
                ["rank", "optimizer", "lr", "final loss", "distance to minimum",
                 "steps to target"],
                [(i, r.optimizer, f"{r.lr:.3g}", "diverged" if r.diverged else _fmt(r.final),
                  _fmt(r.distance), r.steps_to_target or "—")
                 if r.not_applicable is None else
                 ("—", r.optimizer, "—", f"not applicable: {r.not_applicable}", "—", "—")
                 for i, r in enumerate(rows, 1)])
                + "<p class='tie'>Deterministic runs (one fixed start, no data noise): no "
                  "confidence interval or tie test applies.</p>")
    if tasks:
        parts.append("<h2>Trainable tasks: leaderboards</h2>")
        names = sorted({s.problem for s in tasks})
        for name in names:
            ranked = sorted((s for s in tasks if s.problem == name),
                            key=lambda s: (s.mean, s.optimizer))
            spec = get_task(name)
            parts.append(f"<h3>{html.escape(name)} — {html.escape(spec.description)} "
                         f"({html.escape(spec.label)}, target {spec.target:g})</h3>" + _table(
                             ["rank", "optimizer", "lr", "final (mean)", "± std", "95 % CI",
                              "tied with best", "best", "steps to target", "s to target",
                              "seconds"],
                             [(i, s.optimizer, f"{s.lr:.3g}", _fmt(s.mean), _std(s), _ci(s),
                               _tied(s, i), _fmt(s.best), _fmt(s.steps_to_target),
                               _fmt(s.seconds_to_target),
                               _fmt(sum(r.seconds for r in s.runs) / len(s.runs)))
                              if s.not_applicable is None else
                              ("—", s.optimizer, "—", f"not applicable: {s.not_applicable}",
                               *["—"] * 7)
                              for i, s in enumerate(ranked, 1)],
                             ["tied" if s.tied_with_best else "" for s in ranked])
                         + _tied_group(ranked)
                         + _budget([s for s in ranked if s.not_applicable is None],
                                   spec.steps))
            parts.append(curves(name, [s for s in ranked if s.not_applicable is None], style))
        if len(names) > 1:
            applicable = [s for s in tasks if s.not_applicable is None]
            taus = profile_breakpoints(applicable, TAUS)
            parts.append("<h2>Performance profile</h2>" + profile(
                performance_profile(applicable, taus), taus, tasks=len(names),
                seeds=seeds_in_words([len(s.runs) for s in tasks]), style=style))
    if report.classics:
        parts.append("<h2>The classic comparisons, re-run here</h2>"
                     + _table(["claim", "what we observe"], report.classics))
    if report.properties:
        parts.append("<h2>Properties, measured</h2>" + _table(
            ["optimizer", "adaptive per-coordinate lr", "share of a 1000× gradient passed",
             "consistent units", "units ratio", "escapes saddles easily", "steps to escape"],
            [(p.optimizer, "yes" if p.adaptive else "no", f"{p.gradient_scale_passed:.3g}",
              "yes" if p.consistent_units else "no", f"{p.units_ratio:.3g}",
              "yes" if p.escapes_saddle else "no", p.saddle_steps)
             if p.not_applicable is None else
             (p.optimizer, f"not applicable: {p.not_applicable}", *["—"] * 5)
             for p in report.properties]))
    if report.ablation:
        from .ablation import changes

        rows = [(u, f"{m:.4f}", f"{s:.4f}", c) for u, m, s, c in changes(report.ablation)]
        parts.append("<h2>Upgrading the network, one step at a time (digits, test error)</h2>"
                     + _table(["upgrade", "mean", "± std", "change"], rows))
    if report.animations:
        parts.append("<h2>Animations</h2>")
        for path in report.animations:
            parts.append(f"<h3>{html.escape(os.path.basename(path))}</h3>" + animation(path))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>optimlab report</title>"
            f"<style>{STYLE}</style>{CHECK}</head><body>{''.join(parts)}</body></html>")
    index = os.path.join(out, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(page)
    # a row per run made: a not-applicable optimizer made none (runs.json says why)
    runs = [{"kind": kind, "tuned_lr": s.lr, **{k: v for k, v in r.as_dict().items()
                                                if k != "curve"}}
            for kind, group in (("surface", surfaces), ("task", tasks))
            for s in group if s.not_applicable is None for r in s.runs]
    with open(os.path.join(out, "runs.json"), "w") as f:
        json.dump({**exported(report.summaries),
                   "properties": [p.as_dict() for p in report.properties]}, f, indent=1)
    if runs:
        keys = list(dict.fromkeys(k for row in runs for k in row))
        with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(runs)
    return index
