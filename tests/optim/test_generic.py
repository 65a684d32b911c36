"""Generic tests run over every entry of the optimizer database (tests/optim/database.py).

Comparisons with another implementation go update by update from the same parameters
(references.step_errors; its module docstring says why): the tolerance bounds the error one
update makes relative to its step, which rounding keeps near 1e-16 on any trajectory.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

import optimlab.optim as oo

from .database import DATABASE, default_dtype
from .database import cases as database_cases
from .references import (
    OPTIONS,
    STEPS,
    OptimlabRun,
    PackageRun,
    TorchRun,
    batches,
    flat,
    initial_parameters,
    loss_fn,
    reference_run,
    run_optimlab,
    signed_loss,
    step_errors,
    torch_optimizer,
    train,
    updates,
)

# The error of one float64 update relative to its step (references.step_errors). Measured
# over every set of the database: at most 3e-16 against torch.optim (also under the
# schedulers), 2.2e-14 against Keras' Ftrl, whose parameters are recomputed from its
# accumulators rather than stepped; a wrong formula is off by far more than 1e-10. Keras'
# Lion: 0 (equal bits; its learning-rate variable takes floatx, float64 in KerasRun, so no
# float32 learning rate widens the bound), with the coordinates whose sign argument is within
# rounding of 0 left out (references.OptimlabRun.ambiguous; none occurred).
TOLERANCE = 1e-10


def assert_steps_match(errors: list[float], tolerance: float, what: str) -> None:
    """Every update's error (references.step_errors) within ``tolerance``; NaN fails."""
    bad = [t for t, error in enumerate(errors) if not error <= tolerance]
    assert not bad, (f"{what}: update {bad[0]} of {len(errors)} is off by {errors[bad[0]]:.3g} "
                     f"of its step (tolerance {tolerance:g}; {len(bad)} updates off)")


@pytest.fixture(autouse=True)
def float64_default():
    """torch keeps ``step`` and NAdam's ``mu_product`` in the default dtype: make it float64."""
    with default_dtype(torch.float64):
        yield


@pytest.mark.parametrize("info, hp", database_cases())
def test_matches_reference_float64(info, hp):
    """100 float64 updates, each from the reference's parameters, equal the reference
    implementation's to 1e-10 of the step."""
    reference = reference_run(info, hp)
    errors = step_errors(OptimlabRun(info, hp), reference, hp)
    assert_steps_match(errors, info.tolerance or TOLERANCE, f"{info.id} {hp} vs {info.reference}")
    start = initial_parameters(matrix_only=info.matrix_only)
    assert not torch.equal(flat(reference.parameters()), flat(start)), "parameters did not move"


SCHEDULERS = {
    "exponential": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97),
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5),
    "onecycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.05, total_steps=4 * STEPS, cycle_momentum=False),
}


@pytest.mark.parametrize("schedule", list(SCHEDULERS))
@pytest.mark.parametrize("info, hp", database_cases(lambda i: i.reference_takes_schedulers))
def test_matches_reference_under_lr_scheduler(info, hp, schedule):
    """The same under torch's schedulers, where the reference is a torch.optim.Optimizer
    (torch.optim's class or a package's) that they drive as they drive ours."""
    errors = step_errors(OptimlabRun(info, hp, SCHEDULERS[schedule]),
                         reference_run(info, hp, SCHEDULERS[schedule]), hp)
    assert_steps_match(errors, TOLERANCE, f"{info.id} {hp} under {schedule}")


@pytest.mark.parametrize("info, hp", database_cases())
def test_state_dict_resume_is_bit_exact(info, hp):
    """Save after 15 updates, load into a fresh optimizer, continue: the bits of 30 in one go."""
    k = hp.get("gradient_accumulation_steps", 1)
    data = batches(30 * k + 1)  # +1: stop between two micro-steps when accumulating

    def train(params, opt, part):
        for batch in part:
            opt.zero_grad()
            signed_loss(params, batch, hp).backward()
            opt.step()

    straight = [torch.nn.Parameter(p) for p in initial_parameters(matrix_only=info.matrix_only)]
    train(straight, info.make(straight, **hp), data)

    first = [torch.nn.Parameter(p) for p in initial_parameters(matrix_only=info.matrix_only)]
    opt = info.make(first, **hp)
    cut = 15 * k + (1 if k > 1 else 0)
    train(first, opt, data[:cut])
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
    opt2 = info.make(resumed, **hp)
    opt2.load_state_dict(saved["opt"])
    train(resumed, opt2, data[cut:])
    assert torch.equal(flat(resumed), flat(straight))


