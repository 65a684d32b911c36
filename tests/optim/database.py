"""The optimizer database: one entry per optimizer and flavor, driving the generic tests.

Modelled on torch's OptimizerInfo (torch/testing/_internal/common_optimizers.py): an entry names
the class, its flavor, hyper-parameter sets, its reference implementation and the bad inputs that
must raise. A new optimizer gets every generic test by adding one entry here.
"""

from __future__ import annotations

import contextlib
import math
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
        reference_hp: maps a set's hyper-parameters (our names) to what the reference is
            given: a package's keywords (passed as they are, with ``package_kwargs``), or for
            Keras our names completed where our flavor's defaults are not Keras' (KerasRun
            renames them). None: the set itself (for a package, the keys its class takes).
        sign_argument: for an update that is the sign of an expression (Lion), given a
            parameter's state before the update, the gradient the chain receives and the param
            group: the expression and the bound on its rounding within which two correct
            implementations may put it on either side of 0 (see :func:`lion_sign_argument`).
            Step-by-step comparisons leave out the coordinates within that bound, and only
            those.
        tolerance: the bound of test_generic's step-by-step comparison with the reference, if
            not its 1e-10: only for a Keras reference that rounds to float32 inside (COMMON
            bound for Keras: 1e-6 of the step).
        matrix_only: the optimizer takes 2-D parameters only (Muon): the generic tests give
            it the reference problem's biases as 1-row matrices of the same values
            (references.initial_parameters), which leave the loss and gradients unchanged.
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
    reference_hp: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    sign_argument: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    matrix_only: bool = False
    tolerance: float | None = None

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

    @property
    def reference_takes_schedulers(self) -> bool:
        """The reference is a ``torch.optim.Optimizer`` (torch.optim's or a package's class), so
        torch's learning-rate schedulers drive it as they drive ours; Keras' optimizers and the
        derivations take none."""
        return self.reference in ("torch", "package")

    def make(self, params, **kwargs) -> oo.Optimizer:
        return self.cls(params, flavor=self.flavor, **kwargs)


def _torch(cls, sets, bad=(), **kw) -> OptimizerInfo:
    return OptimizerInfo(cls, "torch", sets, "torch", list(bad) + COMMON_BAD, **kw)


def _keras(cls, sets, bad=(), **kw) -> OptimizerInfo:
    return OptimizerInfo(cls, "keras", sets, "keras", list(bad) + COMMON_BAD, **kw)


def _torch_flavor_of_keras(cls, sets, lr: float, bad, defaults: tuple[str, ...],
                           **kw) -> OptimizerInfo:
    """The torch flavor of an optimizer whose reference is Keras' (Lion, Lamb): ``sets`` and
    clipvalue and accumulation at ``lr``, not clipnorm/global_clipnorm (the torch flavor has
    torch's clipping formulas, the keras flavor Keras'). Keras is given our defaults of the
    hyper-parameters named in ``defaults``, where they are not Keras' (KerasRun renames them)."""
    def reference_hp(hp: dict[str, Any]) -> dict[str, Any]:
        return {**{k: cls.DEFAULTS["torch"][k] for k in defaults}, **hp}
    return OptimizerInfo(cls, "torch", [
        *sets,
        ("clipvalue", {"lr": lr, "clipvalue": 0.01}),
        ("accumulation", {"lr": lr, "gradient_accumulation_steps": 3}),
    ], "keras", list(bad) + COMMON_BAD, complex=False, reference_hp=reference_hp, **kw)


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


