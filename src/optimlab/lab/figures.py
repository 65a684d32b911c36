"""The report's figures, each an HTML ``<figure>``: the PNG (embedded), and a ``<figcaption>``
that says what is plotted, in which units, what the band is and over how many seeds.

Every optimizer keeps one style in every figure (:func:`styles`): a colour, a line style and a
marker, cycled so that 40 optimizers still differ in colour × line style (and the markers in a
cycle of 7 on top). The performance profile labels each line at its right end (labels pushed
apart so none overlaps another) and repeats them in a legend outside the axes; coinciding lines
stay visible through markers staggered along each step.

Each ``<figure>`` carries what was drawn, for a reader that cannot see the picture (a test, a
screen reader): ``alt`` text, ``data-labels`` (the line labels on the plot) and, for the
profile, ``data-overlapping-labels`` (pairs of line labels whose boxes overlap; 0 when
readable).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence

from . import stats
from .problems import SURFACES
from .protocol import TUNING_SEED, Summary
from .tasks import get_task

__all__ = ["styles", "curves", "profile", "animation", "figure", "seeds_in_words"]

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: the font size of the line labels, in points
LABEL_POINTS = 7.0


def styles(names: Sequence[str]) -> dict[str, dict]:
    """name → matplotlib keywords (color, linestyle, marker), by the names' sorted order."""
    return {name: {"color": COLORS[i % len(COLORS)],
                   "linestyle": LINESTYLES[(i // len(COLORS)) % len(LINESTYLES)],
                   "marker": MARKERS[i % len(MARKERS)]}
            for i, name in enumerate(sorted(set(names)))}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def figure(data: str, mime: str, alt: str, caption: str, labels: Sequence[str] = (),
           **attributes: object) -> str:
    """An HTML ``<figure>``: the embedded image, its caption (HTML), the drawn labels."""
    extra = "".join(f' data-{k.replace("_", "-")}="{html.escape(str(v))}"'
                    for k, v in attributes.items())
    return (f'<figure data-labels="{html.escape("|".join(labels))}"{extra}>'
            f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def seeds_in_words(counts: Sequence[int]) -> str:
    """[2, 2] → "2 seeds"; [1, 3] → "1 to 3 seeds"."""
    low, high = min(counts, default=0), max(counts, default=0)
    if low == high:
        return f"{low} seed{'s' * (low != 1)}"
    return f"{low} to {high} seeds"


def _band(values: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per evaluation, the 95 % percentile-bootstrap interval of the mean over the seeds."""
    intervals = [stats.bootstrap_ci(column) for column in zip(*values, strict=True)]
    return [low for low, _ in intervals], [high for _, high in intervals]


def curves(task: str, summaries: Sequence[Summary], style: dict[str, dict] | None = None
           ) -> str:
    """The task's metric against the step (mean over the seeds, 95 % CI band) and its
    learning-rate sensitivity on the tuning seed, as a ``<figure>``."""
    plt = _plt()
    spec = get_task(task)
    style = style or styles([s.optimizer for s in summaries])
    n = len(summaries)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    labels, used, left_out, banded = [], [], [], False
    for i, s in enumerate(summaries):
        kept = [r for r in s.runs if r.curve]
        if not kept:
            continue
        length = max(len(r.curve) for r in kept)
        full = [r for r in kept if len(r.curve) == length]  # a diverged run stops early
        steps = [p["step"] for p in full[0].curve]
        series = [[p["test"] for p in r.curve] for r in full]
        mean = [sum(v) / len(v) for v in zip(*series, strict=True)]
        label = f"{s.optimizer} (lr {s.lr:.2g})"
        keywords = {**style[s.optimizer], "markersize": 4,
                    "markevery": (i % 4, 4) if len(steps) > 8 else None}
        left.plot(steps, mean, label=label, linewidth=1.3, **keywords)
        if len(series) > 1:
            low, high = _band(series)
            left.fill_between(steps, low, high, color=style[s.optimizer]["color"], alpha=0.15,
                              linewidth=0)
            banded = True
        used.append(len(series))
        if len(full) < len(s.runs):
            left_out.append(f"{html.escape(s.optimizer)} {len(s.runs) - len(full)} of "
                            f"{len(s.runs)}")
        labels.append(label)
        lrs = sorted(s.sensitivity)
        right.plot(lrs, [s.sensitivity[lr] if math.isfinite(s.sensitivity[lr]) else math.nan
                         for lr in lrs], linewidth=1.0, markersize=4, **style[s.optimizer])
    unit = f"{spec.label} ({spec.unit})"
    left.set_title(f"{task}: {spec.label} during training", fontsize=9)
    left.set_xlabel("training step (optimizer updates)")
    left.set_ylabel(unit)
    right.set_xscale("log")
    right.set_title(f"learning-rate sensitivity (seed {TUNING_SEED})", fontsize=9)
    right.set_xlabel("learning rate (log scale)")
    right.set_ylabel(f"final {unit}")
    if labels:
        fig.legend(*left.get_legend_handles_labels(), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=min(5, max(1, n)), fontsize=7,
                   frameon=False)
    fig.tight_layout()
    seeds = seeds_in_words(used)
    if not banded:
        band = ("one seed per optimizer, so no band: a confidence interval of the mean needs "
                "at least two")
    else:
        band = ("the band is the 95 % confidence interval of that mean at each evaluation, a "
                "percentile bootstrap over the seeds (optimlab.lab.stats.bootstrap_ci, 10,000 "
                "resamples; at the last step it is the table's 95 % CI; too narrow with few "
                "seeds)" + ("; optimizers with one seed have no band" if min(used) == 1
                            else ""))
    dropped = (f" Runs that diverged stop early and are left out of the mean: "
               f"{', '.join(left_out)}." if left_out else "")
    caption = (f"<b>{html.escape(task)}</b>. Left: the {html.escape(unit)} against the "
               f"training step, each optimizer at its tuned learning rate (legend), the mean "
               f"over {seeds} (seeds {TUNING_SEED + 1}…); {band}.{dropped} Right: the final "
               f"{html.escape(unit)} of every learning rate of the grid (log scale, "
               f"dimensionless) on the tuning seed {TUNING_SEED}; a missing point diverged.")
    return figure(_png(fig), "image/png", f"{task} curves: {', '.join(labels)}", caption,
                  labels)


def _spread(values: list[float], gap: float, low: float, high: float) -> list[float]:
    """Positions near ``values`` (any order), at least ``gap`` apart, kept in [low, high]
    where there is room."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    placed = [0.0] * len(values)
    previous = -math.inf
    for i in order:
        placed[i] = previous = max(values[i], low, previous + gap)
    ceiling = high
    for i in reversed(order):
        placed[i] = ceiling = min(placed[i], ceiling)
        ceiling -= gap
    return placed


def _text_boxes(fig, texts) -> list:
    """The window extents of the texts alone (an annotation's own extent has its line)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, renderer) for t in texts]


def profile(shares: dict[str, list[float]], taus: Sequence[float], *, tasks: int,
            seeds: str, style: dict[str, dict] | None = None) -> str:
    """The performance profile ρ(τ) of every optimizer (``shares``: name → ρ at each τ, from
    :func:`optimlab.lab.protocol.performance_profile`), as a ``<figure>``."""
    plt = _plt()
    style = style or styles(list(shares))
    names = sorted(shares)
    n = len(names)
    height = max(3.4, 0.16 * n + 1.4)  # room for one label line per optimizer
    fig, ax = plt.subplots(figsize=(7.0, height))
    low, high = -0.03, 1.03
    for i, name in enumerate(names):
        ys = shares[name]
        ax.step(taus, ys, where="post", color=style[name]["color"],
                linestyle=style[name]["linestyle"], linewidth=1.3)
        # one marker per step, staggered so that lines which coincide stay distinguishable
        at = [tau * (nxt / tau) ** ((i + 0.5) / n) for tau, nxt in zip(taus, taus[1:],
                                                                        strict=False)]
        ax.plot(at, ys[:len(at)], linestyle="none", color=style[name]["color"],
                marker=style[name]["marker"], markersize=4)
        ax.plot([], [], label=name, linewidth=1.3, markersize=4, **style[name])
    ax.set_xscale("log", base=2)
    ax.set_xlim(taus[0] * 0.95, taus[-1] * 1.02)
    ax.set_ylim(low, high)
    ax.set_xlabel("τ: steps to target ÷ the fewest of any optimizer (ratio, log₂ scale)")
    ax.set_ylabel("share of tasks within τ (fraction)")
    fig.tight_layout()
    axis_inches = ax.get_position().height * height
    gap = (LABEL_POINTS * 1.3 / 72) / axis_inches * (high - low)
    ends = [shares[name][-1] for name in names]
    spots = _spread(ends, gap, low, high)
    texts = [ax.annotate(name, xy=(taus[-1], end), xytext=(1.03, spot),
                         textcoords=("axes fraction", "data"), va="center",
                         fontsize=LABEL_POINTS, color=style[name]["color"],
                         annotation_clip=False,
                         arrowprops={"arrowstyle": "-", "linewidth": 0.5,
                                     "color": style[name]["color"]})
             for name, end, spot in zip(names, ends, spots, strict=True)]
    boxes = _text_boxes(fig, texts)
    overlapping = sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    to_axes = ax.transAxes.inverted()
    right = max((to_axes.transform(box.get_points())[1, 0] for box in boxes), default=1.0)
    ax.legend(loc="upper left", bbox_to_anchor=(right + 0.04, 1.0), fontsize=LABEL_POINTS,
              frameon=False, ncol=1 + n // 26)
    caption = (f"Performance profile (Dolan &amp; Moré 2002) over {tasks} task"
               f"{'s' * (tasks != 1)}: for each optimizer, the share of tasks (y, a fraction "
               f"from 0 to 1) on which its median steps to the task's target — over {seeds} at "
               f"its tuned learning rate — are at most τ times the fewest of any optimizer (x, "
               f"a ratio, log₂ scale); a target never reached is never within τ. Each line is "
               f"labelled at its right end and in the legend; coinciding lines are told apart "
               f"by colour, line style and staggered markers. No band: a profile counts tasks, "
               f"it is not a mean over seeds.")
    return figure(_png(fig), "image/png", f"performance profile: {', '.join(names)}", caption,
                  [t.get_text() for t in texts], overlapping_labels=overlapping)


def _animation_caption(name: str) -> str:
    stem, extension = os.path.splitext(name)
    if name == "learning_rates.png":
        return ("Gradient descent on f(x) = ½·a·x² (a = 2) with a too small (0.1/a), a good "
                "(1/a) and a too large (2.1/a) learning rate. Left: the iterates on the "
                "parabola (x and f(x), dimensionless); right: f(x) per step (log scale). "
                "Deterministic: one run each, no band.")
    if stem == "saddle":
        return ("Escape from the saddle point of f(x, y) = x² − y² from (1, 10⁻³), every "
                "optimizer at the same learning rate: the path of (x, y) (dimensionless) over "
                "contours of f. Deterministic: one run each, no band; optimizers that do not "
                "apply to a vector of 2 numbers are named under the plot.")
    if extension == ".gif":
        where = (f"the {stem} surface" if stem in SURFACES else
                 "a 2-D surface (named in the plot's title)")
        return (f"Trajectories on {html.escape(where)}: the path of θ = (θ₁, θ₂) "
                f"(dimensionless) over log-spaced contours of the loss, each optimizer at its "
                f"best learning rate of a log grid (legend). Deterministic: one run each, no "
                f"band; optimizers that do not apply to a vector of 2 numbers are named under "
                f"the plot.")
    return html.escape(name)


def animation(path: str) -> str:
    """An animation or figure file written by :mod:`optimlab.lab.animate`, as a
    ``<figure>`` with its caption."""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    name = os.path.basename(path)
    mime = "image/gif" if path.endswith(".gif") else "image/png"
    return figure(data, mime, name, _animation_caption(name))
