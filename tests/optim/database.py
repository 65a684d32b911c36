"""The optimizer database: one entry per optimizer and flavor, driving the generic tests.

Modelled on torch's OptimizerInfo (torch/testing/_internal/common_optimizers.py): an entry names
the class, its flavor, hyper-parameter sets, its reference implementation and the bad inputs that
must raise. A new optimizer gets every generic test by adding one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import optimlab.optim as oo

# Options every optimizer takes; torch.optim has none of them, so the reference runner emulates
# them with torch.nn.utils' clipping functions and by averaging gradients (see references.py).
SHARED_OPTIONS = {
    "clipnorm": {"clipnorm": 0.05},
    "global_clipnorm": {"global_clipnorm": 0.1},
    "clipvalue": {"clipvalue": 0.01},
    "accumulation": {"gradient_accumulation_steps": 3},
}


def shared(base: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The shared options, each added to ``base``, named by the option."""
    return [(name, {**base, **option}) for name, option in SHARED_OPTIONS.items()]

# (kwargs, the name the error must mention) rejected by every optimizer.
COMMON_BAD = [
    ({"lr": -1.0}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"clipnorm": 0.0}, "clipnorm"),
    ({"clipvalue": -1.0}, "clipvalue"),
    ({"global_clipnorm": -2.0}, "global_clipnorm"),
    ({"clipnorm": 1.0, "clipvalue": 1.0}, "clipvalue"),
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
    ({"nonfinite": "maybe"}, "nonfinite"),
    ({"flavor": "jax"}, "flavor"),
    ({"engine": "warp"}, "engine"),
    ({"lr": float("nan")}, "lr"),
]

BETA_BAD = [
    ({"betas": (1.0, 0.999)}, "betas[0]"),
    ({"betas": (0.9, -0.1)}, "betas[1]"),
    ({"eps": -1e-8}, "eps"),
]


@dataclass
class OptimizerInfo:
    """One optimizer in one flavor.

    Attributes:
        cls: the optimlab class.
        flavor: "torch" or "keras".
        sets: (description, hyper-parameters) pairs every generic test runs over; a test's id
            is ``{cls}-{flavor}-{description}-{index}``, e.g. ``Adam-torch-amsgrad-1``. The first
            set (index 0, ids ending in "-0") is the entry's plain one, which the slower
            tests run alone.
        reference: "torch" (torch.optim class of the same name), "keras" (keras.optimizers) or
            "derivation" (a direct implementation of the paper's formula in references.py).
        bad: (kwargs, name) pairs that must raise ValueError naming ``name``.
        torch_name: the torch.optim / keras.optimizers class name, if it differs.
    """

    cls: type
    flavor: str
    sets: list[tuple[str, dict[str, Any]]]
    reference: str
    bad: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    torch_name: str | None = None
    complex: bool = True

    @property
    def id(self) -> str:
        return f"{self.cls.__name__}-{self.flavor}"

    @property
    def hyperparameters(self) -> list[dict[str, Any]]:
        return [hp for _, hp in self.sets]

    def case_id(self, index: int) -> str:
        return f"{self.id}-{self.sets[index][0]}-{index}"

    @property
    def reference_name(self) -> str:
        return self.torch_name or self.cls.__name__

    def make(self, params, **kwargs) -> oo.Optimizer:
        return self.cls(params, flavor=self.flavor, **kwargs)


def _torch(cls, sets, bad=(), **kw) -> OptimizerInfo:
    return OptimizerInfo(cls, "torch", sets, "torch", list(bad) + COMMON_BAD, **kw)


def _keras(cls, sets, bad=(), **kw) -> OptimizerInfo:
    return OptimizerInfo(cls, "keras", sets, "keras", list(bad) + COMMON_BAD, **kw)


