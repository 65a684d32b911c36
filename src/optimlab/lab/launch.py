"""One training job on a lab task, in one process or data-parallel over the processes torchrun
started (``optimlab train``), with its history, checkpoints and throughput."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..optim import get
from ..train import Trainer, distributed
from .construct import parameters
from .tasks import get_task

__all__ = ["train_task", "torchrun_command", "launch"]


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that runs ``optimlab <argv>`` in ``nproc`` processes on this machine;
    ``--nproc-per-node`` is taken out of ``argv`` (each process is one of them)."""
    args, rest = [], iter(argv)
    for arg in rest:
        if arg == "--nproc-per-node":
            next(rest, None)
        elif not arg.startswith("--nproc-per-node="):
            args.append(arg)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "optimlab.cli", *args]


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``optimlab <argv>`` in ``nproc`` processes with torchrun, the machine's cores
    shared out between them (``OMP_NUM_THREADS``, unless set); returns torchrun's exit code."""
    threads = str(max(1, (os.cpu_count() or 1) // nproc))
    env = {"OMP_NUM_THREADS": threads, **os.environ}
    return subprocess.call(torchrun_command(nproc, argv), env=env)


def train_task(task: str, optimizer: str = "adam", lr: float = 1e-3, *, epochs: int = 5,
               batch_size: int | None = None, strategy: str = "ddp", engine: str = "auto",
               checkpoint_dir: str | None = None, checkpoint_every: int | None = None,
               resume: bool = False, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train ``optimizer`` on ``task`` for ``epochs`` epochs with global batch ``batch_size``
    (the task's own by default). Under torchrun every process calls this; the model is spread
    with ``strategy`` (see :mod:`optimlab.train.distributed`). Returns the history, the test
    metric and the training throughput (the same on every rank).
    """
    spec = get_task(task)
    batch_size = batch_size or spec.batch_size
    world = distributed.init_from_env()
    if not world.main:
        warnings.simplefilter("ignore")  # rank 0 speaks for everyone
    model, train, test = spec.build(seed)
    spread = strategy if distributed.active() else None
    if spread:
        model = distributed.parallelize(model, spread)
    opt = distributed.make_optimizer(functools.partial(get, optimizer),
                                     parameters(optimizer, model), spread, lr=lr, engine=engine)
    # what a checkpoint of this run must have been written by to be resumed (the number of
    # processes, the strategy and the engine may change; epochs may be added)
    run = {"task": task, "optimizer": optimizer, "lr": lr, "batch_size": batch_size,
           "seed": seed}
    trainer = Trainer(model, opt, spec.loss, train, test=test, batch_size=batch_size,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                      progress=progress, seed=seed, run=run)
    if spread:
        torch.distributed.barrier()
    start = time.perf_counter()
    history = trainer.fit(epochs, resume=resume)
    seconds = time.perf_counter() - start
    return {"task": task, "optimizer": optimizer, "lr": lr, "epochs": epochs,
            "batch_size": batch_size, "processes": world.size,
            "strategy": spread or "none", "seconds": seconds,
            "samples_per_second": trainer.examples / seconds if seconds > 0 else None,
            "history": history.rows}
