"""Model builders used by the lab: an MLP and a small CNN, with a choice of activation,
normalization, initialization, dropout and skip connections."""

from __future__ import annotations

import math

from torch import Tensor, nn

from ..init import apply as apply_init
from .activations import get as get_activation

__all__ = ["MLP", "SmallCNN"]

NORMS = (None, "batch", "layer")


class _Block(nn.Module):
    """Linear → [norm] → activation → [dropout], with an identity skip when shapes allow."""

    def __init__(self, d_in: int, d_out: int, activation: str, norm: str | None, dropout: float,
                 skip: bool):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.norm = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[norm](d_out) if norm \
            else nn.Identity()
        self.activation = get_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.skip = skip and d_in == d_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.dropout(self.activation(self.norm(self.linear(x))))
        return x + y if self.skip else y


def _check(norm: str | None, dropout: float) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1)")


class MLP(nn.Sequential):
    """Flatten → hidden blocks → Linear head.

    Args:
        d_in: input features (inputs are flattened).
        hidden: widths of the hidden layers.
        d_out: outputs (classes).
        activation: an id of :func:`optimlab.nn.get` ("relu", "tanh", ...).
        norm: None, "batch" or "layer".
        init: weight initializer id for every Linear layer (biases zero); None keeps torch's.
        dropout: dropout probability after each hidden block.
        skip: identity skip connections around equal-width blocks.
    """

    def __init__(self, d_in: int, hidden: list[int], d_out: int, *, activation: str = "relu",
                 norm: str | None = None, init: str | None = None, dropout: float = 0.0,
                 skip: bool = False):
        _check(norm, dropout)
        widths = [d_in, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        layers += [_Block(a, b, activation, norm, dropout, skip)
                   for a, b in zip(widths, widths[1:], strict=False)]
        layers.append(nn.Linear(widths[-1], d_out))
        super().__init__(*layers)
        if init is not None:
            apply_init(self, weight=init, bias="zeros")


class SmallCNN(nn.Module):
    """Two conv blocks (conv 3×3 → [batch norm] → activation → 2×2 max-pool) and an MLP head.

    Args:
        shape: input (channels, height, width).
        classes: outputs.
        channels: the two conv widths.
        skip: a 1×1-projected residual connection around each conv block.
    """

    def __init__(self, shape: tuple[int, int, int], classes: int, *,
                 channels: tuple[int, int] = (16, 32), activation: str = "relu",
                 norm: str | None = None, init: str | None = None, dropout: float = 0.0,
                 skip: bool = False):
        super().__init__()
        if norm not in (None, "batch"):
            raise ValueError(f"norm={norm!r} is not one of (None, 'batch') for SmallCNN")
        _check(norm, dropout)
        c, h, w = shape
        blocks, skips = [], []
        for width in channels:
            blocks.append(nn.Sequential(
                nn.Conv2d(c, width, 3, padding=1),
                nn.BatchNorm2d(width) if norm else nn.Identity(),
                get_activation(activation)))
            skips.append(nn.Conv2d(c, width, 1) if skip else None)
            c, h, w = width, h // 2, w // 2
        self.blocks = nn.ModuleList(blocks)
        self.skips = nn.ModuleList([s or nn.Identity() for s in skips])
        self.use_skip = skip
        self.pool = nn.MaxPool2d(2)
        self.head = MLP(c * h * w, [max(32, math.isqrt(c * h * w) * 4)], classes,
                        activation=activation, dropout=dropout)
        if init is not None:
            apply_init(self, weight=init, bias="zeros")

    def forward(self, x: Tensor) -> Tensor:
        for block, skip in zip(self.blocks, self.skips, strict=True):
            y = block(x)
            x = self.pool(y + skip(x) if self.use_skip else y)
        return self.head(x)