DATABASE: list[OptimizerInfo] = [
    _torch(oo.SGD, [
        ("plain", {"lr": 0.1}),
        ("momentum", {"lr": 0.05, "momentum": 0.9}),
        ("dampening+weight_decay",
         {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
        ("nesterov+maximize", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "maximize": True}),
        *shared({"lr": 0.05, "momentum": 0.9}),
    ], bad=[({"momentum": -0.5}, "momentum"), ({"dampening": 1.5}, "dampening"),
            ({"nesterov": True}, "nesterov"),
            ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov")]),
    _torch(oo.Adagrad, [
        ("plain", {"lr": 0.1}),
        ("lr_decay+initial+weight_decay",
         {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01}),
        ("eps+maximize", {"lr": 0.05, "eps": 1e-3, "maximize": True}),
        *shared({"lr": 0.1}),
    ], bad=[({"lr_decay": -0.1}, "lr_decay"),
            ({"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
            ({"eps": -1.0}, "eps")]),
    _torch(oo.Adadelta, [
        ("defaults", {}),
        ("lr+rho+eps+weight_decay", {"lr": 0.5, "rho": 0.5, "eps": 1e-4, "weight_decay": 0.01}),
        ("maximize", {"maximize": True}),
        *shared({}),
    ], bad=[({"rho": 1.5}, "rho"), ({"eps": -1e-6}, "eps")]),
    _torch(oo.RMSprop, [
        ("plain", {"lr": 0.01}),
        ("centered", {"lr": 0.01, "alpha": 0.9, "centered": True}),
        ("momentum+weight_decay", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
        ("momentum+centered+maximize",
         {"lr": 0.005, "momentum": 0.5, "centered": True, "maximize": True}),
        *shared({"lr": 0.01, "momentum": 0.5}),
    ], bad=[({"alpha": -0.1}, "alpha"), ({"momentum": -1.0}, "momentum"), ({"eps": -1.0}, "eps")]),
    _torch(oo.Adam, [
        ("plain", {"lr": 0.01}),
        ("amsgrad", {"lr": 0.01, "betas": (0.8, 0.99), "amsgrad": True}),
        ("weight_decay", {"lr": 0.01, "weight_decay": 0.1}),
        ("decoupled_weight_decay+maximize",
         {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
        *shared({"lr": 0.01}),
    ], bad=BETA_BAD),
    _torch(oo.AdamW, [
        ("plain", {"lr": 0.01}),
        ("weight_decay+amsgrad", {"lr": 0.01, "weight_decay": 0.5, "amsgrad": True}),
    ], bad=BETA_BAD),
    _torch(oo.Adamax, [
        ("plain", {"lr": 0.01}),
        ("betas+eps+weight_decay",
         {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.05, "eps": 1e-3}),
        *shared({"lr": 0.01}),
    ], bad=BETA_BAD),
    _torch(oo.NAdam, [
        ("plain", {"lr": 0.01}),
        ("momentum_decay+weight_decay", {"lr": 0.01, "momentum_decay": 0.1, "weight_decay": 0.05}),
        ("decoupled_weight_decay+maximize",
         {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
        *shared({"lr": 0.01}),
    ], bad=[*BETA_BAD, ({"momentum_decay": -1.0}, "momentum_decay")]),
    OptimizerInfo(oo.Nadamax, "torch", [
        ("plain", {"lr": 0.01}),
        ("betas+momentum_decay+eps",
         {"lr": 0.01, "betas": (0.8, 0.9), "momentum_decay": 0.1, "eps": 1e-3}),
    ], "derivation", BETA_BAD + COMMON_BAD),
    OptimizerInfo(oo.Nadamax, "keras", [
        ("plain", {"lr": 0.01}),
        ("betas+eps", {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-3}),
    ], "derivation", BETA_BAD + COMMON_BAD),
    _keras(oo.SGD, [
        ("plain", {"lr": 0.1}),
        ("momentum", {"lr": 0.05, "momentum": 0.9}),
        ("nesterov+weight_decay",
         {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
        *shared({"lr": 0.05, "momentum": 0.9}),
    ]),
    _keras(oo.Adagrad, [
        ("plain", {"lr": 0.1}),
        ("initial+eps+weight_decay",
         {"lr": 0.05, "initial_accumulator_value": 0.01, "eps": 1e-3, "weight_decay": 0.01}),
    ]),
    _keras(oo.Adadelta, [
        ("plain", {"lr": 1.0}),
        ("rho+eps", {"lr": 0.5, "rho": 0.8, "eps": 1e-4}),
    ]),
    _keras(oo.RMSprop, [
        ("plain", {"lr": 0.01}),
        ("centered", {"lr": 0.01, "alpha": 0.8, "centered": True}),
        ("momentum+weight_decay", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
        ("momentum+centered+clipnorm",
         {"lr": 0.005, "momentum": 0.5, "centered": True, "clipnorm": 0.05}),
    ]),
    _keras(oo.Adam, [
        ("plain", {"lr": 0.01}),
        ("amsgrad+eps", {"lr": 0.01, "betas": (0.8, 0.99), "amsgrad": True, "eps": 1e-3}),
        ("weight_decay+global_clipnorm",
         {"lr": 0.01, "weight_decay": 0.1, "global_clipnorm": 0.1}),
        ("accumulation+clipvalue",
         {"lr": 0.01, "gradient_accumulation_steps": 3, "clipvalue": 0.01}),
    ], bad=BETA_BAD),
    _keras(oo.AdamW, [
        ("plain", {"lr": 0.01}),
        ("weight_decay", {"lr": 0.01, "weight_decay": 0.2}),
    ]),
    _keras(oo.Adamax, [
        ("plain", {"lr": 0.01}),
        ("betas+eps", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3}),
    ]),
    _keras(oo.NAdam, [
        ("plain", {"lr": 0.01}),
        ("betas+eps+weight_decay",
         {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.05}),
    ], torch_name="Nadam"),
    _keras(oo.Ftrl, [
        ("plain", {"lr": 0.1}),
        ("l1+l2", {"lr": 0.1, "l1": 0.01, "l2": 0.01}),
        ("lr_power+initial+l2_shrinkage+beta",
         {"lr": 0.05, "lr_power": -0.7, "initial_accumulator_value": 0.5, "l2_shrinkage": 0.05,
          "beta": 0.1, "l1": 0.001}),
    ], bad=[({"lr": 0.0}, "lr"), ({"lr_power": 0.5}, "lr_power"), ({"l1": -1.0}, "l1"),
            ({"l2": -1.0}, "l2"), ({"l2_shrinkage": -1.0}, "l2_shrinkage"),
            ({"beta": -1.0}, "beta"),
            ({"initial_accumulator_value": -0.1}, "initial_accumulator_value")],
        complex=False),
    OptimizerInfo(oo.Ftrl, "torch", [
        ("l1+l2", {"lr": 0.1, "l1": 0.01, "l2": 0.01}),
    ], "keras", COMMON_BAD, complex=False),
]


def cases(predicate: Callable[[OptimizerInfo], bool] = lambda info: True):
    """(info, hyperparameters) pairs as pytest params with readable ids."""
    import pytest

    out = []
    for info in DATABASE:
        if not predicate(info):
            continue
        for i, (_, hp) in enumerate(info.sets):
            out.append(pytest.param(info, hp, id=info.case_id(i)))
    return out


def default_dtype(dtype: torch.dtype):
    """Context manager: torch's default dtype (torch keeps scalar state in it)."""
    import contextlib

    @contextlib.contextmanager
    def manager():
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(old)

    return manager()
