"""Muon: the Newton–Schulz iteration against torch's, and the combined form (Muon for the hidden
matrices, AdamW for the rest, in one optimizer) against torch.optim.Muon + torch.optim.AdamW."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.optim._muon import _zeropower_via_newtonschulz

import optimlab.optim as oo
from optimlab.optim.transforms import newton_schulz

from .database import default_dtype

COEFFICIENTS = (3.4445, -4.7750, 2.0315)
SHAPES = [(6, 4), (4, 6), (1, 6), (1, 1), (32, 64), (96, 48), (128, 128), (130, 150)]


@pytest.fixture(autouse=True)
def float64_default():
    with default_dtype(torch.float64):
        yield


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_newton_schulz_is_torchs_bit_for_bit(shape):
    """Per matrix (the default), a stack of 3 gives torch's iteration's bfloat16 bits for each."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        stack = torch.randn(3, *shape, generator=gen)
        ours = newton_schulz(stack, COEFFICIENTS, 5, 1e-7, torch.bfloat16)
        assert ours.dtype == torch.bfloat16
        for matrix, out in zip(stack, ours, strict=True):
            assert torch.equal(out, _zeropower_via_newtonschulz(matrix, COEFFICIENTS, 5, 1e-7))


def test_newton_schulz_batched_is_within_bfloat16_rounding():
    """One batched iteration over the stack: torch's up to bfloat16 roundings of the
    accumulation (baddbmm and addmm sum in different orders); the singular values ≈ 1."""
    gen = torch.Generator().manual_seed(1)
    stack = torch.randn(8, 32, 64, generator=gen)
    batched = newton_schulz(stack, COEFFICIENTS, 5, 1e-7, torch.bfloat16, batched=True)
    exact = newton_schulz(stack, COEFFICIENTS, 5, 1e-7, torch.bfloat16)
    assert (batched.float() - exact.float()).abs().max() <= 2**-6
    singular = torch.linalg.svdvals(batched.double())
    assert singular.min() > 0.5 and singular.max() < 1.5


def test_newton_schulz_leaves_its_input_alone():
    x = torch.randn(2, 4, 6, dtype=torch.bfloat16)
    before = x.clone()
    newton_schulz(x, COEFFICIENTS, 5, 1e-7, torch.bfloat16)
    newton_schulz(x.double(), COEFFICIENTS, 5, 1e-7, None, "add", batched=True)
    assert torch.equal(x, before)


# -------------------------------------------------------------- Muon + AdamW, one optimizer
class Tiny(nn.Module):
    """Embedding, hidden Linear layers with biases, LayerNorm, and an output head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(12, 8)
        self.hidden = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, 12)

    def forward(self, tokens):
        h = torch.relu(self.norm(self.hidden(self.embed(tokens))))
        return self.head(torch.tanh(self.mix(h)))


def _model() -> Tiny:
    torch.manual_seed(0)
    return Tiny().double()


def _batch(step: int):
    gen = torch.Generator().manual_seed(100 + step)
    tokens = torch.randint(0, 12, (32,), generator=gen)
    return tokens, (5 * tokens + 3) % 12  # a permutation of the tokens to learn


def _loss(model, step):
    tokens, targets = _batch(step)
    return nn.functional.cross_entropy(model(tokens), targets)


MUON = {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.05, "adjust_lr_fn": "match_rms_adamw"}
ADAMW = {"lr": 3e-3, "betas": (0.9, 0.98), "eps": 1e-8, "weight_decay": 0.01}


def test_param_groups_split_hidden_matrices_from_the_rest():
    model = _model()
    hidden, rest = oo.muon_param_groups(model, adamw=ADAMW)
    assert [id(p) for p in hidden["params"]] == [id(model.hidden.weight), id(model.mix.weight)]
    assert rest["algorithm"] == "adamw" and rest["lr"] == ADAMW["lr"]
    assert {id(p) for p in rest["params"]} == {
        id(p) for p in model.parameters()} - {id(p) for p in hidden["params"]}
    _, rest = oo.muon_param_groups(model, head=None, exclude=[r"^mix\."])
    assert id(model.head.weight) not in {id(p) for p in rest["params"]}
    assert id(model.mix.weight) in {id(p) for p in rest["params"]}
    with pytest.raises(ValueError, match="head='lm_head'"):
        oo.muon_param_groups(model, head="lm_head")


def test_param_groups_of_a_lazy_model_after_its_dry_run():
    """Uninitialized parameters have no shape to decide their group by: refused, naming them
    and the fix; after a dry run the same model is grouped."""
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(8), nn.ReLU(),
                          nn.LazyLinear(3))
    with pytest.raises(ValueError, match=r"0\.weight, 0\.bias, .*dry run"):
        oo.muon_param_groups(model)
    model(torch.randn(2, 5))
    hidden, rest = oo.muon_param_groups(model)
    assert [id(p) for p in hidden["params"]] == [id(model[0].weight), id(model[2].weight)]
    assert len(rest["params"]) == 4  # three biases and the head's weight


def test_muon_with_adamw_equals_torch_muon_plus_adamw_step_by_step():
    """One optimlab Muon with an AdamW group: every update equals torch.optim.Muon on the
    hidden matrices plus torch.optim.AdamW on the rest, each update from torch's parameters."""
    ours, theirs = _model(), _model()
    opt = oo.Muon(oo.muon_param_groups(ours, adamw=ADAMW), **MUON)
    hidden, rest = oo.muon_param_groups(theirs)
    torch_muon = torch.optim.Muon(hidden["params"], **MUON)
    torch_adamw = torch.optim.AdamW(rest["params"], foreach=False, **ADAMW)
    worst = 0.0
    for step in range(30):
        ours.load_state_dict(theirs.state_dict())
        before = torch.cat([p.detach().flatten() for p in theirs.parameters()])
        for model, optimizers in ((ours, [opt]), (theirs, [torch_muon, torch_adamw])):
            for o in optimizers:
                o.zero_grad()
            _loss(model, step).backward()
            for o in optimizers:
                o.step()
        expected = torch.cat([p.detach().flatten() for p in theirs.parameters()])
        actual = torch.cat([p.detach().flatten() for p in ours.parameters()])
        worst = max(worst, ((actual - expected).abs().max()
                            / (expected - before).abs().max()).item())
    assert worst <= 1e-10, worst
    state = opt.state[ours.hidden.weight]
    assert set(state) == {"step", "momentum_buffer"}
    assert set(opt.state[ours.hidden.bias]) == {"step", "exp_avg", "exp_avg_sq"}


