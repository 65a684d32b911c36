"""Reference runs: the same small training problem under torch.optim, Keras 3 and optimlab.

The problem is a 4-6-1 tanh network fitted by mean squared error on a fixed sequence of
mini-batches, so every implementation sees the same gradients at the same parameters.

How two implementations are compared: step by step (:func:`step_errors`). Run freely for 100
steps, two correct implementations part by their rounding, and the trajectory amplifies that
difference by its own sensitivity, which no fixed tolerance can know: on the tests' converging
sets an ulp of the initial parameters moves the reference's final parameters by 1e-16 to 5e-14
(relative), but gradient ascent on the unbounded loss (SGD, maximize) grew the parameters to
3e37 and amplified an ulp to 3e-11 — and rounding alone to 2e-10, past a fixed 1e-10 on one
machine and not another. So every update starts both implementations from the reference's
parameters p_t (written in place; each keeps its own state, fed the same gradients), and the
error of that one update is measured relative to the reference's step |p_{t+1} − p_t|. It stays
at rounding level on any trajectory, contracting, diverging or chaotic, while a wrong update
(a sign, a bias correction, a state that drifts) is caught at the step where it happens.

``maximize=True`` sets maximize −loss (:func:`signed_loss`): the sign convention is tested on a
bounded run that descends the loss, not on one that climbs to overflow.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import warnings
from typing import Any

import torch

from .database import OptimizerInfo

os.environ.setdefault("KERAS_BACKEND", "torch")

STEPS = 100
OPTIONS = ("clipnorm", "global_clipnorm", "clipvalue", "gradient_accumulation_steps")


def initial_parameters(dtype: torch.dtype = torch.float64, complex: bool = False,
                       matrix_only: bool = False):
    """W1 (6, 4), b1 (6,), W2 (1, 6), b2 (1,); with ``matrix_only`` (an entry's
    ``OptimizerInfo.matrix_only``: Muon) the biases as the matrices (1, 6) and (1, 1) of the
    same values, which :func:`loss_fn` broadcasts alike (the same loss and gradients)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 4), (6,), (1, 6), (1,)]
    params = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in shapes]
    if complex:
        params[0] = torch.complex(params[0], torch.randn((6, 4), generator=gen,
                                                         dtype=torch.float64) * 0.5)
    if matrix_only:
        params = [p.reshape(1, -1) if p.dim() == 1 else p for p in params]
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


def signed_loss(params, batch, hp: dict[str, Any]) -> torch.Tensor:
    """The objective a set trains: the loss, or −loss for a ``maximize=True`` set, so that every
    run descends the (bounded below) loss while ``maximize`` still flips the sign of every
    gradient; an optimizer that ignored it would climb instead, visibly at its first step."""
    loss = loss_fn(params, batch)
    return -loss if hp.get("maximize") else loss