def lion_sign_argument(state, grad: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor]:
    """Lion's c = β₁m + (1−β₁)g from the momentum m before the update and the gradient g the
    chain receives, and the bound 16u(|m| + |g|) (u the unit roundoff) within which two correct
    implementations may round c to either side of 0.

    Derivation: each implementation evaluates c with at most four roundings (1 − β₁, two
    products and a sum; or lerp's g − m, a product and a sum), each of a quantity at most
    |m| + |g| in size (β₁, 1 − β₁ ∈ [0, 1]), so to first order its result is within
    4u(|m| + |g|) of the exact c. Two results of opposite signs are then both within
    8u(|m| + |g|) of 0 and the exact c within 4u(|m| + |g|); the c computed here, one more
    evaluation, is within 8u(|m| + |g|) of the exact one: |c| ≤ 12u(|m| + |g|), and the factor
    16 leaves 4u for the inputs (a gradient that rounds differently, e.g. accumulated in
    another order, moves c by (1 − β₁)|Δg|; the momenta are fed the same gradients)."""
    beta1 = group["betas"][0]
    m = state["exp_avg"]
    unit = torch.finfo(m.dtype).eps / 2
    return m * beta1 + grad * (1 - beta1), 16 * unit * (m.abs() + grad.abs())


#: optimlab's options that a reference package is not given: torch.nn.utils emulates clipping
#: and accumulation, PackageRun emulates ``maximize`` (see tests/optim/references.py).
_OPTIMLAB_ONLY = ("clipnorm", "global_clipnorm", "clipvalue", "gradient_accumulation_steps",
                  "maximize", "decoupled_weight_decay")


