"""Drop-in situations for every optimizer of the registry, by what torch's semantics imply.

``test_dropin.py`` plays real training code's situations against torch.optim's class of the
same name; most of today's optimizers (Lion, Muon's combined form, Schedule-Free, Prodigy,
SOAP, ...) have no torch.optim class, and their reference packages have their own step counting
and state names. Here every registered optimizer goes through the same situations, checked by
what torch's semantics say must happen, which needs no second implementation:

* a parameter without a gradient (an unused head, a frozen layer) is left exactly as it was,
  its state too; a layer built frozen trains once unfrozen;
* after ``model.double()`` the next step equals the reference engine's from the same state
  (the engines see the conversion; nothing of the old storage is reused);
* a state reset makes every parameter start again (its step count from 1);
* ``deepcopy``/``pickle`` of model and optimizer, and a checkpoint loaded with
  ``weights_only=True`` into a new process's objects (a killed run resumed), continue
  bit-identically to the uninterrupted run;
* safetensors saves the model after steps; LazyModules train; a misspelt keyword is a
  TypeError naming it.

The engines: ``reference``, ``eager`` and the opt-in ``flat`` for every optimizer (tiny models,
where ``auto`` is eager), ``compiled`` for a subset (a compilation costs seconds).
L-BFGS needs a closure and one param group; ``test_lbfgs.py`` covers it.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import safetensors.torch
import torch
from torch import nn

import optimlab.optim as oo

from .test_dropin import SCHEDULE, TwoHeads, data, heads_loss

NAMES = [name for name in oo.names() if name != "lbfgs"]
ENGINES = ("reference", "eager", "flat")
#: one elementwise chain with a sign (Lion) and the matrix one with its AdamW groups (Muon)
COMPILED = ("lion", "muon")


def cases(engines=ENGINES):
    out = [pytest.param(name, engine, id=f"{engine}-{name}")
           for engine in engines for name in NAMES]
    out += [pytest.param(name, "compiled", id=f"compiled-{name}") for name in COMPILED]
    return out


def build(name: str, model: nn.Module, engine: str, **kwargs) -> oo.Optimizer:
    """The registry's optimizer over the model, in training mode (Schedule-Free); Muon in its
    combined form (hidden matrices by Muon, the rest by AdamW), as a model is trained with it."""
    params = oo.muon_param_groups(model) if name == "muon" else model.parameters()
    opt = oo.get(name, params, engine=engine, **kwargs)
    if callable(getattr(opt, "train", None)):
        opt.train()
    return opt


def step(model: nn.Module, opt: oo.Optimizer, i: int, heads: str | None = None) -> None:
    opt.zero_grad()
    heads_loss(heads)(model, i).backward()
    opt.step()


def snapshot(model: nn.Module, opt: oo.Optimizer) -> dict[str, list]:
    """Every parameter's value and state entries, cloned."""
    out = {}
    for name, p in model.named_parameters():
        state = opt.state.get(p) or {}
        out[name] = [p.detach().clone()] + [
            (k, v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v))
            for k, v in sorted(state.items())]
    return out


def same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


def assert_equal_models(a: nn.Module, b: nn.Module, where: str) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), f"{where}: {name} differs from the uninterrupted run"


# ------------------------------------------------------------------ parameters without gradient
@pytest.mark.parametrize("name, engine", cases())
def test_unused_head_is_left_alone(name, engine):
    """Heads used irregularly (:data:`SCHEDULE`): on every step, a parameter whose ``.grad`` is
    None keeps its value and state exactly; the used ones move."""
    torch.manual_seed(0)
    model = TwoHeads()
    opt = build(name, model, engine)
    moved = 0
    for i, heads in enumerate(SCHEDULE):
        opt.zero_grad()
        heads_loss(heads)(model, i).backward()
        idle = {n for n, p in model.named_parameters() if p.grad is None}
        before = snapshot(model, opt)
        opt.step()
        after = snapshot(model, opt)
        for n in idle:
            assert same(before[n], after[n]), (
                f"{name}, engine={engine!r}, step {i + 1}: {n} has no gradient but its value "
                f"or state changed")
        moved += sum(not torch.equal(before[n][0], after[n][0]) for n in after if n not in idle)
    assert moved > 0, f"{name}: no parameter ever moved"


