"""Reference runs: the same small training problem under torch.optim, Keras 3 and optimlab.

The problem is a 4-6-1 tanh network fitted by mean squared error on a fixed sequence of
mini-batches, so every implementation sees the same gradients at the same parameters.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from .database import OptimizerInfo

os.environ.setdefault("KERAS_BACKEND", "torch")

STEPS = 100
OPTIONS = ("clipnorm", "global_clipnorm", "clipvalue", "gradient_accumulation_steps")


def initial_parameters(dtype: torch.dtype = torch.float64, complex: bool = False):
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 4), (6,), (1, 6), (1,)]
    params = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in shapes]
    if complex:
        params[0] = torch.complex(params[0], torch.randn((6, 4), generator=gen,
                                                         dtype=torch.float64) * 0.5)
    return [p.to(params[0].dtype if complex and i == 0 else dtype) for i, p in enumerate(params)]


def batches(count: int, dtype: torch.dtype = torch.float64):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 4, generator=gen, dtype=torch.float64).to(dtype),
             torch.randn(16, 1, generator=gen, dtype=torch.float64).to(dtype))
            for _ in range(count)]


def loss_fn(params, batch) -> torch.Tensor:
    w1, b1, w2, b2 = params
    x, y = batch
    if w1.is_complex():  # a complex first layer: |x W1ᵀ| feeds the real network
        h = torch.tanh((x.to(w1.dtype) @ w1.T).abs() + b1)
    else:
        h = torch.tanh(x @ w1.T + b1)
    return ((h @ w2.T + b2 - y) ** 2).mean()


def flat(params) -> torch.Tensor:
    return torch.cat([torch.view_as_real(p).flatten() if p.is_complex() else p.flatten()
                      for p in params]).detach()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def micro_steps(hp: dict[str, Any], steps: int) -> int:
    return steps * hp.get("gradient_accumulation_steps", 1)


def run_optimlab(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS,
                 scheduler=None, dtype=torch.float64, complex: bool = False):
    """Train with the optimlab optimizer; returns (params, optimizer)."""
    params = [torch.nn.Parameter(p) for p in initial_parameters(dtype, complex)]
    opt = info.make(params, **hp)
    sched = scheduler(opt) if scheduler else None
    data = batches(micro_steps(hp, steps), dtype)
    for batch in data:
        opt.zero_grad()
        loss_fn(params, batch).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return params, opt


def _emulated_gradients(params, data, k: int, hp: dict[str, Any]):
    """Mean gradient of k micro-batches, clipped as hp says, with torch.nn.utils."""
    grads = None
    for batch in data:
        g = torch.autograd.grad(loss_fn(params, batch), params)
        grads = list(g) if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
    for p, g in zip(params, grads, strict=True):
        p.grad = g / k
    if "clipnorm" in hp:
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], hp["clipnorm"])
    if "global_clipnorm" in hp:
        torch.nn.utils.clip_grad_norm_(params, hp["global_clipnorm"])
    if "clipvalue" in hp:
        torch.nn.utils.clip_grad_value_(params, hp["clipvalue"])


def run_torch(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS, scheduler=None,
              complex: bool = False):
    """Train with torch.optim's class of the same name (single-tensor implementation)."""
    k = hp.get("gradient_accumulation_steps", 1)
    kwargs = {key: v for key, v in hp.items() if key not in OPTIONS}
    params = [torch.nn.Parameter(p) for p in initial_parameters(complex=complex)]
    opt = getattr(torch.optim, info.reference_name)(params, foreach=False, **kwargs)
    sched = scheduler(opt) if scheduler else None
    data = batches(micro_steps(hp, steps))
    for i in range(steps):
        _emulated_gradients(params, data[i * k:(i + 1) * k], k, hp)
        # optimlab's scheduler steps after every micro-step; the update comes at the k-th
        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()"
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(k - 1 if sched is not None else 0):
                sched.step()
        opt.step()
        if sched is not None:
            sched.step()
    return params


_KERAS_NAMES = {"lr": "learning_rate", "eps": "epsilon", "alpha": "rho",
                "lr_power": "learning_rate_power", "l1": "l1_regularization_strength",
                "l2": "l2_regularization_strength",
                "l2_shrinkage": "l2_shrinkage_regularization_strength"}


def keras_kwargs(hp: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in hp.items():
        if key == "betas":
            out["beta_1"], out["beta_2"] = value
        else:
            out[_KERAS_NAMES.get(key, key)] = value
    return out


def run_keras(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS):
    """Train with keras.optimizers' class (Keras 3 on the torch backend, float64)."""
    import keras

    keras.config.set_floatx("float64")
    variables = [keras.Variable(p.numpy(), dtype="float64") for p in initial_parameters()]
    opt = getattr(keras.optimizers, info.reference_name)(**keras_kwargs(hp))
    for batch in batches(micro_steps(hp, steps)):
        values = [v.value.detach().clone().requires_grad_() for v in variables]
        grads = torch.autograd.grad(loss_fn(values, batch), values)
        opt.apply_gradients(zip(grads, variables, strict=True))
    return [v.value.detach() for v in variables]


def run_derivation(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS):
    """Nadamax written out from its papers, element by element, without the transforms.

    Dozat (2016) Nadam with the momentum schedule μ_t = β₁(1 − ½·0.96^{tψ}), and Kingma & Ba
    (2015, §7.1) Adamax's u_t = max(β₂u_{t−1}, |g_t|): torch flavor puts ε inside the max (as
    torch's Adamax), keras flavor adds it to u_t (as Keras' Adamax).
    """
    defaults = info.cls.DEFAULTS[info.flavor]
    lr = hp.get("lr", defaults["lr"])
    b1, b2 = hp.get("betas", defaults["betas"])
    eps = hp.get("eps", defaults["eps"])
    psi = hp.get("momentum_decay", defaults["momentum_decay"])
    params = initial_parameters()
    m = [torch.zeros_like(p) for p in params]
    u = [torch.zeros_like(p) for p in params]
    prod = 1.0
    for t, batch in enumerate(batches(steps), start=1):
        values = [p.clone().requires_grad_() for p in params]
        grads = torch.autograd.grad(loss_fn(values, batch), values)
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod *= mu_t
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            if info.flavor == "torch":
                u[i] = torch.maximum(b2 * u[i], g.abs() + eps)
                denominator = u[i]
            else:
                u[i] = torch.maximum(b2 * u[i], g.abs())
                denominator = u[i] + eps
            m_hat = (1 - mu_t) * g / (1 - prod) + mu_next * m[i] / (1 - prod * mu_next)
            params[i] = params[i] - lr * m_hat / denominator
    return params


def run_reference(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS):
    runner = {"torch": run_torch, "keras": run_keras, "derivation": run_derivation}
    return runner[info.reference](info, hp, steps)
