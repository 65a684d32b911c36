""""Upgrade the network": start from a poor digits classifier (sigmoid, N(0, 1) weights, plain
SGD, raw pixel values) and add one improvement at a time — standardized inputs, ReLU, He
initialization, batch norm, Adam, a learning-rate schedule, early stopping — measuring the mean
test error over seeds after each."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import data
from .. import nn as onn
from ..init import apply as init_apply
from ..optim import SGD, Adam
from ..train import EarlyStopping, Trainer

__all__ = ["UPGRADES", "Row", "ablate", "run_config", "changes"]

#: the upgrades in the order they are added; each row has all upgrades up to its own.
UPGRADES = ("baseline", "+ standardized inputs", "+ ReLU", "+ He init", "+ batch norm",
            "+ Adam", "+ cosine LR schedule", "+ early stopping")


@dataclass
class Row:
    upgrade: str
    errors: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def std(self) -> float:
        return statistics.stdev(self.errors) if len(self.errors) > 1 else 0.0


def run_config(level: int, seed: int, epochs: int = 12) -> float:
    """Test error of the network with the first ``level`` upgrades, trained from ``seed``."""
    splits = data.digits(seed=0)
    train, val, test = splits.train, splits.val, splits.test
    if level >= 1:
        scaler = data.Standardize().fit(train.x)
        train, val, test = (data.Split(scaler.transform(s.x), s.y) for s in (train, val, test))
    torch.manual_seed(seed)
    model = onn.MLP(64, [128, 128], 10, activation="relu" if level >= 2 else "sigmoid",
                    norm="batch" if level >= 4 else None)
    init_apply(model, weight="he_normal" if level >= 3 else "normal:1.0", bias="zeros",
               seed=seed)
    opt = Adam(model.parameters(), lr=1e-3) if level >= 5 else SGD(model.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs) \
        if level >= 6 else None
    callbacks = [EarlyStopping("val_loss", patience=3)] if level >= 7 else []
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy, train, val=val,
                      batch_size=32, scheduler=schedule, callbacks=callbacks, progress=False,
                      seed=seed)
    trainer.fit(epochs)
    return trainer.evaluate(test)["error"]


def ablate(seeds: int = 3, epochs: int = 12,
           on_run: Callable[[str, int, float], None] | None = None) -> list[Row]:
    """One row per upgrade: the test errors over ``seeds`` seeds."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be a positive integer")
    rows = []
    for level, name in enumerate(UPGRADES):
        errors = []
        for seed in range(seeds):
            errors.append(run_config(level, seed, epochs))
            if on_run:
                on_run(name, seed, errors[-1])
        rows.append(Row(name, errors))
    return rows


def changes(rows: list[Row]) -> list[tuple[str, float, float, str]]:
    """(upgrade, mean, std, change from the previous row) for tables."""
    out, previous = [], None
    for row in rows:
        out.append((row.upgrade, row.mean, row.std,
                    "" if previous is None else f"{row.mean - previous:+.4f}"))
        previous = row.mean
    return out
