"""Continuation: optimize the Gaussian-blurred objective J_σ(θ) = E_ε[J(θ + σε)], with σ
decreasing to 0, so early steps see a smoothed landscape without its small local minima
(Mobahi & Fisher, AAAI 2015)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Continuation"]


class Continuation:
    r"""Wraps an optimizer: each :meth:`step` estimates ∇J_σ by averaging the gradients at K
    perturbed points, :math:`\nabla J_\sigma(\theta) \approx \frac1K\sum_k \nabla J(\theta +
    \sigma\varepsilon_k)`, and lets the optimizer take that step.

    Args:
        optimizer: any torch optimizer over the parameters.
        sigma: the initial blur σ₀ > 0.
        steps: the number of steps over which σ goes to 0.
        samples: K, the perturbations per step.
        schedule: ``"linear"`` σₜ = σ₀(1 − t/T), ``"cosine"`` σₜ = σ₀(1 + cos(πt/T))/2, or a
            function t ↦ σₜ.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, sigma: float, steps: int, *,
                 samples: int = 8, schedule: str | Callable[[int], float] = "linear",
                 seed: int = 0):
        if not sigma > 0:
            raise ValueError(f"sigma={sigma!r} must be > 0")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} must be a positive integer")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples={samples!r} must be a positive integer")
        if isinstance(schedule, str) and schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule={schedule!r} must be 'linear', 'cosine' or a function")
        self.optimizer, self.sigma0, self.steps = optimizer, sigma, steps
        self.samples, self.schedule = samples, schedule
        self.generator = torch.Generator().manual_seed(seed)
        self.t = 0

    def sigma(self) -> float:
        if callable(self.schedule):
            return float(self.schedule(self.t))
        progress = min(self.t / self.steps, 1.0)
        if self.schedule == "linear":
            return self.sigma0 * (1 - progress)
        return self.sigma0 * (1 + math.cos(math.pi * progress)) / 2

    def step(self, loss_fn: Callable[[], Tensor]) -> float:
        """``loss_fn()`` evaluates J at the current parameters; returns the mean loss."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        sigma = self.sigma()
        start = [p.detach().clone() for p in params]
        total = [torch.zeros_like(p) for p in params]
        losses = 0.0
        samples = self.samples if sigma > 0 else 1
        for _ in range(samples):
            with torch.no_grad():
                for p, p0 in zip(params, start, strict=True):
                    noise = torch.randn(p.shape, generator=self.generator, dtype=p.dtype)
                    p.copy_(p0 + sigma * noise.to(p.device))
            loss = loss_fn()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(total, grads, strict=True):
                if g is not None:
                    acc.add_(g)
            losses += float(loss.detach())
        with torch.no_grad():
            for p, p0, acc in zip(params, start, total, strict=True):
                p.copy_(p0)
                p.grad = acc / samples
        self.optimizer.step()
        self.t += 1
        return losses / samples