def _authors_package(info) -> bool:
    """The reference is the authors' package (schedulefree, prodigyopt, adabelief-pytorch),
    whose argument names and state format optimlab's class takes; the classes checked against
    pytorch-optimizer have torch's format instead (a step count per parameter), not its."""
    return (info.reference == "package" and info.flavor == "torch"
            and not info.package.startswith("pytorch_optimizer:"))


@pytest.mark.parametrize("switch", ["optimlab-to-package", "package-to-optimlab"])
@pytest.mark.parametrize("info, hp", [
    c for c in database_cases(_authors_package)
    # the package keeps AMSGrad's maximum beside the rectified step, which never reads it;
    # optimlab keeps none (AdaBelief's docstring), so the package cannot load that state
    if not (c.values[0].cls is oo.AdaBelief and c.values[1].get("amsgrad")
            and c.values[1].get("rectify", True))])
def test_checkpoints_cross_with_the_package(info, hp, switch):
    """A run switching between optimlab and the authors' package after 10 updates, by a state
    dict as ``torch.load`` gives it (a copy), continues as the other would have."""
    runs = OptimlabRun(info, hp), PackageRun(info, hp)
    first, second = runs if switch == "optimlab-to-package" else runs[::-1]
    for micro in updates(hp, 10):
        first.update(micro)
    second.load(first.parameters())
    second.optimizer.load_state_dict(copy.deepcopy(first.optimizer.state_dict()))
    errors = step_errors(second, first, hp, steps=10, start=10)
    assert_steps_match(errors, info.tolerance or TOLERANCE, f"{info.id} {hp}, {switch}")


@pytest.mark.parametrize("info, hp", [
    c for c in database_cases(lambda i: i.reference == "torch")
    if not set(c.values[1]) & set(OPTIONS)])  # options torch.optim does not have
def test_state_dict_has_torch_format(info, hp):
    """An optimlab state dict loads into torch.optim's class (built with its defaults: the
    hyper-parameters come from the state dict) and the next 10 updates are equal."""
    ours = train(OptimlabRun(info, hp), hp, steps=10)
    theirs = TorchRun(info, hp)
    theirs.load(ours.parameters())
    theirs.optimizer = torch_optimizer(info.reference_name, theirs.params)
    # torch aliases "step" on load: give it a copy
    theirs.optimizer.load_state_dict(copy.deepcopy(ours.optimizer.state_dict()))
    errors = step_errors(ours, theirs, hp, steps=10, start=10)
    assert_steps_match(errors, TOLERANCE, f"{info.id} {hp} continued in torch.optim")


FIRST_SETS = [c for c in database_cases() if c.id.endswith("-0")]


@pytest.mark.parametrize("info, hp", FIRST_SETS)
def test_loss_goes_down(info, hp):
    params, _ = run_optimlab(info, hp, steps=200)
    data = batches(8)
    with torch.no_grad():
        before = sum(loss_fn(initial_parameters(matrix_only=info.matrix_only), b) for b in data)
        after = sum(loss_fn(params, b) for b in data)
    assert after < 0.9 * before


@pytest.mark.parametrize("info, hp", FIRST_SETS)
def test_grad_scaler(info, hp):
    """Under torch.amp.GradScaler: the same parameters as unscaled training, and a step with an
    infinite gradient is skipped by the scaler."""
    with default_dtype(torch.float32):
        scaled = _ScaledRun(info, hp, torch.float32)
        plain = OptimlabRun(info, hp, dtype=torch.float32)
        errors = step_errors(scaled, plain, hp, steps=20, dtype=torch.float32)
        # scaling by a power of two is exact: equal bits here; the bound allows ~80 float32
        # roundings of the step in case a kernel rounds the scaled gradient differently
        assert_steps_match(errors, 1e-5, f"{info.id} {hp} under GradScaler, float32")
        scaler, opt_scaled, scaled = scaled.scaler, scaled.optimizer, scaled.params
        before = flat(scaled).clone()
        opt_scaled.zero_grad()
        scaler.scale(loss_fn(scaled, batches(1, torch.float32)[0]) * math.inf).backward()
        scaler.step(opt_scaled)
        scaler.update()
        assert torch.equal(flat(scaled), before)
        assert scaler.get_scale() < 2.0**12


