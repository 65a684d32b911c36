"""Schedule-Free AdamW and SGD against the authors' package (schedulefree 1.4.1), beyond the
generic tests: train() / eval() (the parameters at y or at the average x), the refused step in
evaluation mode, resume through a state dict saved in evaluation mode, param groups and
parameters without a gradient, learning-rate schedulers, the L2 variant of AdamW's decay.

Comparisons go update by update from the package's parameters (references.step_errors). A
move by ``eval()`` / ``train()`` is compared the same way: relative to the package's move,
less a few roundings of the parameter itself (the same ``e`` as step_errors).
"""

from __future__ import annotations

import io

import pytest
import schedulefree
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

ENGINES = [engine for engine in oo.ENGINES if engine != "auto"]
ENTRIES = {info.cls: info for info in DATABASE
           if info.cls in (oo.ScheduleFreeAdamW, oo.ScheduleFreeSGD) and info.flavor == "torch"}
#: the set of each class that moves every part: warmup, r, weight_lr_power, weight decay
SETS = {
    oo.ScheduleFreeAdamW: {"lr": 0.02, "warmup_steps": 5, "r": 1.0, "weight_lr_power": 1.0,
                           "weight_decay": 0.05, "betas": (0.8, 0.99)},
    oo.ScheduleFreeSGD: {"lr": 0.1, "momentum": 0.8, "warmup_steps": 5, "r": 0.5,
                         "weight_decay": 0.01},
}
CLASSES = [pytest.param(cls, id=cls.__name__) for cls in ENTRIES]
#: the group-level state the package keeps in its param groups
GROUP_STATE = ("k", "train_mode", "weight_sum", "lr_max", "scheduled_lr")
EPS = torch.finfo(torch.float64).eps


@pytest.fixture(autouse=True)
def float64_default():
    with default_dtype(torch.float64):
        yield