class Run:
    """One implementation training the reference problem, one update at a time.

    ``update(micro)`` makes one update from the micro-batches ``micro`` (k of them with
    ``gradient_accumulation_steps=k``); ``load(values)`` writes values into the parameters in
    place, keeping the optimizer's state, as a user editing a model between steps would.
    """

    params: list

    def parameters(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def load(self, values) -> None:
        with torch.no_grad():
            for p, v in zip(self.params, values, strict=True):
                p.copy_(v)

    def update(self, micro) -> None:
        raise NotImplementedError


class OptimlabRun(Run):
    """The optimlab optimizer; the scheduler, if any, steps after every micro-step.

    For an entry whose update is a sign (``info.sign_argument``, Lion), each update also
    records :attr:`ambiguous`: the coordinates (of :func:`flat`) whose sign argument was within
    its rounding bound of 0, where two correct implementations may step in opposite
    directions; :func:`step_errors` leaves those out, and only those."""

    def __init__(self, info: OptimizerInfo, hp: dict[str, Any], scheduler=None,
                 dtype=torch.float64, complex: bool = False, **kwargs):
        self.hp = hp
        self.sign_argument = info.sign_argument
        self.ambiguous: torch.Tensor | None = None
        self.params = [torch.nn.Parameter(p) for p in
                       initial_parameters(dtype, complex, info.matrix_only)]
        self.optimizer = info.make(self.params, **hp, **kwargs)
        self.scheduler = scheduler(self.optimizer) if scheduler else None

    def update(self, micro) -> None:
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            if last and self.sign_argument is not None:
                before = [(p.detach().clone(), {k: v.clone() for k, v in
                                                self.optimizer.state[p].items()})
                          for p in self.params]
            self.optimizer.zero_grad()
            signed_loss(self.params, batch, self.hp).backward()
            self.optimizer.step()
            if last and self.sign_argument is not None:
                self.ambiguous = self._ambiguous(before)
            if self.scheduler is not None:
                self.scheduler.step()

    def _ambiguous(self, before) -> torch.Tensor:
        """Where the update's sign argument was within its rounding bound of 0: computed from
        the state before the update and the gradient the chain received — ``.grad`` after the
        step (the base averages accumulated gradients and clips in place), negated with
        ``maximize``, plus the coupled L2 term."""
        group = self.optimizer.param_groups[0]
        masks = []
        for p, (value, state) in zip(self.params, before, strict=True):
            # before the first update the chain's buffers do not exist yet: they start at zero
            state = {**{k: torch.zeros_like(value) for k in self.optimizer.chain.state}, **state}
            grad = -p.grad if group["maximize"] else p.grad
            if group["weight_decay"] and not group["decoupled_weight_decay"]:
                grad = grad + group["weight_decay"] * value
            argument, bound = self.sign_argument(state, grad, group)
            masks.append((argument.abs() <= bound).flatten())
        return torch.cat(masks)


def _step_after_micro_steps(optimizer, scheduler, k: int) -> None:
    """One update after ``k`` micro-batches whose gradients are already in ``.grad``: optimlab's
    scheduler steps after every micro-step and the update comes at the k-th, so the reference's
    scheduler steps k − 1 times before its update and once after."""
    if scheduler is not None:
        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()"
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(k - 1):
                scheduler.step()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def torch_optimizer(name: str, params, **kwargs) -> torch.optim.Optimizer:
    """torch.optim's class ``name``, single-tensor (``foreach=False`` where it takes one)."""
    cls = getattr(torch.optim, name)
    if "foreach" in inspect.signature(cls).parameters:
        kwargs = {"foreach": False, **kwargs}
    return cls(params, **kwargs)


class TorchRun(Run):
    """torch.optim's class of the same name (single-tensor implementation); clipping and
    accumulation emulated with torch.nn.utils on the mean gradient of the micro-batches."""

    def __init__(self, info: OptimizerInfo, hp: dict[str, Any], scheduler=None,
                 complex: bool = False):
        self.hp = hp
        kwargs = {key: v for key, v in hp.items() if key not in OPTIONS}
        self.params = [torch.nn.Parameter(p) for p in
                       initial_parameters(complex=complex, matrix_only=info.matrix_only)]
        self.optimizer = torch_optimizer(info.reference_name, self.params, **kwargs)
        self.scheduler = scheduler(self.optimizer) if scheduler else None

    def update(self, micro) -> None:
        _emulated_gradients(self.params, micro, self.hp)
        _step_after_micro_steps(self.optimizer, self.scheduler, len(micro))


def _emulated_gradients(params, micro, hp: dict[str, Any]):
    """Mean gradient of the micro-batches, clipped as hp says, with torch.nn.utils."""
    grads = None
    for batch in micro:
        g = torch.autograd.grad(signed_loss(params, batch, hp), params)
        grads = list(g) if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
    for p, g in zip(params, grads, strict=True):
        p.grad = g / len(micro)
    if "clipnorm" in hp:
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], hp["clipnorm"])
    if "global_clipnorm" in hp:
        torch.nn.utils.clip_grad_norm_(params, hp["global_clipnorm"])
    if "clipvalue" in hp:
        torch.nn.utils.clip_grad_value_(params, hp["clipvalue"])


class PackageRun(Run):
    """A third-party package's optimizer (the entry's ``package``, ``"module:Class"``): the
    authors' implementations of Schedule-Free, Prodigy, ... The hyper-parameters its class takes
    by name are passed as they are (the entries use the package's names), or as the entry's
    ``reference_hp`` maps them to the package's keywords; clipping and
    accumulation are emulated as for torch.optim, and ``maximize=True``, which these packages
    lack, by descending the loss itself (the negated gradient of :func:`signed_loss`). Keys the
    class does not take are optimlab's own options: left out, so a set using one checks that
    it gives the package's update. An optimizer with ``train()`` (Schedule-Free) is put in
    training mode before its first step, as its package requires."""

    def __init__(self, info: OptimizerInfo, hp: dict[str, Any], scheduler=None):
        module, _, name = info.package.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if info.reference_hp is not None:  # our names mapped to the package's keywords
            kwargs = info.reference_hp(hp)
        else:
            accepted = inspect.signature(cls).parameters
            kwargs = {key: v for key, v in hp.items() if key in accepted and key not in OPTIONS}
        self.hp = hp
        self.params = [torch.nn.Parameter(p)
                       for p in initial_parameters(matrix_only=info.matrix_only)]
        self.optimizer = cls(self.params, **kwargs, **info.package_kwargs)
        if callable(getattr(self.optimizer, "train", None)):
            self.optimizer.train()
        self.scheduler = scheduler(self.optimizer) if scheduler else None

    def update(self, micro) -> None:
        _emulated_gradients(self.params, micro, self.hp)
        if self.hp.get("maximize"):
            for p in self.params:
                p.grad = -p.grad
        _step_after_micro_steps(self.optimizer, self.scheduler, len(micro))