@pytest.mark.parametrize("name, engine", cases())
def test_frozen_layer_stops_and_a_layer_built_frozen_trains_once_unfrozen(name, engine):
    """Fine-tuning: a layer frozen mid-run (``requires_grad_(False)``, default ``zero_grad``)
    stops moving, its state as it was; a layer frozen when the optimizer was built trains once
    unfrozen (it moves and gets state)."""
    torch.manual_seed(0)
    model = TwoHeads()
    model.a.requires_grad_(False)
    opt = build(name, model, engine)
    for i in range(3):
        step(model, opt, i, "ab")
    frozen = snapshot(model, opt)
    assert all(not opt.state.get(p) for p in model.a.parameters())
    model.a.requires_grad_(True)
    model.trunk.requires_grad_(False)
    for i in range(3, 6):
        step(model, opt, i, "ab")
    now = snapshot(model, opt)
    for n in ("trunk.weight", "trunk.bias"):
        assert same(frozen[n], now[n]), f"{name}, engine={engine!r}: frozen {n} changed"
    keeps_state = bool(opt.state.get(model.trunk.weight))  # SGD without momentum keeps none
    for n, p in model.a.named_parameters():
        assert not torch.equal(frozen[f"a.{n}"][0], p), (
            f"{name}, engine={engine!r}: a.{n}, built frozen, did not train once unfrozen")
        assert bool(opt.state.get(p)) == keeps_state, (
            f"{name}, engine={engine!r}: a.{n} has no state once unfrozen")


# ---------------------------------------------------------------------------------- conversions
def _twin(name: str, model: nn.Module, opt: oo.Optimizer):
    """A copy of model and optimizer whose optimizer runs on the reference engine, from the
    same values and state, in the same dtypes (``load_state_dict`` casts the state to the
    parameters' dtype, as torch's does; the original's state kept its own)."""
    twin = copy.deepcopy(model)
    twin_opt = build(name, twin, "reference")
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # a live one shares "step"
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        for key, value in (opt.state.get(p) or {}).items():
            if torch.is_tensor(value):
                twin_opt.state[q][key] = twin_opt.state[q][key].to(value.dtype)
    return twin, twin_opt


@pytest.mark.parametrize("name, engine", cases())
def test_double_mid_run_steps_like_the_reference_engine(name, engine):
    """``model.double()`` after some float32 steps replaces every parameter's storage (torch
    keeps the state's dtype); the next steps equal the reference engine's from the same values
    and state (float64, 1e-10 relative), and the parameters stay float64; or, where the
    reference engine refuses float32 state beside float64 gradients (the Adam family, as
    torch's), ours raises the same exception type."""
    torch.manual_seed(0)
    model = TwoHeads()
    opt = build(name, model, engine)
    for i in range(3):
        step(model, opt, i, "ab")
    model.double()
    twin, twin_opt = _twin(name, model, opt)
    before = [p.detach().clone() for p in model.parameters()]
    for i in range(3, 5):
        try:
            step(twin, twin_opt, i, "ab")
        except Exception as error:  # noqa: BLE001 - ours must raise the same
            with pytest.raises(type(error)):
                step(model, opt, i, "ab")
            return
        step(model, opt, i, "ab")
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    for (n, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        error = ((p - q).abs().max() / q.abs().max().clamp_min(1e-300)).item()
        assert error <= 1e-10, (f"{name}, engine={engine!r}: after .double(), {n} differs from "
                                f"the reference engine's step by rel {error:.3g}")


@pytest.mark.parametrize("name, engine", cases())
def test_state_reset_starts_every_parameter_again(name, engine):
    """``opt.state.clear()`` (or a new ``defaultdict``) resets the optimizer: the next step
    creates every parameter's state again, counting from 1, and ``state_dict()`` shows it."""
    torch.manual_seed(0)
    model = TwoHeads()
    opt = build(name, model, engine)
    for i in range(3):
        step(model, opt, i, "ab")
    kept = [bool(opt.state.get(p)) for p in model.parameters()]  # SGD without momentum: none
    opt.state.clear()
    assert not opt.state_dict()["state"]
    step(model, opt, 3, "ab")
    states = [opt.state.get(p) or {} for p in model.parameters()]
    counted = [s["step"] for s in states if torch.is_tensor(s.get("step"))]
    assert [bool(s) for s in states] == kept, (
        f"{name}, engine={engine!r}: after the reset and a step, the parameters with state are "
        f"{[bool(s) for s in states]}, before it {kept}")
    assert all(c.item() == 1 for c in counted), (
        f"{name}, engine={engine!r}: after a reset, step counts {[c.item() for c in counted]}, "
        f"not 1")
    assert sum(map(bool, opt.state_dict()["state"].values())) == sum(kept)


# ----------------------------------------------------------------------- copies and checkpoints
CLONES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda pair: pickle.loads(pickle.dumps(pair)),
}