def move_error(before: torch.Tensor, ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The difference of two moves from ``before``, relative to the package's move, less 4ε of
    the parameter (step_errors' measure)."""
    excess = ((ours - theirs).abs() - 4 * EPS * theirs.abs()).clamp(min=0).max().item()
    return excess / (theirs - before).abs().max().item()


def _momentum(optimizer) -> float:
    group = optimizer.param_groups[0]
    return group["momentum"] if "momentum" in group else group["betas"][0]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cls", CLASSES)
def test_eval_and_train_move_the_parameters_as_the_package(cls, engine):
    """After 30 updates equal to the package's, ``eval()`` puts the parameters at the
    package's x and ``train()`` back at its y; training then goes on equal to it. The state
    is the package's (z, and AdamW's exp_avg_sq), so is the group-level state."""
    info, hp = ENTRIES[cls], SETS[cls]
    ours, theirs = OptimlabRun(info, hp, engine=engine), PackageRun(info, hp)
    assert_steps_match(step_errors(ours, theirs, hp, steps=30), TOLERANCE, "before eval()")
    for mode in ("eval", "train"):
        before = flat(theirs.parameters())
        ours.load(theirs.parameters())
        getattr(ours.optimizer, mode)()
        getattr(theirs.optimizer, mode)()
        error = move_error(before, flat(ours.parameters()), flat(theirs.parameters()))
        assert error <= TOLERANCE, f"{mode}(): off by {error:.3g} of the package's move"
        assert not torch.equal(flat(theirs.parameters()), before), f"{mode}() did not move"
        for key in GROUP_STATE:
            assert ours.optimizer.param_groups[0][key] == theirs.optimizer.param_groups[0][key]
    assert_steps_match(step_errors(ours, theirs, hp, steps=10, start=30), TOLERANCE,
                       "after eval() and train()")
    for p, q in zip(ours.params, theirs.params, strict=True):
        assert set(ours.optimizer.state[p]) == set(theirs.optimizer.state[q])


@pytest.mark.parametrize("cls", CLASSES)
def test_eval_then_train_is_the_identity_up_to_rounding(cls):
    """x = y + (1 − 1/β)(z − y) and back y = x + (1 − β)(z − x): each lerp rounds a few
    times, an error of at most a few ε(|y| + |z − y|/β) per element (|1 − 1/β| ≤ 1/β,
    z − x = (z − y)/β); 8ε(|y| + |z − y|/β) bounds it. A second eval() or train() in the
    same mode changes nothing."""
    info, hp = ENTRIES[cls], SETS[cls]
    run = OptimlabRun(info, hp)
    for micro in updates(hp, 20):
        run.update(micro)
    opt = run.optimizer
    y = flat(run.params).clone()
    z = torch.cat([opt.state[p]["z"].flatten() for p in run.params])
    opt.eval()
    x = flat(run.params).clone()
    opt.eval()
    assert torch.equal(flat(run.params), x)
    assert (x - y).abs().max() > 1e-3 * (z - y).abs().max()  # eval() moved
    opt.train()
    opt.train()
    beta = _momentum(opt)
    bound = 8 * EPS * (y.abs() + (z - y).abs() / beta)
    assert ((flat(run.params) - y).abs() <= bound).all()


@pytest.mark.parametrize("cls", CLASSES)
def test_step_in_eval_mode_raises_as_the_package(cls):
    """The package raises (``Exception``) if step() is called in evaluation mode; optimlab a
    ``RuntimeError`` naming the fix, before anything changes."""
    info, hp = ENTRIES[cls], SETS[cls]
    ours, theirs = OptimlabRun(info, hp), PackageRun(info, hp)
    for run in (ours, theirs):
        run.update(updates(hp, 1)[0])
        run.optimizer.eval()
    with pytest.raises(Exception, match="train mode"):
        theirs.update(updates(hp, 2)[1])
    before = flat(ours.params).clone()
    state = {k: ours.optimizer.param_groups[0][k] for k in GROUP_STATE}
    with pytest.raises(RuntimeError, match=r"evaluation mode.*optimizer\.train\(\)"):
        ours.update(updates(hp, 2)[1])
    assert torch.equal(flat(ours.params), before)
    assert {k: ours.optimizer.param_groups[0][k] for k in GROUP_STATE} == state


@pytest.mark.parametrize("cls", CLASSES)
def test_new_optimizer_trains_and_modes_without_state_move_nothing(cls):
    """A new optimizer is in training mode (the package's first train() changes nothing);
    eval() and train() leave a parameter without state where it is, as the package."""
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
    opt = cls(params, lr=0.1)
    assert opt.param_groups[0]["train_mode"] is True
    before = flat(params).clone()
    opt.train()
    opt.eval()
    assert torch.equal(flat(params), before) and opt.param_groups[0]["train_mode"] is False
    opt.train()
    params[0].grad = torch.ones_like(params[0])  # only the first parameter gets state
    opt.step()
    opt.eval()
    assert torch.equal(flat(params[1:]), before[params[0].numel():])


@pytest.mark.parametrize("engine", ["reference", "eager", "compiled"])
@pytest.mark.parametrize("cls", CLASSES)
def test_resume_from_a_state_dict_saved_in_eval_mode(cls, engine):
    """As the package advises, save in evaluation mode (the model holds x) and call train()
    after loading: 15 + 15 updates through torch.save equal 30 in one go with the same
    eval()/train() between them, bit for bit, group-level state included."""
    info, hp = ENTRIES[cls], SETS[cls]
    data = updates(hp, 30)
    straight, first = OptimlabRun(info, hp, engine=engine), OptimlabRun(info, hp, engine=engine)
    for micro in data[:15]:
        straight.update(micro)
        first.update(micro)
    straight.optimizer.eval()
    straight.optimizer.train()
    first.optimizer.eval()
    buffer = io.BytesIO()
    torch.save({"params": first.parameters(), "opt": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    group = saved["opt"]["param_groups"][0]
    assert group["train_mode"] is False and group["k"] == 15
    resumed = OptimlabRun(info, hp, engine=engine)
    resumed.load(saved["params"])
    resumed.optimizer.load_state_dict(saved["opt"])
    resumed.optimizer.train()
    for micro in data[15:]:
        straight.update(micro)
        resumed.update(micro)
    assert torch.equal(flat(resumed.params), flat(straight.params))
    for key in GROUP_STATE:
        assert resumed.optimizer.param_groups[0][key] == straight.optimizer.param_groups[0][key]
    for p, q in zip(resumed.params, straight.params, strict=True):
        for key, value in straight.optimizer.state[q].items():
            assert torch.equal(resumed.optimizer.state[p][key], value), key


class GroupsRun(Run):
    """The reference problem in two param groups, [w1, b1] and [w2, b2], built by
    ``make(params)``; the parameters in ``frozen`` get no gradient on odd updates (a branch
    unused on those steps), as torch.optim: skipped, their state untouched."""

    def __init__(self, make, frozen=(1,)):
        self.params = [torch.nn.Parameter(p) for p in initial_parameters()]
        self.optimizer = make(self.params)
        self.frozen, self.t = frozen, 0

    def update(self, micro):
        _emulated_gradients(self.params, micro, {})
        if self.t % 2:
            for i in self.frozen:
                self.params[i].grad = None
        self.t += 1
        self.optimizer.step()


@pytest.mark.parametrize("engine", ["reference", "eager"])
@pytest.mark.parametrize("cls", CLASSES)
def test_param_groups_and_parameters_without_gradient(cls, engine):
    """Two groups with their own lr and warmup, one parameter without a gradient every other
    update: each group counts its own k (a skipped parameter's bias correction follows the
    group's k, as the package), equal to the package update by update."""
    package = {oo.ScheduleFreeAdamW: schedulefree.AdamWScheduleFree,
               oo.ScheduleFreeSGD: schedulefree.SGDScheduleFree}[cls]
    groups = [{"lr": 0.05, "warmup_steps": 3}, {"lr": 0.02, "weight_decay": 0.01, "r": 1.0}]

    def split(params):
        return [{"params": params[:2], **groups[0]}, {"params": params[2:], **groups[1]}]

    def theirs(params):
        optimizer = package(split(params), foreach=False)
        optimizer.train()
        return optimizer

    ours = GroupsRun(lambda params: cls(split(params), engine=engine))
    reference = GroupsRun(theirs)
    assert_steps_match(step_errors(ours, reference, {}, steps=40), TOLERANCE, "two groups")
    for mine, their in zip(ours.optimizer.param_groups, reference.optimizer.param_groups,
                           strict=True):
        assert {k: mine[k] for k in GROUP_STATE} == {k: their[k] for k in GROUP_STATE}


@pytest.mark.parametrize("schedule", list(SCHEDULERS))
@pytest.mark.parametrize("cls", CLASSES)
def test_matches_the_package_under_lr_scheduler(cls, schedule):
    """A scheduler changes ``lr``; both read it at every step (warmup on top, lr_max and the
    averaging weights follow it)."""
    info, hp = ENTRIES[cls], SETS[cls]
    ours = OptimlabRun(info, hp, SCHEDULERS[schedule])
    theirs = PackageRun(info, hp, SCHEDULERS[schedule])
    assert_steps_match(step_errors(ours, theirs, hp), TOLERANCE, f"{cls.__name__}, {schedule}")
    for key in GROUP_STATE:
        assert ours.optimizer.param_groups[0][key] == theirs.optimizer.param_groups[0][key]


def test_adamw_with_l2_decay_is_the_package_on_the_decayed_gradient():
    """``decoupled_weight_decay=False``: λy added to the gradient before the normalization,
    which is the package (without decay) fed g + λy."""
    info, wd = ENTRIES[oo.ScheduleFreeAdamW], 0.05
    hp = {"lr": 0.01, "weight_decay": wd, "decoupled_weight_decay": False}

    class L2(PackageRun):
        def update(self, micro):
            _emulated_gradients(self.params, micro, self.hp)
            for p in self.params:
                p.grad = p.grad + wd * p.detach()
            self.optimizer.step()

    ours, theirs = OptimlabRun(info, hp), L2(info, {"lr": 0.01})
    assert_steps_match(step_errors(ours, theirs, hp), TOLERANCE, "L2 at y")
    decoupled = PackageRun(info, {"lr": 0.01, "weight_decay": wd})
    errors = step_errors(OptimlabRun(info, hp), decoupled, hp, steps=5)
    assert max(errors) > 1e-3  # the two decays differ: the test above can tell them apart