_KERAS_NAMES = {"lr": "learning_rate", "eps": "epsilon", "alpha": "rho",
                "lr_power": "learning_rate_power", "l1": "l1_regularization_strength",
                "l2": "l2_regularization_strength",
                "l2_shrinkage": "l2_shrinkage_regularization_strength",
                "beta2_decay": "beta_2_decay", "d": "clip_threshold"}


def keras_kwargs(hp: dict[str, Any]) -> dict[str, Any]:
    """Our names as Keras' keywords; a pair ``eps`` (Adafactor's ε₁, ε₂) is Keras'
    ``epsilon_1, epsilon_2``."""
    out = {}
    for key, value in hp.items():
        if key == "betas":
            out["beta_1"], out["beta_2"] = value
        elif key == "eps" and isinstance(value, tuple | list):
            out["epsilon_1"], out["epsilon_2"] = value
        else:
            out[_KERAS_NAMES.get(key, key)] = value
    return out


class KerasRun(Run):
    """keras.optimizers' class (Keras 3 on the torch backend, float64); Keras accumulates and
    clips itself. The entry's ``reference_hp`` completes a set where our flavor's defaults are
    not Keras' (a torch-flavor Lion's ``lr``); ``maximize=True``, which Keras lacks, descends
    the loss itself (the negated gradient of :func:`signed_loss`), as PackageRun."""

    def __init__(self, info: OptimizerInfo, hp: dict[str, Any]):
        import keras

        keras.config.set_floatx("float64")
        self.hp = hp
        self.variables = [keras.Variable(p.numpy(), dtype="float64")
                          for p in initial_parameters(matrix_only=info.matrix_only)]
        given = info.reference_hp(hp) if info.reference_hp is not None else hp
        given = {key: value for key, value in given.items() if key != "maximize"}
        self.optimizer = getattr(keras.optimizers, info.reference_name)(**keras_kwargs(given))

    def parameters(self) -> list[torch.Tensor]:
        return [v.value.detach().clone() for v in self.variables]

    def load(self, values) -> None:
        for v, value in zip(self.variables, values, strict=True):
            v.assign(value)

    def update(self, micro) -> None:
        for batch in micro:
            values = [v.value.detach().clone().requires_grad_() for v in self.variables]
            grads = torch.autograd.grad(signed_loss(values, batch, self.hp), values)
            if self.hp.get("maximize"):
                grads = [-g for g in grads]
            self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))


