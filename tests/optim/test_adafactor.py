"""Adafactor on tensors of every rank (3-D factored over its last two dimensions, matrices,
vectors, 0-d), several of one shape (stacked by the engines), under every engine, step by step
against torch.optim.Adafactor and keras.optimizers.Adafactor; its state is torch's."""

from __future__ import annotations

import copy
import os

import pytest
import torch

import optimlab.optim as oo

from .database import default_dtype

os.environ.setdefault("KERAS_BACKEND", "torch")

ENGINES = ("reference", "eager", "compiled", "flat", "flat-compiled")
#: a 3-D tensor, two matrices of one shape (a stack of two), a 1-row matrix, vectors and a 0-d
SHAPES = [(2, 3, 4), (3, 4), (3, 4), (1, 6), (5,), (1,), ()]
STEPS = 12
TOLERANCE = 1e-10
SETS = {
    "defaults": {},
    "weight_decay+maximize": {"weight_decay": 0.2, "maximize": True, "lr": 0.05},
    "eps+d+beta2_decay": {"eps": (0.05, 0.8), "d": 1.5, "beta2_decay": -0.5},
}


@pytest.fixture(autouse=True)
def float64_default():
    with default_dtype(torch.float64):
        yield


def _start() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen) * 0.5 for s in SHAPES]


def _gradients(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, generator=gen) * 0.1 for s in SHAPES]


def _step_errors(ours, ours_params, theirs_step, theirs_params, theirs_values) -> list[float]:
    """Each step from the reference's parameters: the difference of the two results relative
    to the reference's step (as references.step_errors)."""
    errors = []
    for t in range(STEPS):
        before = [v.clone() for v in theirs_values()]
        with torch.no_grad():
            for p, v in zip(ours_params, before, strict=True):
                p.copy_(v)
        grads = _gradients(t)
        for p, g in zip(ours_params, grads, strict=True):
            p.grad = g.clone()
        ours.step()
        theirs_step(grads)
        after = theirs_values()
        step = max((a - b).abs().max().item() for a, b in zip(after, before, strict=True))
        error = max((p.detach() - a).abs().max().item() for p, a in
                    zip(ours_params, after, strict=True))
        errors.append(error / step)
    return errors


def _torch_run(hp):
    params = [torch.nn.Parameter(p) for p in _start()]
    opt = torch.optim.Adafactor(params, foreach=False, **hp)

    def step(grads):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    return opt, params, step


#: the compiling engines run one set (they compile for seconds), the others every set
CASES = [pytest.param(engine, name, id=f"{engine}-{name}") for engine in ENGINES for name in SETS
         if "compiled" not in engine or name == "weight_decay+maximize"]


@pytest.mark.parametrize("engine, name", CASES)
def test_every_rank_matches_torch_step_by_step(engine, name):
    hp = SETS[name]
    params = [torch.nn.Parameter(p) for p in _start()]
    ours = oo.Adafactor(params, engine=engine, **hp)
    theirs, their_params, step = _torch_run(hp)
    errors = _step_errors(ours, params, step, their_params,
                          lambda: [p.detach().clone() for p in their_params])
    assert max(errors) <= TOLERANCE, errors
    assert ours.engine == engine


def test_state_is_torchs_and_loads_into_torch():
    params = [torch.nn.Parameter(p) for p in _start()]
    ours = oo.Adafactor(params, engine="eager", weight_decay=0.1)
    theirs, their_params, step = _torch_run({"weight_decay": 0.1})
    for t in range(5):
        grads = _gradients(t)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        ours.step()
        step(grads)
    for p, q in zip(params, their_params, strict=True):
        mine, torchs = ours.state[p], theirs.state[q]
        assert set(mine) == set(torchs)
        for key in torchs:
            assert mine[key].shape == torchs[key].shape, key
            assert mine[key].dtype == torchs[key].dtype, key
            torch.testing.assert_close(mine[key], torchs[key], rtol=1e-12, atol=1e-15)
    assert ours.state[params[0]]["row_var"].shape == (2, 3, 1)
    assert ours.state[params[0]]["col_var"].shape == (2, 1, 4)
    assert ours.state[params[-1]]["variance"].shape == ()
    # our state dict continues in torch's class, and torch's in ours
    moved = torch.optim.Adafactor([torch.nn.Parameter(p.detach().clone()) for p in params])
    moved.load_state_dict(copy.deepcopy(ours.state_dict()))
    back = oo.Adafactor([torch.nn.Parameter(p.detach().clone()) for p in their_params],
                        engine="eager")
    back.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for opt in (moved, back, theirs):
        for p, g in zip(opt.param_groups[0]["params"], _gradients(5), strict=True):
            p.grad = g.clone()
        opt.step()
    for a, b, c in zip(moved.param_groups[0]["params"], back.param_groups[0]["params"],
                       their_params, strict=True):
        torch.testing.assert_close(a.detach(), c.detach(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(b.detach(), c.detach(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("engine", ["reference", "eager"])
def test_keras_flavor_matches_keras_on_every_rank(engine):
    """Keras factors a 3-D tensor over its last two dimensions too; its 0-d variables are not
    factored."""
    import keras

    keras.config.set_floatx("float64")
    hp = {"lr": 0.02, "weight_decay": 0.1}
    variables = [keras.Variable(p.numpy(), dtype="float64") for p in _start()]
    theirs = keras.optimizers.Adafactor(learning_rate=hp["lr"], weight_decay=hp["weight_decay"])

    def step(grads):
        theirs.apply_gradients(zip([g.clone() for g in grads], variables, strict=True))

    def values():
        return [v.value.detach().clone() for v in variables]

    params = [torch.nn.Parameter(p) for p in _start()]
    ours = oo.Adafactor(params, flavor="keras", engine=engine, **hp)

    errors = _step_errors(ours, params, step, variables, values)
    assert max(errors) <= TOLERANCE, errors


def test_complex_parameters_raise_as_torch():
    p = torch.nn.Parameter(torch.randn(2, 3, dtype=torch.complex128))
    p.grad = torch.randn_like(p)
    opt = oo.Adafactor([p])
    with pytest.raises(RuntimeError, match="does not support complex parameters"):
        opt.step()


def test_eps_must_be_a_pair():
    with pytest.raises(ValueError, match="eps=0.001 is not allowed: give a pair"):
        oo.Adafactor([torch.nn.Parameter(torch.zeros(2))], eps=1e-3)
    with pytest.raises(ValueError, match=r"eps\[1\]=-1.0 is out of range"):
        oo.Adafactor([torch.nn.Parameter(torch.zeros(2))], eps=(None, -1.0))
