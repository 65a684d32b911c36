"""The training loop: forward, loss, backward, step, with evaluation, schedules, callbacks,
atomic checkpoints and exact resume.

The data order is a function of (seed, epoch) alone, and a checkpoint holds the model, the
optimizer, the scheduler, every random generator and the position inside the epoch, so a run
killed at any moment and resumed ends with the same bits as one that never stopped.

Under torch.distributed (a DDP, ZeroRedundancyOptimizer or FSDP2 model, launched by torchrun)
each process takes its share of every global batch, weighted so the averaged gradient is the
global batch's; rank 0 alone shows progress and writes checkpoints, which hold the full state
and resume at any number of processes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from ..naming import unknown
from ..optim import stepping
from . import distributed
from .checkpoint import latest, load_latest, save_atomic

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "verdict"]


@dataclass
class History:
    """One row per epoch: epoch, step, lr, seconds, and loss/error per split."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[Any]:
        return [row.get(key) for row in self.rows]

    def to_csv(self, path: str) -> None:
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)

    def to_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.rows, f, indent=2)


class Callback:
    """Hooks into :meth:`Trainer.fit`; set ``trainer.stop = True`` to end training."""

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best`` the model ends with the weights of the best epoch.

    Stops at the end of epoch b + patience, where b is the last improving epoch.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 5,
                 min_delta: float = 0.0, restore_best: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} must be 'min' or 'max'")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience={patience!r} must be an integer >= 0")
        if min_delta < 0:
            raise ValueError(f"min_delta={min_delta!r} must be >= 0")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best: float | None = None
        self.best_epoch = 0
        self.best_state: dict[str, Tensor] | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, logs):
        if self.monitor not in logs or logs[self.monitor] is None:
            have = [k for k, v in logs.items() if v is not None]
            raise KeyError(f"EarlyStopping's monitor: {unknown('metric', self.monitor, have)}")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, logs["epoch"], 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone()
                                   for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = logs["epoch"]
                trainer.stop = True

    def on_train_end(self, trainer):
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_state": self.best_state, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        for key, value in state.items():
            setattr(self, key, value)


def verdict(train_error: float | None, val_error: float | None, train_loss: float,
            val_loss: float | None, *, gap: float = 0.05, high: float = 0.1) -> str:
    """"underfitting" when the training error (or, without errors, loss) stays above ``high``;
    "overfitting" when validation is worse than training by more than ``gap`` (absolute error,
    or relative loss); else "good fit"."""
    if val_loss is None:
        return "unknown (no validation data)"
    if train_error is not None and val_error is not None:
        if train_error > high:
            return "underfitting"
        return "overfitting" if val_error - train_error > gap else "good fit"
    if val_loss > (1 + gap) * train_loss + 1e-12 and val_loss - train_loss > 1e-3:
        return "overfitting"
    return "good fit"


def _tensors(data) -> tuple[Tensor, ...] | None:
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if hasattr(data, "tensors"):
        return tuple(data.tensors)
    return None


