"""The optimizer base: a ``torch.optim.Optimizer`` that runs a chain of transforms per parameter.

Everything that is not an algorithm's own math lives here, once: loss scaling, gradient
accumulation, the non-finite policy, clipping, ``maximize``, coupled (L2) and decoupled weight
decay, the EMA of the weights, flavors, hyper-parameter validation and the state-dict extras.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .engines import ENGINE_NAMES, init_state, make_engine, scalar_dtype
from .transforms import (
    Chain,
    Hyper,
    Interval,
    Transform,
    chain,
    check_tuple,
    hyper,
    outside_graphs,
)

__all__ = ["Optimizer", "FLAVORS", "ENGINES", "NONFINITE_POLICIES"]

FLAVORS = ("torch", "keras")
ENGINES = ("auto", *ENGINE_NAMES)
NONFINITE_POLICIES = ("ignore", "skip", "raise")


#: Options every optimizer takes, with their defaults; those in ``_GROUP_OPTIONS`` live in the
#: param groups (as in torch), the rest on the optimizer.
_COMMON = {"weight_decay": 0.0, "decoupled_weight_decay": False, "maximize": False}
_GROUP_RANGES = {"weight_decay": "[0, inf)"}
#: the per-parameter state key of the exponential moving average of the weights (``use_ema``).
EMA = "ema"
#: Names of one option in other libraries' spellings (torch's, Keras', papers'): a keyword this
#: optimizer does not take is pointed to the one of its group it takes (``Adam(momentum=...)``
#: to ``betas``, ``SGD(learning_rate=...)`` to ``lr``) before any merely similar spelling.
_SYNONYMS = (("lr", "learning_rate"), ("eps", "epsilon"),
             ("betas", "beta_1", "beta1", "momentum", "beta_2", "beta2", "beta"),
             ("weight_decay", "wd"), ("nesterov", "use_nesterov"))


def alias(options: dict[str, Any], name: str, value: Any,
          ours: str = "decoupled_weight_decay") -> None:
    """A package's name for one of our options (``weight_decouple``, ``decouple``), given as
    ``value``: store it in ``options`` under our name, refusing a contradiction."""
    if value is None:
        return
    given = options.get(ours)
    if given is not None and bool(given) != bool(value):
        raise ValueError(f"{name}={value!r} and {ours}={given!r} disagree: they are the same "
                         f"option (give one of them)")
    options[ours] = value


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {', '.join(allowed)}")


def _check_positive_or_none(name: str, value: Any) -> None:
    if value is not None:
        Interval.parse("(0, inf)").check(name, value)


def _keywords(function: Callable) -> list[str]:
    """The names ``function`` takes by keyword, but ``self`` and ``params``/``transforms``."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [name for name, p in inspect.signature(function).parameters.items()
            if p.kind in kinds and name not in ("self", "params", "transforms")]


def _check_keras_options(use_ema: Any, ema_momentum: Any, ema_overwrite_frequency: Any,
                         loss_scale_factor: Any) -> None:
    """Keras' checks of its base-optimizer options (``ema_*`` only matter with ``use_ema``);
    ``loss_scale_factor`` must also be a positive finite number, as dividing by it requires."""
    if not isinstance(use_ema, bool):
        raise ValueError(f"use_ema={use_ema!r} must be True or False")
    if use_ema:
        Interval.parse("[0, 1]").check("ema_momentum", ema_momentum)
        if ema_overwrite_frequency and (not isinstance(ema_overwrite_frequency, int)
                                        or isinstance(ema_overwrite_frequency, bool)
                                        or ema_overwrite_frequency < 1):
            raise ValueError(f"ema_overwrite_frequency={ema_overwrite_frequency!r} must be an "
                             f"integer >= 1 or None")
    if loss_scale_factor is not None:
        Interval.parse("(0, inf)").check("loss_scale_factor", loss_scale_factor)


def _keras_float32(x: Tensor) -> Tensor:
    """Round through float32, as keras.ops.maximum/minimum do when one side is a Python float."""
    return x.to(torch.float32).to(x.dtype)


