"""RAdam, Rprop and ASGD keep torch's state: the same keys, shapes, dtypes and values.

The generic tests compare parameters; this compares what they do not show: ASGD's average of
the iterates ``ax`` (which never enters the update) and its 0-d ``eta`` and ``mu``, Rprop's
step sizes and RAdam's moments, after the same updates fed the same gradients.
"""

from __future__ import annotations

import pytest
import torch

import optimlab.optim as oo

from .database import DATABASE, default_dtype
from .references import OPTIONS, OptimlabRun, TorchRun, step_errors

CLASSES = (oo.RAdam, oo.Rprop, oo.ASGD)
CASES = [pytest.param(info, hp, id=info.case_id(i))
         for info in DATABASE if info.cls in CLASSES and info.reference == "torch"
         for i, (_, hp) in enumerate(info.sets) if not set(hp) & set(OPTIONS)]
#: buffers are compared to 1e-10 of their largest value: both runs compute them from the same
#: gradients with the same formula, so they differ by a few roundings (measured: below 1e-15).
TOLERANCE = 1e-10


def assert_same_state(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer) -> None:
    mine, expected = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert mine.keys() == expected.keys()
    for index, state in expected.items():
        assert mine[index].keys() == state.keys(), index
        for key, value in state.items():
            actual = mine[index][key]
            assert actual.shape == value.shape and actual.dtype == value.dtype, (index, key)
            if value.dim() == 0:  # step, eta, mu: the same Python arithmetic, exactly
                assert actual.item() == value.item(), (index, key)
            else:
                bound = TOLERANCE * value.abs().max().item()
                assert (actual - value).abs().max().item() <= bound, (index, key)


@pytest.mark.parametrize("info, hp", CASES)
def test_state_equals_torchs(info, hp):
    with default_dtype(torch.float64):
        ours, theirs = OptimlabRun(info, hp), TorchRun(info, hp)
        step_errors(ours, theirs, hp, steps=30)
        assert_same_state(ours.optimizer, theirs.optimizer)
        if info.cls is oo.ASGD and hp.get("t0", 1e6) < 30:
            # the average has started: it is no longer the last iterate
            state = ours.optimizer.state[ours.params[0]]
            assert state["mu"].item() < 1
            assert not torch.equal(state["ax"], ours.params[0].detach())


@pytest.mark.parametrize("name, hp", [("ASGD", {"lr": 0.05, "t0": 3, "lambd": 0.01}),
                                      ("Rprop", {"lr": 0.01}), ("RAdam", {"lr": 0.01})])
def test_scalar_state_in_torchs_default_float32(name, hp):
    """Under torch's usual float32 default, 0-d state is float32 (ASGD's eta and mu rounded to
    it, and read back rounded, as torch does), on float32 parameters."""
    info = next(i for i in DATABASE if i.cls.__name__ == name and i.flavor == "torch")
    with default_dtype(torch.float32):
        ours = OptimlabRun(info, hp, dtype=torch.float32)
        theirs = TorchRun(info, hp)
        theirs.params = [torch.nn.Parameter(p.detach().float()) for p in theirs.params]
        theirs.optimizer = getattr(torch.optim, name)(theirs.params, foreach=False, **hp)
        errors = step_errors(ours, theirs, hp, steps=10, dtype=torch.float32)
        assert max(errors) <= 1e-5  # float32: a few roundings of the step
        state = ours.optimizer.state[ours.params[0]]
        assert state["step"].dtype == torch.float32
        if name == "ASGD":
            assert state["eta"].dtype == state["mu"].dtype == torch.float32
            expected = theirs.optimizer.state[theirs.params[0]]
            assert state["eta"].item() == expected["eta"].item()
            assert state["mu"].item() == expected["mu"].item()


def test_keras_flavor_decays_weights_decoupled():
    """Keras has no RAdam, Rprop or ASGD: their keras flavor is torch's algorithm with Keras'
    weight decay, decoupled, which for RAdam is torch's ``decoupled_weight_decay=True``."""
    info = next(i for i in DATABASE if i.cls is oo.RAdam and i.flavor == "keras")
    hp = {"lr": 0.01, "weight_decay": 0.1}
    with default_dtype(torch.float64):
        errors = step_errors(OptimlabRun(info, hp),
                             TorchRun(info, {**hp, "decoupled_weight_decay": True}), hp, steps=20)
    assert max(errors) <= TOLERANCE
    params = [torch.nn.Parameter(torch.zeros(2))]
    for cls in CLASSES:
        assert cls(params, flavor="keras").defaults["decoupled_weight_decay"] is True
        assert cls(params).defaults["decoupled_weight_decay"] is False
