"""Initialization diagnostics: per-layer activation and gradient statistics, flags, histograms.

The experiments that show why N(0, 0.01) with tanh collapses to zero, why N(0, 1) saturates,
and why Xavier (tanh) and He (ReLU) keep the variance constant across depth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["LayerStats", "Diagnosis", "diagnose", "ACTIVATIONS"]

#: the modules whose outputs are the layers' activations.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Tanh, nn.Sigmoid, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Softplus,
    nn.Softsign, nn.Hardsigmoid, nn.Hardtanh, nn.ReLU6, nn.CELU, nn.Mish, nn.PReLU, nn.RReLU,
)
#: bounded activations and the threshold beyond which an output counts as saturated
SATURATION = {nn.Tanh: (-0.99, 0.99), nn.Sigmoid: (0.01, 0.99), nn.Hardsigmoid: (1e-6, 1 - 1e-6),
              nn.Hardtanh: (-1 + 1e-6, 1 - 1e-6), nn.Softsign: (-0.9, 0.9)}
VANISHING, EXPLODING, SATURATED, DEAD = 0.1, 10.0, 0.5, 0.5


@dataclass
class LayerStats:
    """Statistics of one layer's output on a batch.

    Attributes:
        saturated: fraction of outputs in a bounded activation's flat tails.
        dead: fraction of units (features) that output zero for every example (ReLU family).
        grad_std: std of the loss gradient with respect to this output.
        flag: "ok", "vanishing", "exploding", "saturated" or "dead".
    """

    index: int
    name: str
    kind: str
    mean: float
    std: float
    saturated: float
    dead: float
    grad_std: float
    flag: str = "ok"


@dataclass
class Diagnosis:
    """Per-layer statistics in execution order, with the raw activations for histograms."""

    layers: list[LayerStats]
    activations: list[Tensor] = field(repr=False, default_factory=list)

    def flags(self) -> list[str]:
        return [layer.flag for layer in self.layers]

    def rows(self) -> list[dict]:
        return [asdict(layer) for layer in self.layers]

    def table(self):
        """A rich Table of the statistics."""
        from rich.table import Table

        table = Table(title="activations and gradients per layer")
        for column in ("layer", "module", "mean", "std", "saturated", "dead", "grad std",
                       "flag"):
            table.add_column(column, justify="left" if column in ("module", "flag") else "right")
        for s in self.layers:
            style = "" if s.flag == "ok" else "bold red"
            table.add_row(str(s.index), f"{s.name} ({s.kind})", f"{s.mean:+.3f}", f"{s.std:.3g}",
                          f"{s.saturated:.0%}", f"{s.dead:.0%}", f"{s.grad_std:.3g}",
                          f"[{style}]{s.flag}[/]" if style else s.flag)
        return table

    def plot(self, path: str, title: str = "") -> str:
        """Per-layer histograms of the activations, written as a PNG; returns the path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(self.layers)
        fig, axes = plt.subplots(1, n, figsize=(1.9 * n + 1, 2.6), sharey=True, squeeze=False)
        for ax, stats, values in zip(axes[0], self.layers, self.activations, strict=True):
            data = values.flatten().float().numpy()
            ax.hist(data, bins=40, color="#d62728" if stats.flag != "ok" else "#1f77b4")
            ax.set_title(f"layer {stats.index}\nstd {stats.std:.2g}\n{stats.flag}", fontsize=8)
            ax.tick_params(labelsize=6)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _flag(stats: LayerStats, reference_std: float) -> str:
    if stats.saturated > SATURATED:
        return "saturated"
    if stats.dead > DEAD:
        return "dead"
    if stats.std < VANISHING * reference_std:
        return "vanishing"
    if stats.std > EXPLODING * reference_std:
        return "exploding"
    return "ok"


def diagnose(model: nn.Module, inputs: Tensor, targets: Tensor | None = None,
             loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None, *,
             seed: int = 0) -> Diagnosis:
    """Run one forward and backward pass and collect per-layer statistics.

    The layers are the activation modules (or, in a model without any, the Linear/Conv layers)
    in execution order. Without ``loss_fn`` the loss is a fixed random projection of the output,
    ⟨r, f(x)⟩ with r ~ N(0, 1), so the gradient reaching the output has unit variance.

    A layer is flagged *saturated* (over half its outputs in a bounded activation's tails),
    *dead* (over half its units zero on the whole batch), *vanishing* (std below a tenth of the
    first layer's) or *exploding* (above ten times), else *ok*.
    """
    modules = [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)]
    if not modules:
        modules = [(n, m) for n, m in model.named_modules()
                   if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    records: list[tuple[str, nn.Module, Tensor]] = []

    def hook(name):
        def capture(module, args, output):
            output.retain_grad()
            records.append((name, module, output))
        return capture

    handles = [m.register_forward_hook(hook(n)) for n, m in modules]
    was_training = model.training
    try:
        output = model(inputs)
        if loss_fn is not None and targets is not None:
            loss = loss_fn(output, targets)
        else:
            gen = torch.Generator().manual_seed(seed)
            r = torch.randn(output.shape, generator=gen, dtype=output.dtype)
            loss = (output * r.to(output.device)).sum()
        model.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers, activations = [], []
    for index, (name, module, out) in enumerate(records, start=1):
        values = out.detach()
        bounds = next((b for kind, b in SATURATION.items() if isinstance(module, kind)), None)
        saturated = ((values <= bounds[0]) | (values >= bounds[1])).float().mean().item() \
            if bounds else 0.0
        units = values.reshape(values.shape[0], -1) if values.dim() > 1 else values[:, None]
        dead = (units == 0).all(dim=0).float().mean().item()
        grad = out.grad if out.grad is not None else torch.zeros_like(values)
        layers.append(LayerStats(index, name or type(module).__name__, type(module).__name__,
                                 values.mean().item(), values.std().item(), saturated, dead,
                                 grad.std().item()))
        activations.append(values.cpu())
    reference = layers[0].std if layers else 1.0
    for stats in layers:
        stats.flag = _flag(stats, reference)
    return Diagnosis(layers, activations)