class DerivationRun(Run):
    """Nadamax written out from its papers, element by element, without the transforms.

    Dozat (2016) Nadam with the momentum schedule μ_t = β₁(1 − ½·0.96^{tψ}), and Kingma & Ba
    (2015, §7.1) Adamax's u_t = max(β₂u_{t−1}, |g_t|): torch flavor puts ε inside the max (as
    torch's Adamax), keras flavor adds it to u_t (as Keras' Adamax).
    """

    def __init__(self, info: OptimizerInfo, hp: dict[str, Any]):
        defaults = info.cls.DEFAULTS[info.flavor]
        self.flavor, self.hp = info.flavor, hp
        self.lr = hp.get("lr", defaults["lr"])
        self.b1, self.b2 = hp.get("betas", defaults["betas"])
        self.eps = hp.get("eps", defaults["eps"])
        self.psi = hp.get("momentum_decay", defaults["momentum_decay"])
        self.params = initial_parameters()
        self.m = [torch.zeros_like(p) for p in self.params]
        self.u = [torch.zeros_like(p) for p in self.params]
        self.prod, self.t = 1.0, 0

    def load(self, values) -> None:
        self.params = [v.detach().clone() for v in values]

    def update(self, micro) -> None:
        (batch,) = micro
        b1, b2, eps = self.b1, self.b2, self.eps
        self.t += 1
        values = [p.clone().requires_grad_() for p in self.params]
        grads = torch.autograd.grad(signed_loss(values, batch, self.hp), values)
        mu_t = b1 * (1 - 0.5 * 0.96 ** (self.t * self.psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((self.t + 1) * self.psi))
        self.prod *= mu_t
        prod = self.prod
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            if self.flavor == "torch":
                self.u[i] = torch.maximum(b2 * self.u[i], g.abs() + eps)
                denominator = self.u[i]
            else:
                self.u[i] = torch.maximum(b2 * self.u[i], g.abs())
                denominator = self.u[i] + eps
            m_hat = (1 - mu_t) * g / (1 - prod) + mu_next * self.m[i] / (1 - prod * mu_next)
            self.params[i] = self.params[i] - self.lr * m_hat / denominator


def reference_run(info: OptimizerInfo, hp: dict[str, Any], scheduler=None) -> Run:
    """The entry's reference implementation, ready to train; with ``scheduler`` (a function of
    the optimizer) only where the reference takes one (``info.reference_takes_schedulers``)."""
    runner = {"torch": TorchRun, "keras": KerasRun, "derivation": DerivationRun,
              "package": PackageRun}
    if scheduler is None:
        return runner[info.reference](info, hp)
    if not info.reference_takes_schedulers:
        raise ValueError(f"{info.id}'s reference ({info.reference}) takes no torch scheduler")
    return runner[info.reference](info, hp, scheduler)


def updates(hp: dict[str, Any], steps: int, dtype: torch.dtype = torch.float64, start: int = 0):
    """The micro-batches of updates ``start`` to ``start + steps`` (k each with accumulation)."""
    k = hp.get("gradient_accumulation_steps", 1)
    data = batches((start + steps) * k, dtype)
    return [data[i * k:(i + 1) * k] for i in range(start, start + steps)]


def train(run: Run, hp: dict[str, Any], steps: int = STEPS, dtype=torch.float64) -> Run:
    """Free-running: ``steps`` updates, each from the run's own parameters."""
    for micro in updates(hp, steps, dtype):
        run.update(micro)
    return run


def step_errors(ours: Run, reference: Run, hp: dict[str, Any], steps: int = STEPS,
                dtype=torch.float64, start: int = 0) -> list[float]:
    """Both runs make updates ``start`` to ``start + steps``, each from the reference's
    parameters p_t; returns, per update, the difference of the two results relative to the
    reference's step, less a few roundings of the parameter itself:

        e_t = max_i (|a_i − r_i| − 4ε|r_i|)⁺ / max_i |r_i − p_i|

    (a = ours_{t+1}, r = ref_{t+1}, p = p_t, x⁺ = max(x, 0)).

    ε is the dtype's machine epsilon: the sums p − u and products p(1 − ηλ) round to an ulp of
    p in each implementation, whatever the step's size (which an exponential schedule shrinks
    to 1e-6 of p). Each update also checks the state both runs carried over from the previous
    ones (fed the same gradients), but no error is carried over in the parameters: e_t stays
    at rounding level however the trajectory behaves, and one wrong update shows.

    For a sign update (Lion), the coordinates ``ours.ambiguous`` marks — its sign argument
    within the rounding bound of 0 — are left out of that update's error; their number is
    added to ``ours.ambiguous_count``."""
    eps = torch.finfo(dtype).eps
    errors = []
    for micro in updates(hp, steps, dtype, start):
        before = reference.parameters()
        ours.load(before)
        ours.update(micro)
        reference.update(micro)
        expected = flat(reference.parameters())
        step = (expected - flat(before)).abs().max().item()
        excess = (flat(ours.parameters()) - expected).abs() - 4 * eps * expected.abs()
        ambiguous = getattr(ours, "ambiguous", None)
        if ambiguous is not None:
            ours.ambiguous_count = getattr(ours, "ambiguous_count", 0) + int(ambiguous.sum())
            excess[ambiguous] = 0.0
        worst = excess.clamp(min=0).max().item()
        if not (worst > 0 or math.isnan(worst)):
            errors.append(0.0)
        else:  # a reference that did not move (ADOPT's first update) takes no move of ours
            errors.append(worst / step if step > 0 else math.inf)
    return errors


def run_optimlab(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS,
                 scheduler=None, dtype=torch.float64, complex: bool = False):
    """Train with the optimlab optimizer, free-running; returns (params, optimizer)."""
    run = train(OptimlabRun(info, hp, scheduler, dtype, complex), hp, steps, dtype)
    return run.params, run.optimizer


def run_torch(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS, scheduler=None,
              complex: bool = False):
    """Train with torch.optim's class of the same name, free-running; returns the params."""
    return train(TorchRun(info, hp, scheduler, complex), hp, steps).params


def run_reference(info: OptimizerInfo, hp: dict[str, Any], steps: int = STEPS):
    """Train with the entry's reference, free-running; returns the parameter values."""
    return train(reference_run(info, hp), hp, steps).parameters()