@pytest.mark.parametrize("clone", list(CLONES))
@pytest.mark.parametrize("name, engine", cases())
def test_copied_model_and_optimizer_continue_identically(name, engine, clone):
    """A copy of (model, optimizer) taken mid-run, by ``deepcopy`` or ``pickle``, continues
    bit-identically to the original, and the original is unaffected by the copy."""
    torch.manual_seed(0)
    model = TwoHeads()
    opt = build(name, model, engine)
    for i in range(3):
        step(model, opt, i)
    other, other_opt = CLONES[clone]((model, opt))
    for i in range(3, 7):
        step(model, opt, i)
        step(other, other_opt, i)
    assert_equal_models(other, model, f"{name}, engine={engine!r}, {clone}")


@pytest.mark.parametrize("name, engine", cases())
def test_killed_run_resumes_from_a_checkpoint(name, engine):
    """A run killed after a checkpoint (``torch.save`` of both state dicts) resumes in new
    objects, loaded with ``weights_only=True``, and continues bit-identically to the run that
    was not interrupted."""
    torch.manual_seed(0)
    model = TwoHeads()
    opt = build(name, model, engine)
    for i in range(3):
        step(model, opt, i)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)
    resumed = TwoHeads()
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt = build(name, resumed, engine)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    for i in range(3, 7):
        step(model, opt, i)
        step(resumed, resumed_opt, i)
    assert_equal_models(resumed, model, f"{name}, engine={engine!r}, resumed")


# ------------------------------------------------------------------------- saving, lazy, typos
@pytest.mark.parametrize("name, engine", cases(engines=("reference", "eager")))
def test_safetensors_saves_the_model_after_steps(name, engine, tmp_path):
    """``safetensors.torch.save_model`` after steps writes the model (every parameter its own
    storage) and ``load_model`` reads the same weights. The flat engines share one storage
    (see ``test_dropin.py``)."""
    torch.manual_seed(0)
    model = TwoHeads()
    opt = build(name, model, engine)
    for i in range(2):
        step(model, opt, i)
    safetensors.torch.save_model(model, tmp_path / "model.safetensors")
    fresh = TwoHeads()
    safetensors.torch.load_model(fresh, tmp_path / "model.safetensors")
    assert_equal_models(fresh, model, f"{name}, engine={engine!r}, safetensors")


@pytest.mark.parametrize("name, engine", cases())
def test_lazy_module_trains(name, engine):
    """An optimizer built over ``nn.LazyLinear``'s uninitialised parameters (before the first
    forward) trains them once they are materialised; or, where torch.optim's class of the same
    name refuses them (its Adagrad creates its state in the constructor), ours raises the same
    exception type. Muon's combined form sorts parameters into groups by their shapes, so
    there the model runs one forward first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(8), nn.Tanh(), nn.Linear(8, 2))
    if name == "muon":
        model(data(0, (5, 4)).float())
    entry = oo.REGISTRY[name]
    theirs = None if name == "muon" else getattr(  # Muon: the combined form is not torch's
        torch.optim, getattr(entry, "func", entry).__name__, None)
    try:
        if theirs is not None:
            theirs(copy.deepcopy(model).parameters())
    except Exception as error:  # noqa: BLE001 - ours must raise the same
        with pytest.raises(type(error)):
            build(name, model, engine)
        return
    opt = build(name, model, engine)
    first = None
    for i in range(3):
        opt.zero_grad()
        ((model(data(i, (5, 4)).float()) - 0.5) ** 2).mean().backward()
        if first is None:
            first = model[0].weight.detach().clone()
        opt.step()
    assert not torch.equal(model[0].weight, first), f"{name}: the lazy layer did not train"


@pytest.mark.parametrize("name", NAMES)
def test_misspelt_keyword_is_a_type_error_naming_it(name):
    """``oo.get(name, params, lrr=0.1)`` raises TypeError naming ``lrr`` and suggesting
    ``lr``, as torch's constructors refuse an unknown keyword."""
    with pytest.raises(TypeError, match=r"lrr.*\blr\b"):
        oo.get(name, [nn.Parameter(torch.randn(3, 3))], lrr=0.1)
