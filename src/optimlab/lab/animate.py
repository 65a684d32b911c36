"""Animations and figures: optimizer trajectories on a 2-D surface, the escape from a saddle
point, and the effect of a too-small, good and too-large learning rate.

An optimizer that has no meaning on a vector of 2 numbers (see
:func:`optimlab.lab.construct.not_applicable`) is left out of an animation, which names it and
the reason under the plot."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..optim import get
from .construct import not_applicable
from .problems import Surface, get_surface
from .protocol import sweep

__all__ = ["trajectory", "animate_surface", "animate_saddle", "learning_rate_figure"]

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8")


def trajectory(f: Callable[[Tensor], Tensor], start: Sequence[float], optimizer: str, lr: float,
               steps: int) -> Tensor:
    """The iterates θ₀ … θ_steps (float64) of ``optimizer`` on ``f``; stops early on overflow."""
    theta = torch.nn.Parameter(torch.tensor(list(start), dtype=torch.float64))
    opt = get(optimizer, [theta], lr=lr, engine="reference")
    points = [theta.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        value = f(theta)
        if not torch.isfinite(value) or value.abs() > 1e12:
            break
        value.backward()
        opt.step()
        points.append(theta.detach().clone())
    return torch.stack(points)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _applicable(optimizers: Sequence[str], start: Sequence[float]
                ) -> tuple[list[str], str]:
    """The optimizers that apply to a vector like ``start``, and a note naming the others."""
    theta = [torch.tensor(list(start), dtype=torch.float64)]
    reasons = {name: not_applicable(name, theta) for name in optimizers}
    # the reason's first clause (Muon's goes on to say how to build its param groups)
    skipped = [f"{name} ({why.split(':')[0]})" for name, why in reasons.items()
               if why is not None]
    note = f"not applicable to a vector of {len(start)} numbers: {'; '.join(skipped)}" \
        if skipped else ""
    return [name for name, why in reasons.items() if why is None], note


def _animate(f, bounds, paths: dict[str, Tensor], path: str, title: str, frames: int,
             fps: int, levels, note: str = "", labels: tuple[str, str] = ("θ₁", "θ₂")) -> str:
    """The paths drawn step by step over the contours of ``f``, as a GIF of ``frames`` frames.

    The figure (contours, axes, legend) is drawn once; each frame restores it and draws only the
    paths and the legend above them (blitting) — matplotlib's ``FuncAnimation.save`` redraws
    the whole figure twice per frame, four times slower for the same pictures."""
    import numpy as np
    from PIL import Image

    plt = _plt()
    (x0, x1), (y0, y1) = bounds
    xs, ys = torch.linspace(x0, x1, 200, dtype=torch.float64), torch.linspace(y0, y1, 200,
                                                                              dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    z = torch.vmap(f)(torch.stack([gx.flatten(), gy.flatten()], dim=1)).view(gx.shape)
    fig, ax = plt.subplots(figsize=(6, 4.6))
    ax.contour(gx.numpy(), gy.numpy(), z.numpy(), levels=levels, cmap="viridis",
               linewidths=0.6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"{labels[0]} (dimensionless)")
    ax.set_ylabel(f"{labels[1]} (dimensionless)")
    if note:
        fig.text(0.01, 0.01, note, fontsize=6, wrap=True, va="bottom")
        fig.subplots_adjust(bottom=0.2)  # the axis label clear of the note
    lines = {}
    for (name, points), color in zip(paths.items(), COLORS, strict=False):
        (line,) = ax.plot([], [], "-o", color=color, markersize=2, linewidth=1.2, label=name,
                          animated=True)
        lines[name] = (line, points)
    legend = ax.legend(fontsize=7, loc="upper right") if lines else None
    if legend is not None:
        legend.set_animated(True)
    longest = max((len(p) for p in paths.values()), default=1)
    frames = min(frames, longest)
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    images = []
    for frame in range(frames):
        upto = 1 + math.ceil((longest - 1) * frame / max(frames - 1, 1))
        fig.canvas.restore_region(background)
        for line, points in lines.values():
            shown = points[:upto]
            line.set_data(shown[:, 0].numpy(), shown[:, 1].numpy())
            ax.draw_artist(line)
        if legend is not None:
            ax.draw_artist(legend)
        images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
    plt.close(fig)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps),
                   loop=0)
    return path


def animate_surface(surface: str | Surface, optimizers: Sequence[str], path: str, *,
                    steps: int = 300, frames: int = 60, fps: int = 15) -> str:
    """A GIF of each optimizer's path (at its best learning rate on a log grid) on the contour
    plot of a 2-D surface (its ``f`` evaluated on the plot's grid with ``torch.vmap``: tensor
    operations, no Python branch on the values)."""
    s = get_surface(surface) if isinstance(surface, str) else surface
    optimizers, note = _applicable(optimizers, s.start)
    best = {r.optimizer: r.lr for r in sweep([s.name], optimizers, steps=steps)}
    paths = {f"{name} (lr {best[name]:.2g})": trajectory(s.f, s.start, name, best[name], steps)
             for name in optimizers}
    levels = torch.logspace(-1, math.log10(max(float(s.f(torch.tensor(s.start,
                                                                     dtype=torch.float64))),
                                                   1.0)) + 1, 25).numpy()
    return _animate(s.f, s.bounds, paths, path, f"{s.name}: {steps} steps", frames, fps, levels,
                    note)


def saddle(t: Tensor) -> Tensor:
    """x² − y²: a saddle point at the origin."""
    return t[0] ** 2 - t[1] ** 2


def animate_saddle(optimizers: Sequence[str], path: str, *, lr: float = 0.01,
                   steps: int = 300, frames: int = 60, fps: int = 15) -> str:
    """A GIF of the escape from the saddle of x² − y², starting at (1, 10⁻³), all optimizers at
    the same learning rate."""
    optimizers, note = _applicable(optimizers, (1.0, 1e-3))
    paths = {name: trajectory(saddle, (1.0, 1e-3), name, lr, steps) for name in optimizers}
    clipped = {n: p[(p[:, 1].abs() <= 2.0).cumprod(0).bool()] for n, p in paths.items()}
    return _animate(saddle, ((-1.2, 1.2), (-2.0, 2.0)), clipped, path,
                    f"escaping the saddle x² − y² (lr {lr:g})", frames, fps,
                    torch.linspace(-4, 1.5, 23).numpy(), note, ("x", "y"))


def learning_rate_figure(path: str, *, curvature: float = 2.0, steps: int = 30) -> str:
    """Gradient descent on f(x) = ½·a·x² with a too-small (0.1/a), good (1/a) and too-large
    (2.1/a, divergent) learning rate: the iterates on the parabola and the loss per step."""
    plt = _plt()
    a = curvature
    rates = {"too small (0.1/a)": 0.1 / a, "good (1/a)": 1.0 / a, "too large (2.1/a)": 2.1 / a}
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    xs = torch.linspace(-3, 3, 200)
    left.plot(xs.numpy(), (0.5 * a * xs**2).numpy(), color="#999999")
    for (label, lr), color in zip(rates.items(), COLORS, strict=False):
        points = trajectory(lambda t: 0.5 * a * t[0] ** 2, (2.5,), "sgd", lr, steps)[:, 0]
        shown = points[points.abs() <= 3]
        left.plot(shown.numpy(), (0.5 * a * shown**2).numpy(), "-o", color=color,
                  markersize=3, label=label)
        right.semilogy((0.5 * a * points**2 + 1e-16).numpy(), color=color, label=label)
    left.set_title("iterates on f(x) = ½ a x²", fontsize=10)
    left.set_xlabel("x (dimensionless)")
    left.set_ylabel("f(x) (dimensionless)")
    right.set_title("loss per step", fontsize=10)
    right.set_xlabel("step (gradient-descent updates)")
    right.set_ylabel("f(x), log scale")
    left.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