class _ScaledRun(OptimlabRun):
    """The optimizer stepped through a torch.amp.GradScaler (scale 2¹², a power of two)."""

    def __init__(self, info, hp, dtype):
        super().__init__(info, hp, dtype=dtype)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)

    def update(self, micro):
        for batch in micro:
            self.optimizer.zero_grad()
            self.scaler.scale(signed_loss(self.params, batch, self.hp)).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()


def _snapshot(opt):
    return {id(p): {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
            for p, s in opt.state.items()}


@pytest.mark.parametrize("info, hp", FIRST_SETS)
def test_nonfinite_skip_leaves_everything_untouched(info, hp):
    params, opt = run_optimlab(info, {**hp, "nonfinite": "skip"}, steps=5)
    before_params, before_state = flat(params).clone(), _snapshot(opt)
    opt.zero_grad()
    loss_fn(params, batches(1)[0]).backward()
    params[2].grad[0, 1] = float("nan")
    params[0].grad[0, 0] = float("inf")
    opt.step()
    assert opt.skipped_steps == 1
    assert torch.equal(flat(params), before_params)
    after_state = _snapshot(opt)
    assert after_state.keys() == before_state.keys()
    for key, buffers in before_state.items():
        for name, value in buffers.items():
            assert torch.equal(after_state[key][name], value), name
    assert opt.state_dict()["optimlab"]["skipped_steps"] == 1


@pytest.mark.parametrize("info, hp", FIRST_SETS)
def test_nonfinite_raise(info, hp):
    params, opt = run_optimlab(info, {**hp, "nonfinite": "raise"}, steps=2)
    before = flat(params).clone()
    opt.zero_grad()
    loss_fn(params, batches(1)[0]).backward()
    params[1].grad[0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        opt.step()
    assert torch.equal(flat(params), before)


BAD_CASES = [pytest.param(info, kwargs, name, id=f"{info.id}-{name}-{i}")
             for info in DATABASE for i, (kwargs, name) in enumerate(info.bad)]


@pytest.mark.parametrize("info, kwargs, name", BAD_CASES)
def test_bad_hyperparameter_raises(info, kwargs, name):
    params = [torch.nn.Parameter(p) for p in initial_parameters(matrix_only=info.matrix_only)]
    arguments = {**kwargs}
    if "flavor" not in arguments:
        arguments["flavor"] = info.flavor
    with pytest.raises(ValueError) as error:
        info.cls(params, **arguments)
    message = str(error.value)
    assert name in message
    value = kwargs.get(name.split("[")[0])
    if value is not None and name not in ("nesterov", "clipvalue") and "[" not in name:
        assert repr(value) in message


@pytest.mark.parametrize("info, kwargs, name", [c for c in BAD_CASES if c.values[2] == "lr"])
def test_bad_hyperparameter_in_added_param_group(info, kwargs, name):
    params = [torch.nn.Parameter(p) for p in initial_parameters(matrix_only=info.matrix_only)]
    opt = info.make(params[:2])
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": params[2:], **kwargs})


@pytest.mark.parametrize("info, hp", [c for c in FIRST_SETS
                                      if c.values[0].reference == "torch"
                                      and c.values[0].complex])
def test_complex_parameters_match_torch(info, hp):
    ours = OptimlabRun(info, hp, complex=True)
    with pytest.warns(UserWarning, match="complex or sparse parameters run on the reference"):
        errors = step_errors(ours, TorchRun(info, hp, complex=True), hp, steps=30)
    assert ours.params[0].is_complex()
    assert_steps_match(errors, TOLERANCE, f"{info.id} {hp}, complex")


@pytest.mark.parametrize("info", [i for i in DATABASE if i.hyperparameters and not i.closure],
                         ids=lambda i: i.id)
def test_sparse_gradients_raise_clearly(info):
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = info.make(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
