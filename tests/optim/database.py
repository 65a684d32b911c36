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

#: LBFGS's hyper-parameter sets (tests/optim/test_lbfgs.py runs them against torch).
LBFGS_SETS = [
    ("plain", {}),
    ("strong_wolfe", {"line_search_fn": "strong_wolfe"}),
    ("history_size+max_iter+lr", {"history_size": 3, "max_iter": 7, "lr": 0.5}),
    ("strong_wolfe+max_eval+tolerances",
     {"line_search_fn": "strong_wolfe", "max_iter": 10, "max_eval": 12, "history_size": 5,
      "tolerance_grad": 1e-4, "tolerance_change": 1e-6}),
    ("maximize+strong_wolfe", {"maximize": True, "line_search_fn": "strong_wolfe"}),
]

#: LBFGS's bad inputs: its own ranges, and the base options it refuses.
LBFGS_BAD = [
    ({"max_iter": 0}, "max_iter"),
    ({"max_eval": 0.5}, "max_eval"),
    ({"history_size": 0}, "history_size"),
    ({"tolerance_grad": -1.0}, "tolerance_grad"),
    ({"tolerance_change": -1.0}, "tolerance_change"),
    ({"line_search_fn": "armijo"}, "line_search_fn"),
    ({"weight_decay": 0.1}, "weight_decay"),
    ({"clipnorm": 1.0}, "clipnorm"),
    ({"gradient_accumulation_steps": 2}, "gradient_accumulation_steps"),
    ({"use_ema": True}, "use_ema"),
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
        reference: "torch" (torch.optim class of the same name), "keras" (keras.optimizers),
            "derivation" (a direct implementation of the paper's formula in references.py) or
            "package" (a third-party package's class, named by ``package``).
        bad: (kwargs, name) pairs that must raise ValueError naming ``name``.
        torch_name: the torch.optim / keras.optimizers class name, if it differs.
        closure: True if ``step`` needs a closure (LBFGS). The generic tests step without
            one, so :func:`cases` leaves such entries out (only the bad inputs run); the
            optimizer has its own module (tests/optim/test_lbfgs.py).
        package: with reference "package", the reference class as ``"module:Class"`` (e.g.
            ``"prodigyopt:Prodigy"``), built with the hyper-parameters it takes by name.
        package_kwargs: keywords always given to the package's class (e.g. ``foreach=False``).
    """

    cls: type
    flavor: str
    sets: list[tuple[str, dict[str, Any]]]
    reference: str
    bad: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    torch_name: str | None = None
    complex: bool = True
    closure: bool = False
    package: str | None = None
    package_kwargs: dict[str, Any] = field(default_factory=dict)

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
    _torch(oo.RAdam, [
        ("plain", {"lr": 0.01}),
        ("betas+eps+weight_decay",
         {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
        ("decoupled_weight_decay+maximize",
         {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
        # ρ∞ = 2/(1 − 0.6) − 1 = 4 < 5: the adaptive step never switches on
        ("never_rectified", {"lr": 0.01, "betas": (0.9, 0.6)}),
        *shared({"lr": 0.01}),
    ], bad=BETA_BAD),
    _torch(oo.Rprop, [
        ("plain", {"lr": 0.01}),
        ("etas+step_sizes", {"lr": 0.01, "etas": (0.3, 1.5), "step_sizes": (1e-4, 0.05)}),
        ("maximize", {"lr": 0.005, "maximize": True}),
        *shared({"lr": 0.01}),
    ], bad=[({"etas": (1.0, 1.2)}, "etas[0]"), ({"etas": (0.5, 1.0)}, "etas[1]"),
            ({"step_sizes": (-1.0, 50.0)}, "step_sizes[0]"),
            ({"step_sizes": (1.0, 0.5)}, "step_sizes")]),
    _torch(oo.ASGD, [
        ("plain", {"lr": 0.05}),  # t0 = 1e6: μ stays 1, the average is the last iterate
        ("lambd+alpha+t0", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 10}),
        ("weight_decay+maximize", {"lr": 0.05, "weight_decay": 0.1, "maximize": True, "t0": 20}),
        *shared({"lr": 0.05, "t0": 10}),
    ], bad=[({"lambd": -0.1}, "lambd"), ({"alpha": -1.0}, "alpha"), ({"t0": -1.0}, "t0")]),
    # torch.optim.LBFGS: step(closure) evaluates many times; tests/optim/test_lbfgs.py runs the
    # sets step by step against torch (they are also what that module runs)
    _torch(oo.LBFGS, LBFGS_SETS, bad=LBFGS_BAD, closure=True),
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
    # Keras has no RAdam, Rprop, ASGD or L-BFGS: their keras flavor is torch's algorithm with
    # Keras' base-optimizer conventions (decoupled weight decay), checked against torch
    OptimizerInfo(oo.RAdam, "keras", [
        ("plain", {"lr": 0.01}),
        ("weight_decay", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ], "torch", BETA_BAD + COMMON_BAD),
    OptimizerInfo(oo.Rprop, "keras", [
        ("plain", {"lr": 0.01}),
        ("etas+step_sizes", {"lr": 0.02, "etas": (0.4, 1.3), "step_sizes": (1e-5, 1.0)}),
    ], "torch", COMMON_BAD),
    OptimizerInfo(oo.ASGD, "keras", [
        ("plain", {"lr": 0.05}),
        ("lambd+t0", {"lr": 0.05, "lambd": 0.01, "t0": 5}),
    ], "torch", COMMON_BAD),
    OptimizerInfo(oo.LBFGS, "keras", LBFGS_SETS[:2], "torch", LBFGS_BAD + COMMON_BAD,
                  closure=True),
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


def _package(cls, flavor: str, package: str, sets, bad=(), **kw) -> OptimizerInfo:
    """An entry checked against a third-party package's class (the authors' implementation)."""
    return OptimizerInfo(cls, flavor, sets, "package", list(bad) + COMMON_BAD, package=package,
                         complex=False, **kw)


#: the authors' Schedule-Free classes, single-tensor path (foreach=False, as torch references)
SCHEDULEFREE_ADAMW = "schedulefree:AdamWScheduleFree"
SCHEDULEFREE_SGD = "schedulefree:SGDScheduleFree"
SINGLE_TENSOR = {"foreach": False}
SCHEDULEFREE_BAD = [({"warmup_steps": -1}, "warmup_steps"), ({"r": -0.5}, "r"),
                    ({"weight_lr_power": -1.0}, "weight_lr_power")]
SCHEDULEFREE_ADAMW_BAD = [({"betas": (0.0, 0.999)}, "betas[0]"),
                          ({"betas": (1.5, 0.999)}, "betas[0]"),
                          ({"betas": (0.9, 1.0)}, "betas[1]"), ({"eps": -1e-8}, "eps"),
                          *SCHEDULEFREE_BAD]
SCHEDULEFREE_SGD_BAD = [({"momentum": 0.0}, "momentum"), ({"momentum": 1.0}, "momentum"),
                        *SCHEDULEFREE_BAD]
PRODIGY_BAD = [({"d0": 0.0}, "d0"), ({"eps": 0.0}, "eps"), ({"betas": (1.0, 0.999)}, "betas[0]"),
               ({"betas": (0.9, 1.0)}, "betas[1]"), ({"beta3": 1.5}, "beta3"),
               ({"d_coef": 0.0}, "d_coef"), ({"growth_rate": 0.0}, "growth_rate"),
               ({"slice_p": 0}, "slice_p"), ({"slice_p": 1.5}, "slice_p"),
               ({"fsdp_in_use": True}, "fsdp_in_use"),
               ({"decouple": True, "decoupled_weight_decay": False}, "decouple")]

DATABASE += [
    _package(oo.ScheduleFreeAdamW, "torch", SCHEDULEFREE_ADAMW, [
        ("plain", {"lr": 0.01}),
        ("warmup+r+weight_lr_power",
         {"lr": 0.02, "warmup_steps": 10, "r": 1.0, "weight_lr_power": 1.0}),
        ("betas+eps+weight_decay",
         {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}),
        ("maximize", {"lr": 0.01, "maximize": True}),
        *shared({"lr": 0.01}),
    ], SCHEDULEFREE_ADAMW_BAD, package_kwargs=SINGLE_TENSOR),
    _package(oo.ScheduleFreeSGD, "torch", SCHEDULEFREE_SGD, [
        ("plain", {"lr": 0.1}),
        ("momentum+weight_decay", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.01}),
        ("warmup+r+weight_lr_power",
         {"lr": 0.2, "warmup_steps": 5, "r": 0.5, "weight_lr_power": 0.0}),
        # decoupled: λy added to the direction, the same update as the package's L2 at y
        ("decoupled_weight_decay",
         {"lr": 0.1, "weight_decay": 0.01, "decoupled_weight_decay": True}),
        ("maximize", {"lr": 0.1, "maximize": True}),
        *shared({"lr": 0.1}),
    ], SCHEDULEFREE_SGD_BAD, package_kwargs=SINGLE_TENSOR),
    _package(oo.Prodigy, "torch", "prodigyopt:Prodigy", [
        # lr = 1 (the default) overshoots on this noisy problem, in the package too
        ("plain", {"lr": 0.5}),
        ("defaults", {}),
        ("bias_correction+safeguard_warmup",
         {"use_bias_correction": True, "safeguard_warmup": True}),
        ("coupled_weight_decay", {"weight_decay": 0.01, "decouple": False}),
        ("decoupled_weight_decay+growth_rate+d_coef+d0",
         {"weight_decay": 0.05, "growth_rate": 1.05, "d_coef": 2.0, "d0": 1e-5}),
        ("no_first_moment+beta3", {"betas": (0.0, 0.99), "beta3": 0.9}),
        ("slice_p+lr+eps", {"slice_p": 3, "lr": 0.3, "eps": 1e-6}),
        ("maximize", {"maximize": True}),
        *shared({}),
    ], PRODIGY_BAD),
    # the keras flavor is the same algorithm with Keras' clipping formulas (not used here)
    _package(oo.ScheduleFreeAdamW, "keras", SCHEDULEFREE_ADAMW, [
        ("plain", {"lr": 0.01}),
        ("weight_decay+warmup", {"lr": 0.01, "weight_decay": 0.05, "warmup_steps": 5}),
    ], SCHEDULEFREE_ADAMW_BAD, package_kwargs=SINGLE_TENSOR),
    _package(oo.ScheduleFreeSGD, "keras", SCHEDULEFREE_SGD, [
        ("plain", {"lr": 0.1}),
        ("momentum+weight_decay", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.01}),
    ], SCHEDULEFREE_SGD_BAD, package_kwargs=SINGLE_TENSOR),
    _package(oo.Prodigy, "keras", "prodigyopt:Prodigy", [
        ("plain", {"lr": 0.5}),
        ("weight_decay+bias_correction", {"weight_decay": 0.05, "use_bias_correction": True}),
    ], PRODIGY_BAD),
]


def cases(predicate: Callable[[OptimizerInfo], bool] = lambda info: True):
    """(info, hyperparameters) pairs as pytest params with readable ids; entries whose step
    needs a closure are left out (the generic tests step without one)."""
    import pytest

    out = []
    for info in DATABASE:
        if info.closure or not predicate(info):
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
