"""Prodigy against the authors' package (prodigyopt 1.1.2), beyond the generic tests: the
estimate d and the group-level state step by step, the skipped step of all-zero gradients,
one estimate per param group, learning-rate schedulers, the state's format and resume.

Comparisons go update by update from the package's parameters (references.step_errors); the
group-level scalars (d, d_max, d_numerator, ...) are compared after every update to 1e-10
relative: both sum the same float64 terms (only the order within a dot product differs), so
they part by rounding, ~1e-15, while a wrong formula or a wrong pass (old d for new) is off
by far more.
"""

from __future__ import annotations

import copy
import io

import prodigyopt
import pytest
import torch

import optimlab.optim as oo

from .database import DATABASE, default_dtype
from .references import (
    OptimlabRun,
    PackageRun,
    Run,
    _emulated_gradients,
    flat,
    initial_parameters,
    step_errors,
    updates,
)
from .test_generic import SCHEDULERS, TOLERANCE, assert_steps_match

INFO = next(info for info in DATABASE if info.id == "Prodigy-torch")
TRAJECTORY_SETS = ("plain", "defaults", "bias_correction+safeguard_warmup",
                   "decoupled_weight_decay+growth_rate+d_coef+d0", "no_first_moment+beta3",
                   "slice_p+lr+eps", "accumulation")
#: every engine that stacks differently: the compiled one runs the first set (one compilation)
CASES = [pytest.param(hp, engine, id=f"{engine}-{description}")
         for engine in ("reference", "eager", "compiled")
         for description, hp in INFO.sets
         if description in TRAJECTORY_SETS and (engine != "compiled" or description == "plain")]
#: the group-level state the package keeps (d_denom and d_hat from the first update on)
GROUP_STATE = ("d", "d_max", "d_numerator", "d_denom", "d_hat")
STEPS = 60


@pytest.fixture(autouse=True)
def float64_default():
    with default_dtype(torch.float64):
        yield


def assert_close_scalars(ours: dict, theirs: dict, keys, what: str) -> None:
    for key in keys:
        a, b = float(ours[key]), float(theirs[key])
        assert abs(a - b) <= 1e-10 * abs(b), f"{what}: {key} = {a!r}, the package's {b!r}"


@pytest.mark.parametrize("hp, engine", CASES)
def test_estimate_of_d_follows_the_package(hp, engine):
    """Every update: the same step (1e-10 of it), the same d, d_max, d_numerator, d_denom,
    d_hat (1e-10 relative) and k; the state has the package's names and shapes."""
    ours, theirs = OptimlabRun(INFO, hp, engine=engine), PackageRun(INFO, hp)
    trajectory = []
    for t in range(STEPS):
        errors = step_errors(ours, theirs, hp, steps=1, start=t)
        assert_steps_match(errors, TOLERANCE, f"update {t}")
        group, reference = ours.optimizer.param_groups[0], theirs.optimizer.param_groups[0]
        assert_close_scalars(group, reference, GROUP_STATE, f"update {t}")
        assert group["k"] == reference["k"] == t + 1
        trajectory.append(group["d"])
    assert trajectory[-1] > 10 * trajectory[0], "d did not grow: the test would not see it"
    for p, q in zip(ours.params, theirs.params, strict=True):
        mine, package = ours.optimizer.state[p], theirs.optimizer.state[q]
        assert set(mine) - {"accumulated_grad"} == set(package)  # the base's accumulation
        for key in set(package) - {"step"}:
            assert mine[key].shape == package[key].shape, key


def test_all_zero_gradients_skip_the_step_as_the_package():
    """While the sums s are all 0 (all-zero gradients from the start) the package returns
    before its update: parameters, d and k stay. Later, all-zero gradients decay s, the
    moments and the estimate's numerator, and the step goes on: the same parameters, moments
    and group state as the package at every update."""
    hp = INFO.sets[0][1]

    class ZeroAt(Run):
        def __init__(self, run: Run, zero: set[int]):
            self.run, self.zero, self.t, self.params = run, zero, 0, run.params

        def update(self, micro):
            _emulated_gradients(self.params, micro, hp)
            if self.t in self.zero:
                for p in self.params:
                    p.grad.zero_()
            self.t += 1
            self.run.optimizer.step()

    zero = {0, 1, 6}
    ours, theirs = ZeroAt(OptimlabRun(INFO, hp), zero), ZeroAt(PackageRun(INFO, hp), zero)
    for t in range(12):
        before = flat(theirs.parameters())
        group = dict(theirs.run.optimizer.param_groups[0])
        errors = step_errors(ours, theirs, hp, steps=1, start=t)
        assert_steps_match(errors, TOLERANCE, f"update {t}")
        after = theirs.run.optimizer.param_groups[0]
        skipped = t in (0, 1)  # s = 0: the package returns early
        assert torch.equal(flat(theirs.parameters()), before) == skipped
        assert torch.equal(flat(ours.parameters()), before) == skipped
        assert after["k"] == group["k"] + (not skipped)
        mine = ours.run.optimizer.param_groups[0]
        assert mine["k"] == after["k"]
        assert_close_scalars(mine, after, ("d", "d_max", "d_numerator"), f"update {t}")
        for p, q in zip(ours.params, theirs.params, strict=True):
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(ours.run.optimizer.state[p][key],
                                           theirs.run.optimizer.state[q][key],
                                           rtol=1e-10, atol=0)
    assert theirs.run.optimizer.param_groups[0]["k"] == 10