def _train(model, opt, steps, start=0):
    for step in range(start, start + steps):
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()


@pytest.mark.parametrize("engine", ["reference", "eager", "flat"])
def test_muon_with_adamw_state_dict_resume_is_bit_exact(engine):
    straight = _model()
    _train(straight, oo.Muon(oo.muon_param_groups(straight, adamw=ADAMW), engine=engine,
                             **MUON), 20)
    first = _model()
    opt = oo.Muon(oo.muon_param_groups(first, adamw=ADAMW), engine=engine, **MUON)
    _train(first, opt, 10)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = _model()
    resumed.load_state_dict(saved["model"])
    opt2 = oo.Muon(oo.muon_param_groups(resumed, adamw=ADAMW), engine=engine, **MUON)
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[1]["algorithm"] == "adamw"
    _train(resumed, opt2, 10, start=10)
    for a, b in zip(resumed.parameters(), straight.parameters(), strict=True):
        assert torch.equal(a, b)


def test_muon_with_adamw_engines_agree():
    results = {}
    for engine in ("reference", "eager", "flat"):
        model = _model()
        _train(model, oo.Muon(oo.muon_param_groups(model, adamw=ADAMW), engine=engine,
                              **MUON), 10)
        results[engine] = torch.cat([p.detach().flatten() for p in model.parameters()])
    for engine in ("eager", "flat"):
        assert (results[engine] - results["reference"]).abs().max() <= 1e-12


def test_small_model_trains():
    model = _model()
    opt = oo.Muon(oo.muon_param_groups(model, adamw={"lr": 1e-2}), lr=0.05)
    with torch.no_grad():
        before = sum(_loss(model, s).item() for s in range(4))
    for _ in range(15):
        for step in range(4):
            opt.zero_grad()
            _loss(model, step).backward()
            opt.step()
    with torch.no_grad():
        after = sum(_loss(model, s).item() for s in range(4))
    assert after < 0.1 * before


# ------------------------------------------------------------------------------- refusals
def test_non_matrix_parameter_is_refused_with_the_way_out():
    model = _model()
    with pytest.raises(ValueError, match=r"shape \(16,\).*'algorithm': 'adamw'.*muon_param"):
        oo.Muon(model.parameters())
    opt = oo.Muon([model.hidden.weight])
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        opt.add_param_group({"params": [model.hidden.bias]})
    opt.add_param_group({"params": [model.hidden.bias], "algorithm": "adamw"})
    assert opt.param_groups[1]["eps"] == 1e-8 and opt.param_groups[1]["weight_decay"] == 1e-2
    assert opt.param_groups[1]["lr"] == opt.defaults["lr"]
    with pytest.raises(ValueError, match="algorithm='sgd'"):
        opt.add_param_group({"params": [model.mix.bias], "algorithm": "sgd"})
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        opt.add_param_group({"params": [model.mix.bias], "algorithm": "adamw",
                             "betas": (0.9, 1.5)})


def test_keras_flavor_adamw_group_takes_keras_defaults():
    model = _model()
    opt = oo.Muon(oo.muon_param_groups(model), flavor="keras")
    assert opt.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    assert opt.param_groups[1]["eps"] == 1e-7 and opt.param_groups[1]["weight_decay"] == 0.004
    _train(model, opt, 3)


def test_muon_from_the_registry():
    model = _model()
    opt = oo.get("muon", copy.deepcopy(oo.muon_param_groups(model)))
    assert isinstance(opt, oo.Muon)