def _norm_clip_factor(norm: Tensor, threshold: float, flavor: str) -> Tensor:
    """The factor that scales a gradient of this norm to at most ``threshold``.

    torch flavor: ``torch.nn.utils.clip_grad_norm_``'s min(1, c / (‖g‖ + 1e-6)). keras flavor:
    Keras' ``clip_by_norm``, c / max(‖g‖, c), where the max is computed in float32 (keras.ops
    promotes a float64 tensor and a Python float to float32); reproduced for equal numbers.
    """
    if flavor == "keras":
        return threshold / _keras_float32(torch.clamp(norm, min=threshold))
    return (threshold / (norm + 1e-6)).clamp(max=1.0)


def _global_clip_factor(norm: Tensor, threshold: float, flavor: str) -> Tensor:
    """As :func:`_norm_clip_factor` for the norm of all gradients together; Keras'
    ``clip_by_global_norm`` computes c · min(1/‖g‖, 1/c), the min and the product in float32."""
    if flavor == "keras":
        smaller = torch.clamp(1.0 / norm, max=1.0 / threshold).to(torch.float32)
        return (threshold * smaller).to(norm.dtype)
    return _norm_clip_factor(norm, threshold, flavor)


class Optimizer(torch.optim.Optimizer):
    r"""A ``torch.optim.Optimizer`` whose update rule is a chain of transforms.

    For every parameter with a gradient, one call of :meth:`step` does

    1. loss scaling: with ``loss_scale_factor=s`` the gradients (of a loss multiplied by s,
       see :meth:`scale_loss`) are divided by s in place, as Keras' static loss scaling;
    2. gradient accumulation: with ``gradient_accumulation_steps=k`` the first k−1 calls only
       add the gradient to a buffer; the k-th uses the mean of the k gradients (as Keras);
    3. the non-finite policy: ``"ignore"`` (torch's behaviour), ``"skip"`` (leave parameters and
       state untouched and count the step in :attr:`skipped_steps`) or ``"raise"``;
    4. clipping: ``clipnorm`` (each tensor's norm), ``global_clipnorm`` (the norm of all
       gradients together) or ``clipvalue`` (each element), at most one of them;
    5. ``maximize`` (ascend), then weight decay: coupled (L2, :math:`g \leftarrow g + \lambda p`)
       or decoupled (:math:`p \leftarrow p(1 - \eta\lambda)`, Loshchilov & Hutter, ICLR 2019);
    6. the chain: :math:`p \leftarrow p - \text{chain}(g)`;
    7. with ``use_ema=True``, Keras' exponential moving average of the weights (Polyak
       averaging), kept in each parameter's state under ``"ema"``: with μ = ``ema_momentum``,
       :math:`\bar p \leftarrow \mu \bar p + (1-\mu) p` for every parameter of the
       optimizer, :math:`\bar p \leftarrow p` while no update has been made yet. As in Keras
       this runs at every call of :meth:`step`, the accumulating ones included, and
       ``ema_overwrite_frequency=n`` writes :math:`\bar p` into the parameters when
       (:attr:`iterations` + 1) is a multiple of n, with :attr:`iterations` counted before
       this call's update. :meth:`finalize_variable_values` writes the averages into the
       parameters at the end of training.

    The named optimizers in :mod:`optimlab.optim` are subclasses that fix the chain and the
    defaults; this class also builds new ones directly::

        from optimlab.optim import Optimizer, transforms as T
        opt = Optimizer(model.parameters(),
                        T.chain(T.AverageGradient(), T.Adapt(bias_correction=True),
                                T.LearningRate()),
                        lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    Args:
        params: parameters or param groups, as for any ``torch.optim.Optimizer``.
        transforms: the chain (or a list of transforms); a subclass supplies its own.
        flavor: ``"torch"`` or ``"keras"``: whose defaults and conventions to reproduce.
        engine: how the chain is executed (see :mod:`optimlab.optim.engines`): ``"reference"``
            (one tensor at a time), ``"eager"`` (cache-sized pieces), ``"compiled"`` (fused
            kernels), ``"auto"`` (compiled for large models where a compiler works, else eager;
            decided at the first step) or the opt-in ``"flat"``/``"flat-compiled"`` (parameters
            and gradients re-pointed into one flat buffer per cohort). All but the flat ones
            leave the parameters' and gradients' storage, dtype, layout and identity alone.
        maximize: maximize the objective instead of minimizing it.
        weight_decay: the decay coefficient λ ≥ 0.
        decoupled_weight_decay: decoupled (AdamW-style) instead of coupled L2 decay.
        clipnorm, global_clipnorm, clipvalue: clipping thresholds (> 0) or None.
        gradient_accumulation_steps: k ≥ 1 micro-batches per update.
        use_ema: keep the EMA of the weights (Keras' option; see 7. above).
        ema_momentum: μ in [0, 1] of that average (Keras' default 0.99).
        ema_overwrite_frequency: n ≥ 1, or None (or 0, as Keras) to write the averages into
            the parameters only when :meth:`finalize_variable_values` is called.
        loss_scale_factor: s > 0 (finite) or None: divide every gradient by s (see 1. above).
        nonfinite: ``"ignore"``, ``"skip"`` or ``"raise"``.
        state_dtype: keep the optimizer state in this dtype (e.g. ``torch.float32`` for
            bfloat16 parameters) and compute the update in it; None: the parameter's dtype.
        foreach, fused: accepted for drop-in compatibility with torch.optim; the engine decides.
        capturable, differentiable: accepted for compatibility; only ``False`` is supported.
        **hyperparameters: the hyper-parameters the chain reads (``lr``, ``betas``, ...; see
            :meth:`hyperparameter_names`). Any other keyword is a ``TypeError``, as in torch.
    """

    #: flavor → default hyper-parameters; subclasses fill it in.
    DEFAULTS: Mapping[str, Mapping[str, Any]] = {"torch": {}, "keras": {}}

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        transforms: Chain | Sequence[Transform] | None = None,
        *,
        flavor: str = "torch",
        engine: str = "auto",
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int = 1,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        **hyperparameters: Any,
    ):
        _check_choice("flavor", flavor, FLAVORS)
        if transforms is None:
            transforms = self.transforms(flavor)
        self.chain: Chain = transforms if isinstance(transforms, Chain) else chain(*transforms)
        self.flavor = flavor
        self._check_keywords(hyperparameters)
        _check_choice("engine", engine, ENGINES)
        _check_choice("nonfinite", nonfinite, NONFINITE_POLICIES)
        for name, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                            ("global_clipnorm", global_clipnorm)):
            _check_positive_or_none(name, value)
        given = [n for n, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                ("global_clipnorm", global_clipnorm)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"at most one of clipnorm, clipvalue, global_clipnorm may be set, "
                             f"got {', '.join(given)}")
        if (isinstance(gradient_accumulation_steps, bool)
                or not isinstance(gradient_accumulation_steps, int)
                or gradient_accumulation_steps < 1):
            raise ValueError(f"gradient_accumulation_steps={gradient_accumulation_steps!r} must "
                             f"be an integer >= 1")
        _check_keras_options(use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor)
        if state_dtype is not None and not (isinstance(state_dtype, torch.dtype)
                                            and state_dtype.is_floating_point):
            raise ValueError(f"state_dtype={state_dtype!r} must be a floating torch.dtype or None")
        for name, value, why in (("capturable", capturable, "no CUDA-graph capture"),
                                 ("differentiable", differentiable, "the step runs under no_grad")):
            if value:
                raise ValueError(f"{name}={value!r} is not supported by optimlab optimizers "
                                 f"({why}); allowed: False")
        self.state_dtype = state_dtype
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.nonfinite = nonfinite
        self.use_ema, self.ema_momentum = use_ema, ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency or None
        self.loss_scale_factor = loss_scale_factor
        #: updates made (Keras' ``optimizer.iterations``: accumulating calls do not count).
        self.iterations = 0
        #: how many steps the ``"skip"`` policy has skipped.
        self.skipped_steps = 0
        self._micro_step = 0
        self._announced: set[str] = set()
        self._engine_name = engine
        self._engine = None
        defaults = {**_COMMON, **self.DEFAULTS.get(flavor, {})}
        defaults.update({k: v for k, v in hyperparameters.items() if v is not None})
        # kept in every group as torch.optim keeps them, for code (and checkpoints loaded into
        # torch.optim or the reference packages) that reads them; they change nothing here
        defaults.update(foreach=foreach, fused=fused, capturable=capturable,
                        differentiable=differentiable)
        self._validate(defaults)  # before looking at params, as torch.optim checks its arguments
        super().__init__(params, defaults)

    #: torch keeps a per-parameter ``"step"`` in the state of every optimizer but SGD.
    counts_steps: bool = True
    #: True if ``step`` needs a closure that re-evaluates the loss (LBFGS): code that calls
    #: ``step()`` without one lists optimizers with ``optimlab.optim.names(closure=False)``.
    needs_closure: bool = False
    #: True if the optimizer takes 2-D parameters only (Muon): code that hands it all of a
    #: model's parameters lists optimizers with ``optimlab.optim.names(matrices=False)``.
    needs_matrices: bool = False

    @property
    def engine(self) -> str:
        """The engine in use (``"auto"`` until the first step decides)."""
        return self._engine.name if self._engine is not None else self._engine_name

    def _ready_engine(self):
        if self._engine is None:
            self._engine = make_engine(self._engine_name, self)
        return self._engine

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the engine's plans, which are rebuilt at the next step (deepcopy and
        pickle give a working optimizer)."""
        state = dict(self.__dict__)
        state["_engine"] = None
        return state

    @classmethod
    def transforms(cls, flavor: str) -> Chain:
        """The chain of this optimizer in the given flavor (subclasses override)."""
        raise TypeError(f"{cls.__name__} needs a chain of transforms: "
                        f"Optimizer(params, transforms=[...], **hyperparameters)")

    def hyperparameter_names(self) -> list[str]:
        """The hyper-parameters this optimizer takes by keyword besides the base options: a
        named optimizer's own arguments (those of its ``__init__``); for a chain given directly,
        the names its transforms read (ranges and switches) and the class's defaults. Both
        with ``weight_decay``, ``decoupled_weight_decay`` and ``maximize``."""
        if type(self).__init__ is not Optimizer.__init__:
            names = _keywords(type(self).__init__)
        else:
            names = [*(key.partition(".")[0] for key in self.chain.hyperparameters),
                     *self.chain.flags, *self.DEFAULTS.get(self.flavor, {})]
        return list(dict.fromkeys([*names, *_COMMON]))

    def _check_keywords(self, hyperparameters: Mapping[str, Any]) -> None:
        """Refuse a keyword this optimizer does not take with a TypeError, as Python (and so
        torch.optim) does for a misspelled one, naming the closest keyword it takes."""
        names = self.hyperparameter_names()
        for key in hyperparameters:
            if key in names:
                continue
            close = ([name for group in _SYNONYMS if key in group for name in group
                      if name in names][:1]
                     or difflib.get_close_matches(key, [*names, *_keywords(Optimizer.__init__)],
                                                  n=1))
            hint = (f"did you mean {close[0]!r}?" if close else
                    f"it takes {', '.join(names)} and the options of optimlab.optim.Optimizer")
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword "
                            f"argument {key!r}; {hint}")

    # ----------------------------------------------------------------- param groups and state
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        try:
            self._validate(self.param_groups[-1])
        except ValueError:  # a refused group is not kept
            self.param_groups.pop()
            raise

    #: flavor → {group key: allowed interval}: a flavor's checks beyond the chain's own.
    FLAVOR_RANGES: Mapping[str, Mapping[str, str]] = {}
    #: the reference package's names of our group keys ({its name: ours}, Prodigy's
    #: ``decouple``): written beside ours into :meth:`state_dict`'s groups, so that the package
    #: loads our checkpoints, and read back from a loaded checkpoint of the package's.
    PACKAGE_NAMES: Mapping[str, str] = {}
    #: keys the reference package's groups have that ours have not, with their value here
    #: (deep-copied): written into :meth:`state_dict`'s groups and dropped from a loaded one.
    PACKAGE_KEYS: Mapping[str, Any] = {}

    def _validate(self, group: Mapping[str, Any]) -> None:
        for key, default in self.DEFAULTS.get(self.flavor, {}).items():
            if isinstance(default, tuple) and isinstance(group.get(key), tuple | list):
                check_tuple(group, key, len(default), f"a tuple of {len(default)} entries, as "
                                                      f"the default {default!r}")
        for key, interval in _GROUP_RANGES.items():
            Interval.parse(interval).check(key, group[key])
        for key, interval in self.FLAVOR_RANGES.get(self.flavor, {}).items():
            if hyper(group, key) is not None:
                Interval.parse(interval).check(key, hyper(group, key))
        self.chain.validate(group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_engine", None)
        super().__setstate__(state)
        for group in self.param_groups:  # a state dict from torch.optim lacks our keys
            for name, ours in self.PACKAGE_NAMES.items():  # one from the package has its own
                if name in group:
                    group[ours] = group.pop(name)
            for key in self.PACKAGE_KEYS:
                group.pop(key, None)
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        if self.counts_steps:  # a step count saved as a number (prodigyopt's), as torch's
            for entry in self.state.values():  # __setstate__ converts it
                step = entry.get("step")
                if isinstance(step, int | float) and not isinstance(step, bool):
                    entry["step"] = torch.tensor(float(step), dtype=scalar_dtype())

    def state_dict(self) -> dict[str, Any]:
        """torch's format, plus ``"optimlab"``: the accumulation, skip and update counters."""
        state = super().state_dict()
        for group in state["param_groups"]:  # new dicts (torch's), not the live groups
            group.update({name: group[ours] for name, ours in self.PACKAGE_NAMES.items()})
            group.update(copy.deepcopy(dict(self.PACKAGE_KEYS)))
        state["optimlab"] = {"micro_step": self._micro_step, "skipped_steps": self.skipped_steps,
                             "iterations": self.iterations}
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state_dict = dict(state_dict)
        extras = state_dict.pop("optimlab", {})
        super().load_state_dict(state_dict)
        self._micro_step = extras.get("micro_step", 0)
        self.skipped_steps = extras.get("skipped_steps", 0)
        self.iterations = extras.get("iterations", 0)

    def init_state(self) -> None:
        """Create every parameter's state as a first step would, without stepping (what
        ``torch.distributed.checkpoint`` otherwise does with a zero-learning-rate step)."""
        for group in self.param_groups:
            hp = Hyper(group)
            for p in group["params"]:
                if p.requires_grad:
                    init_state(self, p, hp)
                if self.use_ema and EMA not in self.state[p]:
                    self.state[p][EMA] = self._ema_buffer(p)

    @torch.no_grad()
    def train(self, mode: bool = True) -> None:
        """Put the parameters at the point the optimizer takes gradients at (``mode=True``) or
        at the point to evaluate the model at (``mode=False``, as :meth:`eval`).

        Only for optimizers whose chain has such modes (Schedule-Free: its parameters hold y
        in training and x in evaluation): each group whose ``train_mode`` differs has every
        parameter with state moved in place by the chain's
        :meth:`~optimlab.optim.transforms.Transform.to_train` /
        :meth:`~optimlab.optim.transforms.Transform.to_eval`, and its ``train_mode`` set, as
        the authors' package does; :meth:`step` refuses to run in evaluation mode. For every
        other optimizer it does nothing, so a training loop may call it on any optimizer.
        """
        if not self.chain.modes:
            return
        for group in self.param_groups:
            if bool(group.get("train_mode", True)) == mode:
                continue
            hp = Hyper(group)
            move = self.chain.to_train if mode else self.chain.to_eval
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    move(p, state, hp)
            group["train_mode"] = mode

    def eval(self) -> None:
        """``train(False)``: the parameters to the point to evaluate the model at (see
        :meth:`train`)."""
        self.train(False)

    def announce(self, message: str) -> None:
        """Warn once per optimizer about a fallback or a choice made for the user."""
        if message not in self._announced:
            self._announced.add(message)
            warnings.warn(message, stacklevel=5)

    # --------------------------------------------------------------------------------- step
    @torch.no_grad()
    @outside_graphs
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one update (or one micro-step of gradient accumulation).

        Under ``torch.compile`` (``torch.compile(opt.step)``, or a compiled training step that
        calls it) the step runs as written, outside the graph: the engine compiles its own
        kernels (``engine="compiled"``), and tracing the engine's bookkeeping (plans, step
        counts read as Python numbers, views of the state) would bake one step's values into a
        graph.

        Args:
            closure: re-evaluates the model and returns the loss (optional).
        """
        if self.chain.modes and not all(g.get("train_mode", True) for g in self.param_groups):
            raise RuntimeError(
                f"{type(self).__name__}.step() was called in evaluation mode: the parameters "
                f"hold the averaged point x, not the point y that gradients are taken at. "
                f"Call optimizer.train() before training (and optimizer.eval() before "
                f"evaluating or saving)")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        for g in grads:
            if g.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients; use "
                                   f"a dense embedding (sparse=False) or torch.optim.SparseAdam")
        if self.loss_scale_factor is not None:
            torch._foreach_div_(grads, self.loss_scale_factor)
        if self.gradient_accumulation_steps > 1 and not self._accumulate():
            self._average(updated=False)
            return loss
        engine = self._ready_engine()
        # the gradients as the engine holds them, for the checks that read them (flat engines
        # copy fresh gradients into their buffer first); else the engine's step reads them
        checked = self.nonfinite != "ignore" or any(
            v is not None for v in (self.clipvalue, self.clipnorm, self.global_clipnorm))
        flat = engine.gradients() if checked else []
        if self.nonfinite != "ignore" and flat and not self._all_finite(flat):
            if self.nonfinite == "raise":
                raise FloatingPointError(
                    f"{type(self).__name__}.step: a gradient contains NaN or Inf "
                    f"(nonfinite='raise'); parameters and state were not changed")
            self.skipped_steps += 1
            return loss
        self._clip(flat)
        engine.step()
        self._average(updated=True)
        return loss

    def scale_loss(self, loss: Any) -> Any:
        """The loss multiplied by ``loss_scale_factor`` (unchanged without one), for the
        backward pass; :meth:`step` divides the gradients by the factor again (as Keras)."""
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    @torch.no_grad()
    def finalize_variable_values(self) -> None:
        """With ``use_ema``, write each parameter's moving average into it (Keras' method of
        this name, which ``Model.fit`` calls after the last epoch); without, do nothing."""
        for group in self.param_groups:
            for p in group["params"]:
                if EMA in self.state.get(p, {}):
                    p.copy_(self.state[p][EMA])

    def _ema_buffer(self, p: Tensor) -> Tensor:
        dtype = self.state_dtype if self.state_dtype is not None and p.is_floating_point() \
            else p.dtype
        return p.detach().to(dtype, copy=True)

    def _average(self, updated: bool) -> None:
        """Count the update and, with ``use_ema``, update the moving averages as Keras'
        ``_update_model_variables_moving_average``: μ̄ = μ in the average's dtype (0 before the
        first update), p̄ ← μ̄·p̄ + (1 − μ̄)·p, then overwrite every ``ema_overwrite_frequency``."""
        iterations = self.iterations  # Keras' count before this call's increment
        self.iterations += updated
        if not self.use_ema:
            return
        by_dtype: dict[torch.dtype, tuple[list[Tensor], list[Tensor]]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if EMA not in state:
                    state[EMA] = self._ema_buffer(p)
                averages, values = by_dtype.setdefault(state[EMA].dtype, ([], []))
                averages.append(state[EMA])
                values.append(p.detach().to(state[EMA].dtype))
        for dtype, (averages, values) in by_dtype.items():
            if iterations == 0:  # one copy_ a tensor: FSDP2's DTensor has no _foreach_copy_
                for average, value in zip(averages, values, strict=True):
                    average.copy_(value)
                continue
            # μ rounded to the average's precision, as Keras casts it to the variable's dtype
            mu = torch.tensor(self.ema_momentum, dtype=dtype.to_real())
            torch._foreach_mul_(averages, mu.item())
            torch._foreach_add_(averages, torch._foreach_mul(values, (1 - mu).item()))
        frequency = self.ema_overwrite_frequency
        if frequency and (iterations + 1) % frequency == 0:
            self.finalize_variable_values()

    def _accumulate(self) -> bool:
        """Add this micro-batch's gradients; True (and ``.grad`` = the mean) on the k-th call."""
        k = self.gradient_accumulation_steps
        self._micro_step += 1
        done = self._micro_step >= k
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "accumulated_grad" not in state:
                    state["accumulated_grad"] = torch.zeros_like(p.grad)
                buffer = state["accumulated_grad"]
                if done:
                    p.grad.add_(buffer).div_(k)
                    buffer.zero_()
                else:
                    buffer.add_(p.grad)
        if done:
            self._micro_step = 0
        return done

    @staticmethod
    def _all_finite(grads: list[Tensor]) -> bool:
        return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())

    def _clip(self, flat: list[Tensor]) -> None:
        """Clip in place, as torch.nn.utils.clip_grad_norm_ does."""
        if self.clipvalue is not None:
            for g in flat:
                g.clamp_(-self.clipvalue, self.clipvalue)
        elif self.clipnorm is not None:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        norm = torch.linalg.vector_norm(p.grad)
                        p.grad.mul_(_norm_clip_factor(norm, self.clipnorm, self.flavor))
        elif self.global_clipnorm is not None and flat:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                         for g in flat]))
            factor = _global_clip_factor(norm, self.global_clipnorm, self.flavor)
            for g in flat:
                g.mul_(factor.to(g.dtype))