class GroupsRun(Run):
    """The reference problem with its parameters split in two param groups, [w1, b1] and
    [w2, b2]: ``make(params)`` returns the optimizers to step (one, or one per group)."""

    def __init__(self, make):
        self.params = [torch.nn.Parameter(p) for p in initial_parameters()]
        self.optimizers = make(self.params)

    def update(self, micro):
        _emulated_gradients(self.params, micro, {})
        for optimizer in self.optimizers:
            optimizer.step()


@pytest.mark.parametrize("engine", ["reference", "eager"])
def test_each_param_group_has_its_own_estimate(engine):
    """optimlab's Prodigy keeps d per param group (the package pools it over all groups and
    needs one lr): two groups are two packages, each over its own parameters."""
    settings = [{"lr": 0.5}, {"lr": 0.3, "d_coef": 0.5, "weight_decay": 0.01}]

    def ours(params):
        return [oo.Prodigy([{"params": params[:2], **settings[0]},
                            {"params": params[2:], **settings[1]}], engine=engine)]

    def theirs(params):
        return [prodigyopt.Prodigy(params[:2], **settings[0]),
                prodigyopt.Prodigy(params[2:], **settings[1])]

    mine, package = GroupsRun(ours), GroupsRun(theirs)
    assert_steps_match(step_errors(mine, package, {}, steps=STEPS), TOLERANCE, "two groups")
    groups = mine.optimizers[0].param_groups
    for group, reference in zip(groups, package.optimizers, strict=True):
        assert_close_scalars(group, reference.param_groups[0], GROUP_STATE, "after the run")
    assert groups[0]["d"] != groups[1]["d"]


@pytest.mark.parametrize("schedule", list(SCHEDULERS))
def test_matches_the_package_under_lr_scheduler(schedule):
    """``lr`` multiplies the estimated step size; both read it at every step."""
    hp = INFO.sets[0][1]
    ours = OptimlabRun(INFO, hp, SCHEDULERS[schedule])
    theirs = PackageRun(INFO, hp, SCHEDULERS[schedule])
    assert_steps_match(step_errors(ours, theirs, hp), TOLERANCE, f"Prodigy under {schedule}")
    assert ours.optimizer.param_groups[0]["lr"] == theirs.optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("engine", ["reference", "eager"])
def test_resume_restores_the_group_state_bit_exact(engine):
    """A state dict carries d, d_max, d_numerator and k (in param_groups) with s, p0 and the
    moments: 10 + 10 updates through torch.save equal 20 in one go, bit for bit."""
    hp = {"lr": 0.5, "weight_decay": 0.01, "use_bias_correction": True}
    straight = OptimlabRun(INFO, hp, engine=engine)
    first = OptimlabRun(INFO, hp, engine=engine)
    data = updates({}, 20)
    for micro in data:
        straight.update(micro)
    for micro in data[:10]:
        first.update(micro)
    buffer = io.BytesIO()
    torch.save({"params": first.parameters(), "opt": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    assert saved["opt"]["param_groups"][0]["k"] == 10
    resumed = OptimlabRun(INFO, hp, engine=engine)
    resumed.load(saved["params"])
    resumed.optimizer.load_state_dict(saved["opt"])
    for micro in data[10:]:
        resumed.update(micro)
    assert torch.equal(flat(resumed.params), flat(straight.params))
    for key in (*GROUP_STATE, "k", "dlr"):
        assert resumed.optimizer.param_groups[0][key] == straight.optimizer.param_groups[0][key]
    for p, q in zip(resumed.params, straight.params, strict=True):
        for key, value in straight.optimizer.state[q].items():
            assert torch.equal(resumed.optimizer.state[p][key], value), key


@pytest.mark.parametrize("engine", ["reference", "eager"])
def test_the_packages_checkpoint_continues_as_the_package(engine):
    """A run switching from prodigyopt loads its state dict (its ``step`` a Python int, which
    becomes a tensor, as torch's optimizers convert one) and continues as the package does,
    with the checkpoint's settings, as torch's ``load_state_dict`` gives them: the package's
    ``decouple=False`` is ours ``decoupled_weight_decay``, whatever ours was built with."""
    hp = {"lr": 0.5, "weight_decay": 0.01, "decouple": False}
    theirs = PackageRun(INFO, hp)
    for micro in updates(hp, 10):
        theirs.update(micro)
    ours = OptimlabRun(INFO, {"lr": 0.5}, engine=engine)
    ours.load(theirs.parameters())
    ours.optimizer.load_state_dict(copy.deepcopy(theirs.optimizer.state_dict()))
    group = ours.optimizer.param_groups[0]
    assert group["decoupled_weight_decay"] is False and "decouple" not in group
    errors = step_errors(ours, theirs, hp, steps=10, start=10)
    assert_steps_match(errors, TOLERANCE, "Prodigy continued from prodigyopt's checkpoint")


def test_coupled_weight_decay_leaves_the_users_gradient_alone():
    """The package adds λp to ``.grad`` in place; optimlab never changes the user's tensors."""
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
    opt = oo.Prodigy(params, weight_decay=0.1, decouple=False)
    grads = [torch.randn_like(p) for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads, strict=True))
    assert opt.param_groups[0]["decoupled_weight_decay"] is False
