"""Polyak averaging of a model's weights: uniform and exponential moving averages, swapped in
for evaluation, with batch-norm statistics recomputed for the averaged weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage"]


class WeightAverage:
    r"""Running average of ``model``'s parameters.

    * ``mode="uniform"`` (Polyak & Juditsky 1992): :math:`\bar\theta_n = \bar\theta_{n-1} +
      (\theta_n - \bar\theta_{n-1})/n`, as ``torch.optim.swa_utils.AveragedModel``;
    * ``mode="ema"``: :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta`, as
      ``AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(d))``; with ``warmup`` the decay is
      :math:`\min(d, (1+n)/(10+n))` so early averages forget the initialization faster.

    The first update copies the weights. Call :meth:`update` after each optimizer step; it
    averages every ``every``-th call. Use ``with avg.swapped(): evaluate(model)`` to evaluate
    the averaged weights, and :meth:`recompute_batchnorm` to give them their own batch-norm
    statistics (the running statistics of the raw weights do not fit the averaged ones).
    """

    def __init__(self, model: nn.Module, mode: str = "ema", decay: float = 0.999, *,
                 warmup: bool = False, every: int = 1):
        if mode not in ("ema", "uniform"):
            raise ValueError(f"mode={mode!r} must be 'ema' or 'uniform'")
        if not 0 <= decay < 1:
            raise ValueError(f"decay={decay!r} must be in [0, 1)")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be a positive integer")
        self.model, self.mode, self.decay = model, mode, decay
        self.warmup, self.every = warmup, every
        self.params = [p.detach().clone() for p in model.parameters()]
        self.buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        self.n_averaged = 0
        self.calls = 0

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1 + self.n_averaged) / (10 + self.n_averaged))
        return self.decay

    @torch.no_grad()
    def update(self) -> None:
        self.calls += 1
        if (self.calls - 1) % self.every:
            return
        current = [p.detach() for p in self.model.parameters()]
        if self.n_averaged == 0:
            for avg, p in zip(self.params, current, strict=True):
                avg.copy_(p)
        elif self.mode == "uniform":
            for avg, p in zip(self.params, current, strict=True):
                avg.add_((p - avg) / (self.n_averaged + 1))
        else:
            weight = 1 - self.current_decay()
            for avg, p in zip(self.params, current, strict=True):
                avg.lerp_(p, weight)
        self.n_averaged += 1

    @contextlib.contextmanager
    def swapped(self) -> Iterator[nn.Module]:
        """Put the averaged weights (and their batch-norm statistics) into the model; restore
        the trained ones on exit."""
        saved_params = [p.detach().clone() for p in self.model.parameters()]
        saved_buffers = {k: b.detach().clone() for k, b in self.model.named_buffers()}
        with torch.no_grad():
            for p, avg in zip(self.model.parameters(), self.params, strict=True):
                p.copy_(avg)
            for name, b in self.model.named_buffers():
                b.copy_(self.buffers[name])
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for p, value in zip(self.model.parameters(), saved_params, strict=True):
                    p.copy_(value)
                for name, b in self.model.named_buffers():
                    b.copy_(saved_buffers[name])

    @torch.no_grad()
    def recompute_batchnorm(self, batches: Iterable[Tensor | tuple]) -> None:
        """Recompute every batch norm's running mean and variance for the averaged weights over
        ``batches`` (inputs, or (inputs, ...) tuples), as ``torch.optim.swa_utils.update_bn``."""
        norms = [m for m in self.model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        with self.swapped() as model:
            was_training = model.training
            momenta = {m: m.momentum for m in norms}
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the batches
            model.train()
            for batch in batches:
                model(batch[0] if isinstance(batch, tuple | list) else batch)
            for m in norms:
                m.momentum = momenta[m]
            model.train(was_training)
            self.buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