def _pytorch_optimizer_hp(flavor: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Our hyper-parameters as pytorch_optimizer's keywords: ``decoupled_weight_decay`` is its
    ``weight_decouple`` (given only where a set or our flavor decides it: the keras flavor decays
    decoupled, so a set without it still checks that our default is the package's),
    ``initial_accumulator_value`` its ``initial_accumulator`` and ``clip_exponent=c`` its
    ``clip_lambda=lambda step: step ** c`` (None: None)."""
    def kwargs(hp: dict[str, Any]) -> dict[str, Any]:
        out = {key: value for key, value in hp.items() if key not in _OPTIMLAB_ONLY}
        if "decoupled_weight_decay" in hp:
            out["weight_decouple"] = hp["decoupled_weight_decay"]
        elif flavor == "keras":
            out["weight_decouple"] = True
        if "initial_accumulator_value" in out:
            out["initial_accumulator"] = out.pop("initial_accumulator_value")
        if "clip_exponent" in out:
            exponent = out.pop("clip_exponent")
            out["clip_lambda"] = None if exponent is None else (
                lambda step: math.pow(step, exponent))
        return out
    return kwargs


LION_BAD = [({"betas": (1.5, 0.99)}, "betas[0]"), ({"betas": (0.9, -0.1)}, "betas[1]")]
ADABELIEF_BAD = [*BETA_BAD, ({"rectify": "yes"}, "rectify"),
                 ({"weight_decouple": True, "decoupled_weight_decay": False}, "weight_decouple")]
#: the authors' AdaBelief; it prints a notice when built unless told not to
ADABELIEF = "adabelief_pytorch:AdaBelief"
QUIET = {"print_change_log": False}
YOGI_BAD = [*BETA_BAD, ({"initial_accumulator_value": -1.0}, "initial_accumulator_value")]
ADOPT_BAD = [*BETA_BAD, ({"clip_exponent": -0.25}, "clip_exponent")]
ADEMAMIX_BAD = [({"betas": (1.0, 0.999, 0.9999)}, "betas[0]"),
                ({"betas": (0.9, 1.0, 0.9999)}, "betas[1]"),
                ({"betas": (0.9, 0.999, 1.5)}, "betas[2]"), ({"betas": (0.9, 0.999)}, "betas"),
                ({"alpha": -1.0}, "alpha"), ({"t_alpha_beta3": 0}, "t_alpha_beta3"),
                ({"betas": (0.0, 0.999, 0.9999), "t_alpha_beta3": 10}, "betas[0]"),
                ({"eps": -1e-8}, "eps")]
#: pytorch_optimizer's single-tensor path (foreach=False, as torch references)
PYTORCH_OPTIMIZER = {"foreach": False}


def _pytorch_optimizer(cls, flavor: str, name: str, sets, bad) -> OptimizerInfo:
    return _package(cls, flavor, f"pytorch_optimizer:{name}", sets, bad,
                    package_kwargs=PYTORCH_OPTIMIZER, reference_hp=_pytorch_optimizer_hp(flavor))


DATABASE += [
    # Keras' Lion is the reference of both flavors
    _torch_flavor_of_keras(oo.Lion, [
        ("plain", {"lr": 0.005}),
        ("defaults", {}),
        ("betas+weight_decay", {"lr": 0.003, "betas": (0.8, 0.95), "weight_decay": 0.5}),
        ("maximize", {"lr": 0.003, "maximize": True}),
    ], 0.003, LION_BAD, ("lr", "betas"), sign_argument=lion_sign_argument),
    _keras(oo.Lion, [
        ("plain", {"lr": 0.005}),
        ("defaults", {}),
        ("betas+weight_decay", {"lr": 0.003, "betas": (0.8, 0.95), "weight_decay": 0.5}),
        ("maximize", {"lr": 0.003, "maximize": True}),
        *shared({"lr": 0.003}),
    ], bad=[*LION_BAD, ({"betas": (0.0, 0.99)}, "betas[0]")], complex=False,
        sign_argument=lion_sign_argument),
    _package(oo.AdaBelief, "torch", ADABELIEF, [
        ("plain", {"lr": 0.01}),  # rectified (the package's default), decoupled decay
        ("defaults", {}),
        ("no_rectify", {"lr": 0.01, "rectify": False}),
        ("no_rectify+amsgrad", {"lr": 0.01, "rectify": False, "amsgrad": True,
                                "betas": (0.8, 0.99)}),
        ("amsgrad", {"lr": 0.01, "amsgrad": True}),  # not read by the rectified step
        # β₂ = 0.9: ρ_t < 5 for the first 5 steps, so the degenerate steps are visible
        ("degenerated_to_sgd", {"lr": 0.01, "betas": (0.9, 0.9)}),
        ("degenerated_to_sgd_off", {"lr": 0.01, "betas": (0.9, 0.9),
                                    "degenerated_to_sgd": False}),
        ("coupled_weight_decay", {"lr": 0.01, "weight_decay": 0.01, "weight_decouple": False}),
        ("weight_decay+fixed_decay", {"lr": 0.01, "weight_decay": 0.001, "fixed_decay": True}),
        ("weight_decay+no_rectify", {"lr": 0.01, "weight_decay": 0.1, "rectify": False}),
        ("eps+maximize", {"lr": 0.01, "eps": 1e-8, "maximize": True}),
        *shared({"lr": 0.01}),
    ], ADABELIEF_BAD, package_kwargs=QUIET),
    _package(oo.AdaBelief, "keras", ADABELIEF, [
        ("plain", {"lr": 0.01}),
        ("no_rectify+weight_decay", {"lr": 0.01, "rectify": False, "weight_decay": 0.1}),
    ], ADABELIEF_BAD, package_kwargs=QUIET),
    _pytorch_optimizer(oo.Yogi, "torch", "Yogi", [
        ("plain", {"lr": 0.02}),
        ("defaults", {}),
        ("betas+eps+initial", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6,
                               "initial_accumulator_value": 0.01}),
        ("weight_decay", {"lr": 0.02, "weight_decay": 0.1}),  # decoupled, the default
        ("coupled_weight_decay",
         {"lr": 0.02, "weight_decay": 0.01, "decoupled_weight_decay": False}),
        ("maximize", {"lr": 0.02, "maximize": True}),
        *shared({"lr": 0.02}),
    ], YOGI_BAD),
    _pytorch_optimizer(oo.Yogi, "keras", "Yogi", [
        ("plain", {"lr": 0.02}),
        ("weight_decay", {"lr": 0.02, "weight_decay": 0.1}),
    ], YOGI_BAD),
    _pytorch_optimizer(oo.ADOPT, "torch", "ADOPT", [
        ("plain", {"lr": 0.01}),
        ("defaults", {}),
        ("betas+eps", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3}),
        ("clip_exponent", {"lr": 0.01, "clip_exponent": 0.1}),  # clipping bites more often
        ("no_clipping", {"lr": 0.01, "clip_exponent": None}),
        ("weight_decay", {"lr": 0.01, "weight_decay": 0.01}),  # L2, the default
        ("decoupled_weight_decay",
         {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("maximize", {"lr": 0.01, "maximize": True}),
        *shared({"lr": 0.01}),
    ], ADOPT_BAD),
    _pytorch_optimizer(oo.ADOPT, "keras", "ADOPT", [
        ("plain", {"lr": 0.01}),
        ("weight_decay", {"lr": 0.01, "weight_decay": 0.1}),  # decoupled in the keras flavor
    ], ADOPT_BAD),
    _pytorch_optimizer(oo.AdEMAMix, "torch", "AdEMAMix", [
        ("plain", {"lr": 0.01}),
        ("defaults", {}),
        ("betas+alpha", {"lr": 0.01, "betas": (0.8, 0.99, 0.999), "alpha": 2.0}),
        ("t_alpha_beta3", {"lr": 0.01, "t_alpha_beta3": 50}),  # warmup, then capped
        ("weight_decay", {"lr": 0.01, "weight_decay": 0.01}),  # L2, the default
        ("decoupled_weight_decay",
         {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("maximize", {"lr": 0.01, "maximize": True}),
        *shared({"lr": 0.01}),
    ], ADEMAMIX_BAD),
    _pytorch_optimizer(oo.AdEMAMix, "keras", "AdEMAMix", [
        ("plain", {"lr": 0.01}),
        ("weight_decay+t_alpha_beta3", {"lr": 0.01, "weight_decay": 0.1, "t_alpha_beta3": 30}),
    ], ADEMAMIX_BAD),
]

#: Muon's own bad inputs (torch's Muon checks lr, momentum, weight_decay and adjust_lr_fn at
#: construction and ns_steps, ns_coefficients at the first step; optimlab checks all at once).
MUON_BAD = [
    ({"momentum": -0.1}, "momentum"),
    ({"ns_steps": 100}, "ns_steps"),
    ({"ns_steps": 2.5}, "ns_steps"),
    ({"ns_coefficients": (3.4, -4.7)}, "ns_coefficients"),
    ({"eps": -1e-7}, "eps"),
    ({"adjust_lr_fn": "arbitrary"}, "adjust_lr_fn"),
]


def _muon_keras_hp(hp: dict[str, Any]) -> dict[str, Any]:
    """A Muon set in Keras' names: ``ns_coefficients`` → ``muon_a/b/c``,
    ``adjust_lr_fn="match_rms_adamw"`` (the keras flavor's default) → ``rms_rate=0.2`` (Keras'
    default). ``eps`` has no Keras counterpart (its iteration adds a fixed 1e-7): no set sets it."""
    out = {key: value for key, value in hp.items()
           if key not in ("ns_coefficients", "adjust_lr_fn")}
    if "ns_coefficients" in hp:
        out["muon_a"], out["muon_b"], out["muon_c"] = hp["ns_coefficients"]
    assert hp.get("adjust_lr_fn", "match_rms_adamw") == "match_rms_adamw"
    return out


DATABASE += [
    _torch(oo.Muon, [
        ("plain", {"lr": 0.02}),
        ("defaults", {}),
        ("no_nesterov", {"lr": 0.02, "nesterov": False}),
        ("match_rms_adamw", {"lr": 0.01, "adjust_lr_fn": "match_rms_adamw"}),
        ("original+momentum", {"lr": 0.02, "adjust_lr_fn": "original", "momentum": 0.8}),
        ("no_momentum", {"lr": 0.02, "momentum": 0.0}),
        ("weight_decay+no_nesterov", {"lr": 0.02, "weight_decay": 0.5, "nesterov": False}),
        ("ns_steps+ns_coefficients",
         {"lr": 0.02, "ns_steps": 3, "ns_coefficients": (3.4, -4.7, 2.0)}),
        ("no_iteration+eps", {"lr": 0.02, "ns_steps": 0, "eps": 0.5}),  # ε bites: ‖G‖ < 0.5
        *shared({"lr": 0.02}),
    ], MUON_BAD, complex=False, matrix_only=True),
    _keras(oo.Muon, [
        ("plain", {"lr": 0.02}),
        ("defaults", {}),
        ("no_nesterov+weight_decay", {"lr": 0.02, "nesterov": False, "weight_decay": 0.5}),
        ("momentum+ns_steps+ns_coefficients",
         {"lr": 0.02, "momentum": 0.8, "ns_steps": 3, "ns_coefficients": (3.4, -4.7, 2.0)}),
        *shared({"lr": 0.02}),
    ], MUON_BAD, complex=False, matrix_only=True, reference_hp=_muon_keras_hp,
       # Keras' Muon rounds somewhere to float32 (its √max(A, B) is one such rounding, which
       # the keras flavor reproduces): measured up to 4.6e-7 of the step per update
       tolerance=1e-6),
]


SOAP_BAD = [*BETA_BAD, ({"shampoo_beta": -0.1}, "shampoo_beta"),
            ({"shampoo_beta": 1.5}, "shampoo_beta"),
            ({"precondition_frequency": 0}, "precondition_frequency"),
            ({"precondition_frequency": 2.5}, "precondition_frequency"),
            ({"max_precondition_dim": 0}, "max_precondition_dim"),
            ({"data_format": "nhwc"}, "data_format")]

# SOAP against pytorch_optimizer's port of the authors' code. The test problem's (6, 4) and
# (1, 6) weights are preconditioned on both sides; precondition_frequency=2 or 3 refreshes the
# bases (power iteration + QR) 30-50 times in the 100 updates; max_precondition_dim=4 leaves
# the 6-sides unpreconditioned, merge_dims with 5 merges (6, 4) into (1, 6, 4) (tests/optim/
# test_soap.py has 3-D and 4-D tensors, stacks of equal shapes and longer runs).
DATABASE += [
    _pytorch_optimizer(oo.SOAP, "torch", "SOAP", [
        ("plain", {"lr": 0.01, "precondition_frequency": 3}),
        ("defaults", {}),
        ("precondition_frequency_2", {"lr": 0.01, "precondition_frequency": 2}),
        ("precondition_1d", {"lr": 0.01, "precondition_frequency": 3, "precondition_1d": True}),
        ("max_precondition_dim", {"lr": 0.01, "precondition_frequency": 2,
                                  "max_precondition_dim": 4}),
        ("merge_dims", {"lr": 0.01, "precondition_frequency": 3, "merge_dims": True,
                        "max_precondition_dim": 5}),
        ("no_correct_bias+normalize_gradient",
         {"lr": 0.01, "precondition_frequency": 3, "correct_bias": False,
          "normalize_gradient": True}),
        ("betas+shampoo_beta+eps+weight_decay",
         {"lr": 0.01, "betas": (0.9, 0.99), "shampoo_beta": 0.9, "eps": 1e-6,
          "weight_decay": 0.1, "precondition_frequency": 2}),
        ("maximize", {"lr": 0.01, "precondition_frequency": 3, "maximize": True}),
        *shared({"lr": 0.01, "precondition_frequency": 3}),
    ], SOAP_BAD),
    _pytorch_optimizer(oo.SOAP, "keras", "SOAP", [
        ("plain", {"lr": 0.01, "precondition_frequency": 3}),
        ("weight_decay+precondition_1d", {"lr": 0.01, "weight_decay": 0.1,
                                          "precondition_frequency": 2, "precondition_1d": True}),
    ], SOAP_BAD),
]


LAMB_BAD = BETA_BAD
LARS_BAD = [({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"),
            ({"dampening": 1.0}, "dampening"), ({"dampening": -0.5}, "dampening"),
            ({"trust_coefficient": -1e-3}, "trust_coefficient"),
            ({"nesterov": True, "dampening": 0.1}, "nesterov")]
#: LARS's sets: the trust ratio scales the weight matrices of the reference problem, (6, 4) and
#: (1, 6); its biases, (6,) and (1,), take plain momentum SGD steps, without weight decay
LARS_SETS = [
    ("plain", {"lr": 0.01}),  # 0.1 makes the loss rise here (the biases' steps are large)
    ("defaults", {}),
    ("weight_decay", {"lr": 0.1, "weight_decay": 0.01}),
    ("trust_coefficient+weight_decay",
     {"lr": 0.1, "trust_coefficient": 0.02, "weight_decay": 0.1}),
    # damped from the first step on: v₁ = (1 − τ)d₁, where torch's SGD has v₁ = d₁
    ("dampening+weight_decay", {"lr": 0.1, "dampening": 0.3, "weight_decay": 0.05}),
    ("nesterov", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("no_momentum", {"lr": 0.5, "momentum": 0.0}),
    ("nesterov+no_momentum", {"lr": 0.5, "momentum": 0.0, "nesterov": True}),
    ("maximize", {"lr": 0.1, "maximize": True}),
]

DATABASE += [
    # Keras' Lamb is the reference of both flavors
    _torch_flavor_of_keras(oo.Lamb, [
        ("plain", {"lr": 0.01}),
        ("defaults", {}),
        ("betas+eps", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-3}),
        ("weight_decay", {"lr": 0.01, "weight_decay": 0.1}),  # decoupled, as Keras
        ("maximize", {"lr": 0.01, "maximize": True}),
    ], 0.01, LAMB_BAD, ("eps",)),
    _keras(oo.Lamb, [
        ("plain", {"lr": 0.01}),
        ("defaults", {}),
        ("betas+eps+weight_decay",
         {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
        ("maximize", {"lr": 0.01, "maximize": True}),
        *shared({"lr": 0.01}),
    ], bad=LAMB_BAD, complex=False),
    _pytorch_optimizer(oo.LARS, "torch", "LARS", [*LARS_SETS, *shared({"lr": 0.1})],
                       LARS_BAD),
    # the keras flavor is the same algorithm (its weight decay the package's, inside the
    # ratio) with Keras' clipping formulas, not used here
    _package(oo.LARS, "keras", "pytorch_optimizer:LARS", LARS_SETS[:3] + LARS_SETS[5:6],
             LARS_BAD, package_kwargs=PYTORCH_OPTIMIZER,
             reference_hp=_pytorch_optimizer_hp("torch")),
]


ADAFACTOR_BAD = [({"beta2_decay": 0.8}, "beta2_decay"), ({"eps": (-1e-30, 1e-3)}, "eps[0]"),
                 ({"eps": (None, -1e-3)}, "eps[1]"), ({"d": 0.5}, "d"), ({"eps": 1e-3}, "eps")]

DATABASE += [
    # the parameters (references.initial_parameters) are two matrices, (6, 4) and (1, 6), whose
    # second moments are factored, and two vectors, (6,) and (1,), with a full one
    # (tests/optim/test_adafactor.py adds 3-D and 0-d tensors under every engine)
    _torch(oo.Adafactor, [
        ("defaults", {}),
        ("lr+beta2_decay+d", {"lr": 0.03, "beta2_decay": -0.5, "d": 1.5}),
        ("beta2_decay=0", {"beta2_decay": 0.0}),  # V = G² every step
        # ε₁ clamps the mean row statistic and √V; ε₂ the RMS of the parameters (≈ 0.5)
        ("eps", {"eps": (0.05, 0.8)}),
        ("d=1+lr", {"d": 1.0, "lr": 0.1}),  # clipping bites at every step
        ("weight_decay", {"lr": 0.02, "weight_decay": 0.5}),
        ("weight_decay+maximize", {"weight_decay": 0.1, "maximize": True}),
        *shared({}),
    ], ADAFACTOR_BAD, complex=False),
    # Keras' Adafactor: ε₁ added to G², the base's weight decay before the update
    _keras(oo.Adafactor, [
        ("defaults", {}),
        ("lr+beta2_decay+d", {"lr": 0.03, "beta2_decay": -0.5, "d": 1.5}),
        ("eps", {"lr": 0.01, "eps": (0.01, 0.8)}),
        ("weight_decay", {"lr": 0.02, "weight_decay": 0.5}),
        ("maximize", {"lr": 0.01, "maximize": True}),
        *shared({"lr": 0.01}),
    ], ADAFACTOR_BAD, complex=False),
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


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Context manager: torch's default dtype (torch keeps scalar state in it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
