"""LBFGS against torch.optim.LBFGS: every step(closure) equal in float64, with and without the
strong-Wolfe line search; state dicts that load across the two libraries; torch's contracts.

Its step needs a closure, so the generic tests (which step without one) leave its database
entries out (``closure=True`` in tests/optim/database.py); this module runs their sets.
Comparisons go step by step as references.step_errors does: every ``step(closure)`` (up to
``max_iter`` iterations) starts both from the reference's parameters, each keeping its own
history, and the difference is measured relative to the reference's step.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch.optim.lbfgs import _strong_wolfe

import optimlab.optim as oo
from optimlab.optim.linesearch import strong_wolfe

from .database import DATABASE, default_dtype
from .references import Run, batches, flat, initial_parameters, loss_fn, step_errors

TOLERANCE = 1e-10
STEPS = 20
ENTRIES = [info for info in DATABASE if info.cls is oo.LBFGS]
CASES = [pytest.param(info, hp, id=info.case_id(i))
         for info in ENTRIES for i, (_, hp) in enumerate(info.sets)]


@pytest.fixture(autouse=True)
def float64_default():
    with default_dtype(torch.float64):
        yield


class ClosureRun(Run):
    """An optimizer stepped with a closure on one batch per update. With ``maximize``, ours
    ascends −loss and torch's (which has no such option) descends the loss: the same path."""

    def __init__(self, make, hp, complex: bool = False):
        self.hp = hp
        self.params = [torch.nn.Parameter(p) for p in initial_parameters(complex=complex)]
        self.optimizer = make(self.params)
        self.evaluations = 0

    def closure(self, batch):
        def closure():
            self.evaluations += 1
            self.optimizer.zero_grad()
            loss = loss_fn(self.params, batch)
            if self.hp.get("maximize") and isinstance(self.optimizer, oo.LBFGS):
                loss = -loss
            loss.backward()
            return loss
        return closure

    def update(self, micro):
        (batch,) = micro
        self.optimizer.step(self.closure(batch))


def ours(info, hp, complex=False, **options):
    return ClosureRun(lambda p: info.make(p, **hp, **options), hp, complex)


def theirs(hp, complex=False):
    kwargs = {k: v for k, v in hp.items() if k != "maximize"}
    return ClosureRun(lambda p: torch.optim.LBFGS(p, **kwargs), hp, complex)


def assert_steps_match(errors, what):
    bad = [t for t, e in enumerate(errors) if not e <= TOLERANCE]
    assert not bad, f"{what}: step {bad[0]} off by {errors[bad[0]]:.3g} of its step"


@pytest.mark.parametrize("info, hp", CASES)
def test_matches_torch_step_by_step(info, hp):
    reference = theirs(hp)
    mine = ours(info, hp)
    errors = step_errors(mine, reference, hp, steps=STEPS)
    assert_steps_match(errors, f"{info.id} {hp}")
    assert not torch.equal(flat(reference.parameters()), flat(initial_parameters()))
    # the closure was called as often (the line search's trials included), and counted alike
    assert mine.evaluations == reference.evaluations
    state, expected = (r.optimizer.state[r.params[0]] for r in (mine, reference))
    assert (state["func_evals"], state["n_iter"]) == (expected["func_evals"],
                                                      expected["n_iter"])


def _progress(info, hp, steps=8):
    """(evaluations, iterations, pairs kept) after each of ``steps`` updates."""
    run = ours(info, hp)
    out = []
    for micro in [[b] for b in batches(steps)]:
        run.update(micro)
        state = run.optimizer.state[run.params[0]]
        out.append((state["func_evals"], state["n_iter"], len(state["old_dirs"])))
    return out


