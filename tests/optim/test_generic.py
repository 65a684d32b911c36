"""Generic tests run over every entry of the optimizer database (tests/optim/database.py)."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from .database import DATABASE, default_dtype
from .database import cases as database_cases
from .references import (
    OPTIONS,
    STEPS,
    batches,
    flat,
    initial_parameters,
    loss_fn,
    relative_error,
    run_optimlab,
    run_reference,
    run_torch,
)

TOLERANCE = 1e-10


@pytest.fixture(autouse=True)
def float64_default():
    """torch keeps ``step`` and NAdam's ``mu_product`` in the default dtype: make it float64."""
    with default_dtype(torch.float64):
        yield


@pytest.mark.parametrize("info, hp", database_cases())
def test_matches_reference_float64(info, hp):
    """≥ 100 float64 steps equal the reference implementation to 1e-10 relative."""
    ours, _ = run_optimlab(info, hp)
    expected = run_reference(info, hp)
    err = relative_error(flat(ours), flat(expected))
    assert err <= TOLERANCE, f"{info.id} {hp}: relative error {err:.3g} vs {info.reference}"
    assert not torch.equal(flat(ours), flat(initial_parameters())), "parameters did not move"


SCHEDULERS = {
    "exponential": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97),
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5),
    "onecycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.05, total_steps=4 * STEPS, cycle_momentum=False),
}


@pytest.mark.parametrize("schedule", list(SCHEDULERS))
@pytest.mark.parametrize("info, hp", database_cases(lambda i: i.reference == "torch"))
def test_matches_torch_under_lr_scheduler(info, hp, schedule):
    ours, _ = run_optimlab(info, hp, scheduler=SCHEDULERS[schedule])
    expected = run_torch(info, hp, scheduler=SCHEDULERS[schedule])
    assert relative_error(flat(ours), flat(expected)) <= TOLERANCE


@pytest.mark.parametrize("info, hp", database_cases())
def test_state_dict_resume_is_bit_exact(info, hp):
    """Save after 15 updates, load into a fresh optimizer, continue: the bits of 30 in one go."""
    k = hp.get("gradient_accumulation_steps", 1)
    data = batches(30 * k + 1)  # +1: stop between two micro-steps when accumulating

    def train(params, opt, part):
        for batch in part:
            opt.zero_grad()
            loss_fn(params, batch).backward()
            opt.step()

    straight = [torch.nn.Parameter(p) for p in initial_parameters()]
    train(straight, info.make(straight, **hp), data)

    first = [torch.nn.Parameter(p) for p in initial_parameters()]
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


@pytest.mark.parametrize("info, hp", [
    c for c in database_cases(lambda i: i.reference == "torch")
    if not set(c.values[1]) & set(OPTIONS)])  # options torch.optim does not have
def test_state_dict_has_torch_format(info, hp):
    """An optimlab state dict loads into torch.optim's class and training continues equal."""
    ours, opt = run_optimlab(info, hp, steps=10)
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    torch_opt = getattr(torch.optim, info.reference_name)(theirs, foreach=False)
    torch_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # torch aliases "step" on load
    for batch in batches(20)[10:]:
        for params, o in ((ours, opt), (theirs, torch_opt)):
            o.zero_grad()
            loss_fn(params, batch).backward()
            o.step()
    assert relative_error(flat(ours), flat(theirs)) <= TOLERANCE


FIRST_SETS = [c for c in database_cases() if c.id.endswith("-0")]


@pytest.mark.parametrize("info, hp", FIRST_SETS)
def test_loss_goes_down(info, hp):
    params, _ = run_optimlab(info, hp, steps=200)
    data = batches(8)
    with torch.no_grad():
        before = sum(loss_fn(initial_parameters(), b) for b in data)
        after = sum(loss_fn(params, b) for b in data)
    assert after < 0.9 * before


@pytest.mark.parametrize("info, hp", FIRST_SETS)
def test_grad_scaler(info, hp):
    """Under torch.amp.GradScaler: the same parameters as unscaled training, and a step with an
    infinite gradient is skipped by the scaler."""
    with default_dtype(torch.float32):
        plain = [torch.nn.Parameter(p) for p in initial_parameters(torch.float32)]
        scaled = [torch.nn.Parameter(p) for p in initial_parameters(torch.float32)]
        opt_plain, opt_scaled = info.make(plain, **hp), info.make(scaled, **hp)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
        for batch in batches(20, torch.float32):
            opt_plain.zero_grad()
            loss_fn(plain, batch).backward()
            opt_plain.step()
            opt_scaled.zero_grad()
            scaler.scale(loss_fn(scaled, batch)).backward()
            scaler.step(opt_scaled)
            scaler.update()
        assert relative_error(flat(scaled), flat(plain)) <= 1e-6
        before = flat(scaled).clone()
        opt_scaled.zero_grad()
        scaler.scale(loss_fn(scaled, batches(1, torch.float32)[0]) * math.inf).backward()
        scaler.step(opt_scaled)
        scaler.update()
        assert torch.equal(flat(scaled), before)
        assert scaler.get_scale() < 2.0**12


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
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
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
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
    opt = info.make(params[:2])
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": params[2:], **kwargs})


@pytest.mark.parametrize("info, hp", [c for c in FIRST_SETS
                                      if c.values[0].reference == "torch"
                                      and c.values[0].complex])
def test_complex_parameters_match_torch(info, hp):
    with pytest.warns(UserWarning, match="complex or sparse parameters run on the reference"):
        ours, _ = run_optimlab(info, hp, steps=30, complex=True)
    expected = run_torch(info, hp, steps=30, complex=True)
    assert ours[0].is_complex()
    assert relative_error(flat(ours), flat(expected)) <= TOLERANCE


@pytest.mark.parametrize("info", [i for i in DATABASE if i.hyperparameters], ids=lambda i: i.id)
def test_sparse_gradients_raise_clearly(info):
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = info.make(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