class Trainer:
    """Train ``model`` with ``optimizer`` on ``train`` (a Split, a TensorDataset or any Dataset
    of (input, target) pairs).

    Args:
        loss_fn: ``loss_fn(output, target)`` → scalar.
        val, test: evaluated after every epoch.
        batch_size: examples per step (``None``: full batch).
        scheduler: any torch LR scheduler, stepped per ``"epoch"`` or per ``"step"``;
            ReduceLROnPlateau gets ``plateau_metric`` (default ``val_loss``).
        callbacks: e.g. :class:`EarlyStopping`.
        checkpoint_dir: where checkpoints go; ``checkpoint_every`` steps and at every epoch end.
        nonfinite: a NaN/Inf loss ``"stop"``s training with a message, or is ``"skip"``ped.
        classification: report the error rate (argmax ≠ target); default: integer targets.
        progress: a progress bar (rich, on rank 0 only); False for scripts.
        seed: fixes the data order and the RNGs (rank r's generators start at seed + r).
        run: what identifies the run (task, optimizer, hyper-parameters), saved in every
            checkpoint: resuming a checkpoint whose run differs is refused, naming the
            differences, instead of loading one run's state into another.

    Any optimizer trains, optimlab's or torch's (:mod:`optimlab.optim.stepping`):

    * one whose step needs a closure (L-BFGS) gets one that re-evaluates the batch;
    * one with a ``loss_scale_factor`` (Keras') back-propagates the scaled loss, as Keras'
      ``Model.fit`` does (the history reports the loss itself);
    * one with separate training and evaluation points (Schedule-Free's ``train()`` /
      ``eval()``) is in training mode for the steps and in evaluation mode for each epoch's end
      (evaluation, callbacks, checkpoint), so the history reports, and :meth:`fit` leaves the
      model at, the point to evaluate;
    * one that keeps a moving average of the weights (Keras' ``use_ema``) writes it into the
      model at the end of :meth:`fit`, before the callbacks' ``on_train_end``, as Keras'
      ``Model.fit`` does.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Tensor, Tensor], Tensor], train: Dataset, *,
                 val: Dataset | None = None, test: Dataset | None = None,
                 batch_size: int | None = 64, scheduler: Any = None,
                 scheduler_interval: str = "epoch", plateau_metric: str = "val_loss",
                 callbacks: Sequence[Callback] = (), checkpoint_dir: str | None = None,
                 checkpoint_every: int | None = None, nonfinite: str = "stop",
                 classification: bool | None = None, progress: bool = True, seed: int = 0,
                 run: dict[str, Any] | None = None):
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval={scheduler_interval!r} must be 'epoch' or "
                             f"'step'")
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"nonfinite={nonfinite!r} must be 'stop' or 'skip'")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer or None")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={checkpoint_every!r} must be >= 1")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.train_data, self.val_data, self.test_data = train, val, test
        self.batch_size = batch_size
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.plateau_metric = plateau_metric
        self.callbacks = list(callbacks)
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, checkpoint_every
        self.world = distributed.world()
        self.nonfinite, self.seed, self.run = nonfinite, seed, run
        self.progress = progress and self.world.main
        if classification is None:
            first_target = train[0][1]
            classification = torch.is_tensor(first_target) and not first_target.is_floating_point()
        self.classification = classification
        if (isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                and plateau_metric not in self.metrics()):
            raise ValueError(f"plateau_metric: {unknown('metric', plateau_metric, self.metrics())}"
                             f" (val_ and test_ metrics need the val and test splits)")
        self.history = History()
        self.epoch = 0  # completed epochs
        self.batch = 0  # batches done in the current epoch
        self.step = 0  # optimizer steps in total
        self.skipped = 0  # batches skipped for a non-finite loss
        self.examples = 0  # examples trained on by this Trainer object (all ranks), for speed
        self.stop = False
        self._partial = {"loss": 0.0, "errors": 0.0, "count": 0}

    def metrics(self) -> list[str]:
        """The metrics of every epoch's logs (``plateau_metric`` must be one, checked when the
        Trainer is made): the training loss, the validation and test losses where those splits
        are given, and the error rates with classification."""
        splits = ["train"] + [name for name, data in (("val", self.val_data),
                                                       ("test", self.test_data))
                              if data is not None]
        kinds = ("loss", "error") if self.classification else ("loss",)
        return [f"{split}_{kind}" for split in splits for kind in kinds]

    # ------------------------------------------------------------------------------ data
    def _order(self, epoch: int) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_data), generator=gen)

    def _batches(self, data, order: Tensor, start: int = 0) -> Iterator[tuple[Any, Any, int]]:
        """(inputs, targets, global batch size): this rank's share of each batch of ``order``."""
        size = self.batch_size or len(order)
        tensors = _tensors(data)
        for first in range(start * size, len(order), size):
            index = order[first:first + size]
            local = index[self.world.rank::self.world.size]
            if tensors is not None:
                yield *(t[local] for t in tensors), len(index)
            else:  # an empty share keeps the shapes of one example
                batch = default_collate([data[i] for i in (local if len(local) else
                                                           index[:1]).tolist()])
                yield *(b[:len(local)] for b in batch), len(index)

    def _batch_count(self) -> int:
        size = self.batch_size or len(self.train_data)
        return math.ceil(len(self.train_data) / size)

    # ----------------------------------------------------------------------- evaluation
    def evaluate(self, data) -> dict[str, float | None]:
        """Mean loss (and error rate) over ``data`` in eval mode, at the optimizer's point to
        evaluate the model at (Schedule-Free's average x: the optimizer is put in its
        evaluation mode, and stays there until the next training epoch)."""
        distributed.mode(self.optimizer, training=False)
        return self._evaluate(data)

    @torch.no_grad()
    def _evaluate(self, data) -> dict[str, float | None]:
        """:meth:`evaluate` in the optimizer's current mode (the end of an epoch has switched
        it once for every split: under ZeRO each switch broadcasts the parameters)."""
        was_training = self.model.training
        self.model.eval()
        total, errors, count = 0.0, 0.0, 0
        # every rank runs every batch on its share (FSDP2 gathers parameters collectively)
        for x, y, _ in self._batches(data, torch.arange(len(data))):
            out = self.model(x)
            if len(y):
                total += self.loss_fn(out, y).item() * len(y)
                if self.classification:
                    errors += (out.argmax(-1) != y).sum().item()
                count += len(y)
        self.model.train(was_training)
        total, errors, count = distributed.all_sum([total, errors, count])
        return {"loss": total / count, "error": errors / count if self.classification else None}

    # ---------------------------------------------------------------------- checkpoints
    def _rng_state(self) -> dict[str, Any]:
        """This process's generators: torch's CPU one, Python's, NumPy's and, once CUDA is in
        use, every CUDA device's (dropout on a GPU draws from those)."""
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": np.random.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        """The generators of :meth:`_rng_state`; the CUDA ones of the devices this process has
        (none when it resumes on a machine without a GPU, where the run cannot be bit-exact
        anyway: its kernels are others)."""
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        cuda = state.get("cuda", [])
        if cuda and torch.cuda.is_available():
            for device, generator in enumerate(cuda[:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(generator, device)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, the model and optimizer whole (under torch.distributed a
        collective: every rank calls it; rank 0's copy is complete)."""
        return {"model": distributed.model_state(self.model),
                "optimizer": distributed.optimizer_state(self.model, self.optimizer),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "callbacks": [c.state_dict() for c in self.callbacks],
                "history": self.history.rows, "epoch": self.epoch, "batch": self.batch,
                "step": self.step, "skipped": self.skipped, "partial": dict(self._partial),
                "rng": distributed.gather_objects(self._rng_state()), "run": self.run}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("run")
        if self.run is not None and saved is not None and saved != self.run:
            differences = ", ".join(f"{k} {saved.get(k)!r} (now {self.run.get(k)!r})"
                                    for k in sorted(set(saved) | set(self.run))
                                    if saved.get(k) != self.run.get(k))
            raise ValueError(f"the checkpoint in {self.checkpoint_dir!r} is of another run: "
                             f"{differences}; resume with the run's own settings, or start "
                             f"this one in another checkpoint directory")
        distributed.load_state(self.model, self.optimizer, state["model"], state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        for callback, saved in zip(self.callbacks, state["callbacks"], strict=False):
            callback.load_state_dict(saved)
        self.history = History(list(state["history"]))
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.skipped, self._partial = state["skipped"], dict(state["partial"])
        rng = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if self.world.rank < len(rng):
            self._set_rng_state(rng[self.world.rank])
        else:  # more processes than wrote the checkpoint: a new rank gets fresh generators
            self._seed(self.seed * 1_000_003 + self.step)

    def _seed(self, seed: int) -> None:
        seed += self.world.rank
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)

    def checkpoint(self) -> str | None:
        """Write a checkpoint (rank 0 writes; every rank takes part in gathering the state)."""
        if self.checkpoint_dir is None:
            return None
        state = self.state_dict()
        if not self.world.main:
            return None
        return save_atomic(state, self.checkpoint_dir, self.step)

    # ----------------------------------------------------------------------------- fit
    def fit(self, epochs: int, *, resume: bool = False) -> History:
        """Train until ``epochs`` epochs are complete (or a callback stops it).

        With ``resume=True`` the newest complete checkpoint in ``checkpoint_dir`` is loaded
        first and training continues from exactly where it was written.
        """
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs={epochs!r} must be a positive integer")
        state = None
        if resume:
            if self.checkpoint_dir is None:
                raise ValueError("resume=True needs checkpoint_dir")
            state = load_latest(self.checkpoint_dir)
            if state is not None:
                self.load_state_dict(state)
        if (not resume or state is None) and self.step == 0 and self.batch == 0:
            if not resume and self.checkpoint_dir is not None and latest(self.checkpoint_dir):
                raise ValueError(
                    f"checkpoint_dir={self.checkpoint_dir!r} holds checkpoints of an earlier "
                    f"run ({os.path.basename(latest(self.checkpoint_dir)[0])}): resume=True "
                    f"(--resume) continues it; a new run needs an empty directory (it would "
                    f"mix its checkpoints with the old ones, and keeping the newest two would "
                    f"delete its own)")
            self._seed(self.seed)  # a fresh run; a continued fit keeps its RNG state
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"))
        with Progress(*columns, disable=not self.progress, transient=True) as bar:
            while self.epoch < epochs and not self.stop:
                task = bar.add_task("train", total=self._batch_count(), completed=self.batch,
                                    epoch=self.epoch + 1, loss=float("nan"))
                self._train_epoch(
                    (lambda loss, t=task: bar.update(t, advance=1, loss=loss)) if self.progress
                    else (lambda loss: None))
                if self.stop:
                    break
                self._end_epoch()
                bar.remove_task(task)
        distributed.finish(self.optimizer)  # Keras' use_ema: the averages into the weights
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    def _train_epoch(self, advance: Callable[[float], None]) -> None:
        self.model.train()
        distributed.mode(self.optimizer, training=True)
        order = self._order(self.epoch)
        for x, y, n in self._batches(self.train_data, order, start=self.batch):
            self.optimizer.zero_grad()
            out = self.model(x)
            loss = self._loss(out, y)
            value = loss.item()
            errors = int((out.argmax(-1) != y).sum()) if self.classification else 0
            if self.world.size > 1:
                loss = self._share(loss, y, n)
                total, errors = distributed.all_sum([value * len(y), errors])
                value = total / n
            if not math.isfinite(value):
                if self.nonfinite == "stop":
                    self.stop = True
                    raise FloatingPointError(
                        f"loss is {value} at epoch {self.epoch + 1}, batch {self.batch + 1} "
                        f"(step {self.step}); lower the learning rate, clip gradients, or pass "
                        f"nonfinite='skip'")
                self.skipped += 1
            else:
                stepping.scale_loss(self.optimizer, loss).backward()  # Keras' loss scaling
                stepping.step(self.optimizer, lambda x=x, y=y, n=n: self._closure(x, y, n))
                self.step += 1
                partial = self._partial
                partial["loss"] += value * n
                partial["errors"] += errors
                partial["count"] += n
                self.examples += n
                if self.scheduler is not None and self.scheduler_interval == "step":
                    self.scheduler.step()
            self.batch += 1
            advance(value)
            if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self.checkpoint()

    def _loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The batch's loss (a zero that keeps the graph for a process given no examples)."""
        return self.loss_fn(out, y) if len(y) else out.sum() * 0.0

    def _share(self, loss: Tensor, y: Tensor, n: int) -> Tensor:
        """This process's loss weighed by its share of the global batch of ``n`` (processes
        average gradients)."""
        return loss * (len(y) * self.world.size / n)

    def _closure(self, x: Tensor, y: Tensor, n: int) -> Tensor:
        """The batch's loss re-evaluated, gradients zeroed and back-propagated (weighed as the
        step's own loss), for an optimizer whose step needs a closure."""
        with torch.enable_grad():
            self.optimizer.zero_grad()
            loss = self._loss(self.model(x), y)
            if self.world.size > 1:
                loss = self._share(loss, y, n)
            loss.backward()
        return loss

    def _end_epoch(self) -> None:
        # evaluation, callbacks (EarlyStopping's best weights) and the checkpoint see the
        # point to evaluate at; the next epoch returns to the training point
        distributed.mode(self.optimizer, training=False)
        count = max(self._partial["count"], 1)
        logs: dict[str, Any] = {
            "epoch": self.epoch + 1, "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": self._partial["loss"] / count,
            "train_error": self._partial["errors"] / count if self.classification else None,
        }
        for name, data in (("val", self.val_data), ("test", self.test_data)):
            if data is not None:
                metrics = self._evaluate(data)
                logs[f"{name}_loss"], logs[f"{name}_error"] = metrics["loss"], metrics["error"]
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(logs[self.plateau_metric])
            else:
                self.scheduler.step()
        self.history.rows.append(logs)
        self.epoch += 1
        self.batch = 0
        self._partial = {"loss": 0.0, "errors": 0.0, "count": 0}
        for callback in self.callbacks:
            callback.on_epoch_end(self, logs)
        self.checkpoint()

    def verdict(self) -> str:
        """Over/underfitting from the last epoch's train/validation gap (see :func:`verdict`)."""
        if not self.history.rows:
            return "unknown (not trained)"
        last = self.history.rows[-1]
        return verdict(last.get("train_error"), last.get("val_error"), last["train_loss"],
                       last.get("val_loss"))
