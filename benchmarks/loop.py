"""Trainer overhead: optimlab's Trainer against a hand-written torch loop on the same model,
data, batches and optimizer, both recording the training loss and error, in one run (median
seconds per epoch over alternating rounds; nothing asserted).

    python benchmarks/loop.py [--epochs 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from optimlab import data
from optimlab import nn as onn
from optimlab.optim import Adam
from optimlab.train import Callback, Trainer


def setup(seed: int = 0):
    torch.manual_seed(seed)
    digits = data.digits(seed=0)
    scaler = data.Standardize().fit(digits.train.x)
    train = data.Split(scaler.transform(digits.train.x), digits.train.y)
    model = onn.MLP(64, [256, 256], 10)
    return train, model, Adam(model.parameters(), lr=1e-3)


def hand_loop(epochs: int, batch_size: int) -> list[float]:
    train, model, opt = setup()
    loss_fn = torch.nn.functional.cross_entropy
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch))
        total, errors = 0.0, 0
        for first in range(0, len(order), batch_size):
            index = order[first:first + batch_size]
            x, y = train.x[index], train.y[index]
            opt.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)  # the training loss and error the Trainer records
            errors += int((out.argmax(-1) != y).sum())
        times.append(time.perf_counter() - start)
    return times


class _Clock(Callback):
    def __init__(self):
        self.stamps = [time.perf_counter()]

    def on_epoch_end(self, trainer, logs):
        self.stamps.append(time.perf_counter())


def trainer_loop(epochs: int, batch_size: int) -> list[float]:
    train, model, opt = setup()
    clock = _Clock()
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy, train,
                      batch_size=batch_size, callbacks=[clock], progress=False)
    clock.stamps = [time.perf_counter()]
    trainer.fit(epochs)
    return [b - a for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    torch.set_num_threads(torch.get_num_threads())
    rounds = {"hand": [], "trainer": []}
    for _ in range(1 if args.quick else 3):  # alternate to spread the machine's noise
        rounds["hand"] += hand_loop(epochs, args.batch_size)[1:]
        rounds["trainer"] += trainer_loop(epochs, args.batch_size)[1:]
    hand, ours = (statistics.median(rounds[k]) for k in ("hand", "trainer"))
    print(f"hand-written loop {hand * 1e3:.1f} ms/epoch, Trainer {ours * 1e3:.1f} ms/epoch, "
          f"ratio {ours / hand:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
