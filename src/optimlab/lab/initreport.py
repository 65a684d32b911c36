"""The classic initialization experiment (``optimlab init-report``): a deep MLP at
initialization, its per-layer activation and gradient statistics as a table, a figure and a
CSV (see :func:`optimlab.init.diagnose`)."""

from __future__ import annotations

import csv
import os

import torch

from .. import init
from .. import nn as onn

__all__ = ["init_report"]


def init_report(out: str, *, depth: int = 10, width: int = 500, activation: str = "tanh",
                initializer: str = "normal:0.01", batch: int = 1000, seed: int = 0
                ) -> tuple[init.Diagnosis, str, str]:
    """Diagnose a ``depth``-layer MLP of ``width`` units with ``activation``, weights from
    ``initializer`` and zero biases, on ``batch`` standard-normal inputs; writes
    ``out/activations.png`` and ``out/layers.csv``. Returns the diagnosis and both paths.
    An unknown activation (see :func:`optimlab.nn.names`) or initializer raises ValueError.
    """
    onn.get(activation)  # an unknown one raises before anything is built
    weights = init.get(initializer)
    layers: list[torch.nn.Module] = []
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), onn.get(activation)]
    model = init.apply(torch.nn.Sequential(*layers), weight=weights, bias="zeros", seed=seed)
    inputs = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
    diagnosis = init.diagnose(model, inputs)
    os.makedirs(out, exist_ok=True)
    title = f"{depth}×{width} MLP, {activation}, init {initializer}"
    png = diagnosis.plot(os.path.join(out, "activations.png"), title=title)
    table = os.path.join(out, "layers.csv")
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(diagnosis.rows()[0]))
        writer.writeheader()
        writer.writerows(diagnosis.rows())
    return diagnosis, png, table