def test_the_sets_exercise_the_history_the_line_search_and_the_stopping_rules():
    """A test that cannot fail is a defect: over the steps the sets run, the history fills and
    shifts (history_size 100 and 3), the line search takes extra trials, and steps stop early
    (on max_eval, and on the progress tests), so every branch is compared with torch."""
    info = ENTRIES[0]
    sets = dict(info.sets)
    plain = _progress(info, sets["plain"])
    assert plain[-1][2] == 100 and plain[-1][1] > 100  # full, then shifted
    short = _progress(info, sets["history_size+max_iter+lr"])
    assert short[-1] == (8 * 7, 8 * 7, 3)
    wolfe = _progress(info, sets["strong_wolfe"])
    evaluations, iterations, _ = wolfe[-1]
    assert evaluations > iterations + 8  # some trials were rejected
    assert iterations < 8 * 20  # some steps stopped before max_iter
    capped = _progress(info, sets["strong_wolfe+max_eval+tolerances"])
    per_step = [(b[0] - a[0], b[1] - a[1]) for a, b in zip([(0, 0, 0), *capped[:-1]], capped,
                                                                strict=True)]
    assert any(e == 12 and i < 10 for e, i in per_step)  # stopped by max_eval


def test_complex_parameters_match_torch():
    info = ENTRIES[0]
    for hp in ({}, {"line_search_fn": "strong_wolfe"}):
        mine, reference = ours(info, hp, complex=True), theirs(hp, complex=True)
        errors = step_errors(mine, reference, hp, steps=10)
        assert mine.params[0].is_complex()
        assert_steps_match(errors, f"complex {hp}")


def test_strong_wolfe_is_torchs_line_search():
    """The line search alone, on a function with many trials (a steep valley along a long
    direction), equals torch's _strong_wolfe: the same step, loss, gradient and evaluations."""
    center = torch.linspace(-2.0, 3.0, 6)

    def f(x):
        return float(((x - center) ** 4).sum() + 10 * torch.sin(3 * x).sum())

    def grad(x):
        return 4 * (x - center) ** 3 + 30 * torch.cos(3 * x)

    def evaluate(x, t, d):
        point = x[0] + t * d
        return f(point), grad(point)

    x = torch.zeros(6)
    g = grad(x)
    for scale, t in ((1.0, 1.0), (0.01, 1.0), (1.0, 1e-3), (5.0, 2.0)):
        d = -scale * g
        args = ([x], t, d, f(x), g, g.dot(d))
        expected = _strong_wolfe(evaluate, *args)
        actual = strong_wolfe(evaluate, *args)
        assert float(actual[2]) == float(expected[2]) and actual[3] == expected[3]
        assert actual[0] == expected[0] and torch.equal(actual[1], expected[1])
    assert expected[3] > 2  # the last case brackets and zooms


def test_state_dict_is_torchs_and_loads_both_ways():
    """After the same steps the state holds torch's keys and values; ours continues in
    torch.optim.LBFGS and torch's in ours, step for step."""
    info, hp = ENTRIES[0], {"line_search_fn": "strong_wolfe", "history_size": 4}
    mine, reference = ours(info, hp), theirs(hp)
    step_errors(mine, reference, hp, steps=6)
    state, expected = (r.optimizer.state_dict()["state"][0] for r in (mine, reference))
    assert set(state) == set(expected)
    for key, value in expected.items():
        if isinstance(value, list):
            assert len(state[key]) == len(value), key
        elif torch.is_tensor(value):
            assert state[key].shape == value.shape and state[key].dtype == value.dtype, key
        else:
            assert type(state[key]) is type(value), key

    # ours → torch: a torch.optim.LBFGS built with its defaults takes the saved hyper-parameters
    continued = theirs(hp)
    continued.load(mine.parameters())
    continued.optimizer = torch.optim.LBFGS(continued.params)
    continued.optimizer.load_state_dict(copy.deepcopy(mine.optimizer.state_dict()))
    assert_steps_match(step_errors(mine, continued, hp, steps=5, start=6), "ours → torch")

    # torch → ours
    adopted = ours(info, {})
    adopted.load(reference.parameters())
    adopted.optimizer.load_state_dict(copy.deepcopy(reference.optimizer.state_dict()))
    assert adopted.optimizer.param_groups[0]["history_size"] == 4
    assert_steps_match(step_errors(adopted, reference, hp, steps=5, start=6), "torch → ours")


def test_state_dict_resume_is_bit_exact():
    info, hp = ENTRIES[0], {"line_search_fn": "strong_wolfe"}
    data = [[b] for b in batches(10)]
    straight = ours(info, hp)
    for micro in data:
        straight.update(micro)
    first = ours(info, hp)
    for micro in data[:5]:
        first.update(micro)
    buffer = io.BytesIO()
    torch.save({"params": first.parameters(), "opt": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = ours(info, hp)
    resumed.load(saved["params"])
    resumed.optimizer.load_state_dict(saved["opt"])
    for micro in data[5:]:
        resumed.update(micro)
    assert torch.equal(flat(resumed.parameters()), flat(straight.parameters()))


def test_step_without_closure_raises_like_torch():
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
    with pytest.raises(TypeError):
        torch.optim.LBFGS(params).step()
    with pytest.raises(TypeError, match="closure"):
        oo.LBFGS(params).step()


def test_parameters_and_gradients_stay_the_users():
    """Updated in place: the same tensors, storage, dtype and strides; the gradients the
    closure's backward made are not replaced (a parameter without a gradient is a zero one)."""
    with torch.random.fork_rng():  # seeded, leaving the global generator as it was
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),
                                    torch.nn.Linear(5, 1))
    unused = torch.nn.Parameter(torch.ones(3))
    params = [*model.parameters(), unused]
    before = [(p.data_ptr(), p.dtype, p.stride()) for p in params]
    start = [p.detach().clone() for p in params]
    opt = oo.LBFGS(params, line_search_fn="strong_wolfe")
    x, y = batches(1)[0]
    grads = {}

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        grads.update({id(p): p.grad for p in params})
        return loss

    for _ in range(3):
        opt.step(closure)
    assert [(p.data_ptr(), p.dtype, p.stride()) for p in params] == before
    assert all(p.grad is grads[id(p)] for p in params)
    assert unused.grad is None and torch.equal(unused.detach(), start[-1])
    assert not torch.equal(params[0].detach(), start[0])


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nonfinite_leaves_parameters_and_state_as_they_were(policy):
    """A NaN gradient at the third evaluation of a step (inside its iterations): the parameters
    go back to where the step started and the state is left as it was."""
    info, hp = ENTRIES[0], {"line_search_fn": "strong_wolfe"}
    run = ours(info, hp, nonfinite=policy)
    run.update([batches(1)[0]])
    opt, params = run.optimizer, run.params
    before = flat(params).clone()
    saved = copy.deepcopy(opt.state_dict())
    calls = []
    x, y = batches(2)[1]

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = loss_fn(params, (x, y))
        loss.backward()
        if len(calls) == 3:
            params[2].grad[0, 0] = math.nan
        return loss

    if policy == "raise":
        with pytest.raises(FloatingPointError, match="non-finite"):
            opt.step(closure)
    else:
        loss = opt.step(closure)
        assert opt.skipped_steps == 1 and math.isfinite(loss.item())
    assert len(calls) == 3
    assert torch.equal(flat(params), before)
    after = opt.state_dict()
    assert after["state"][0].keys() == saved["state"][0].keys()
    for key, value in saved["state"][0].items():
        if torch.is_tensor(value):
            assert torch.equal(after["state"][0][key], value), key
        elif isinstance(value, list):
            assert all(a is b is None or torch.equal(a, b)  # torch's "al" starts as Nones
                       for a, b in zip(after["state"][0][key], value, strict=True)), key
        else:
            assert after["state"][0][key] == value, key


def test_one_param_group_only_as_torch():
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
    with pytest.raises(ValueError, match="parameter groups"):
        torch.optim.LBFGS([{"params": params[:2]}, {"params": params[2:]}])
    with pytest.raises(ValueError, match="parameter groups"):
        oo.LBFGS([{"params": params[:2]}, {"params": params[2:]}])
    opt = oo.LBFGS(params[:2])
    with pytest.raises(ValueError, match="parameter groups"):
        opt.add_param_group({"params": params[2:]})
    assert len(opt.param_groups) == 1


def test_defaults_are_torchs():
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
    expected = torch.optim.LBFGS(params).defaults
    for flavor in oo.FLAVORS:
        defaults = oo.LBFGS(params, flavor=flavor).defaults
        assert {k: defaults[k] for k in expected} == expected
    assert oo.LBFGS(params, max_iter=8).defaults["max_eval"] == 10  # max_iter * 5 // 4
