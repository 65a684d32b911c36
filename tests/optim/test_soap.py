"""SOAP (src/optimlab/optim/soap.py) against pytorch_optimizer.SOAP on shapes the database's
test problem lacks: a 3-D and a 4-D tensor, a 1-D one, one larger than max_precondition_dim on
one side, and two of one shape (a stack of two in the packed engines), over 150 updates with the
bases refreshed every 2 or 3; compared update by update as references.step_errors does."""

from __future__ import annotations

import pytest
import torch

import optimlab.optim as oo

from .database import default_dtype

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

SHAPES = [(3, 4, 5), (2, 3, 4, 3), (7,), (12, 3), (5, 6), (5, 6)]
STEPS = 150
TOLERANCE = 1e-10


def _values():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]


def _gradients(values, t: int):
    """The gradient of Σ‖tanh(p) − T_t‖² at the given values, T_t fixed by the step."""
    gen = torch.Generator().manual_seed(100 + t)
    grads = []
    for v in values:
        target = torch.randn(v.shape, generator=gen, dtype=torch.float64)
        grads.append(2 * (torch.tanh(v) - target) * (1 - torch.tanh(v) ** 2))
    return grads


def step_errors(hp: dict, engine: str, data_format: str = "channels_first") -> list[float]:
    reference_params = [torch.nn.Parameter(v.clone()) for v in _values()]
    our_params = [torch.nn.Parameter(v.clone()) for v in _values()]
    reference = pytorch_optimizer.SOAP(reference_params, data_format=data_format, **hp)
    ours = oo.SOAP(our_params, engine=engine, data_format=data_format, **hp)
    eps = torch.finfo(torch.float64).eps
    errors = []
    for t in range(STEPS):
        before = [p.detach().clone() for p in reference_params]
        with torch.no_grad():
            for p, v in zip(our_params, before, strict=True):
                p.copy_(v)
        grads = _gradients(before, t)
        for p, q, g in zip(reference_params, our_params, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        ours.step()
        expected = torch.cat([p.detach().flatten() for p in reference_params])
        actual = torch.cat([p.detach().flatten() for p in our_params])
        step = (expected - torch.cat([v.flatten() for v in before])).abs().max().item()
        excess = ((actual - expected).abs() - 4 * eps * expected.abs()).clamp(min=0).max()
        errors.append(0.0 if excess.item() == 0 else excess.item() / step)
    return errors


SETS = [
    ("refresh_3", {"lr": 0.01, "precondition_frequency": 3}),
    ("refresh_2+precondition_1d+max_dim",
     {"lr": 0.01, "precondition_frequency": 2, "precondition_1d": True,
      "max_precondition_dim": 8}),
    ("merge_dims", {"lr": 0.01, "precondition_frequency": 3, "merge_dims": True,
                    "max_precondition_dim": 6}),  # a 1-D tensor of ≤ 6 elements fails there
    ("normalize+no_bias+decay", {"lr": 0.01, "precondition_frequency": 2,
                                 "normalize_gradient": True, "correct_bias": False,
                                 "weight_decay": 0.1, "shampoo_beta": 0.8}),
]


@pytest.fixture(autouse=True)
def float64_default():
    with default_dtype(torch.float64):
        yield


@pytest.mark.parametrize("engine", ["reference", "eager", "flat"])
@pytest.mark.parametrize("hp", [hp for _, hp in SETS], ids=[name for name, _ in SETS])
def test_matches_pytorch_optimizer_on_every_shape(hp, engine):
    errors = step_errors(hp, engine)
    assert max(errors) <= TOLERANCE, (max(errors), errors.index(max(errors)))


def test_channels_last_merges_the_permuted_tensor():
    hp = {"lr": 0.01, "precondition_frequency": 3, "merge_dims": True,
          "max_precondition_dim": 6}
    errors = step_errors(hp, "eager", data_format="channels_last")
    assert max(errors) <= TOLERANCE, max(errors)


def test_first_step_only_initializes_and_state_is_per_dimension():
    p = torch.nn.Parameter(torch.randn(5, 6, dtype=torch.float64))
    opt = oo.SOAP([p], lr=0.1, weight_decay=0.5, max_precondition_dim=5)
    p.grad = torch.randn(5, 6, dtype=torch.float64)
    before = p.detach().clone()
    opt.step()
    assert torch.equal(p.detach(), before)
    state = opt.state[p]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "GG.0", "Q.0"}  # 6 > 5: identity
    q = state["Q.0"]
    assert torch.allclose(q.T @ q, torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert not state["exp_avg"].any() and not state["exp_avg_sq"].any()
    opt.step()
    assert not torch.equal(p.detach(), before)


def test_registry_and_bad_data_format():
    p = torch.nn.Parameter(torch.zeros(3, 3))
    assert isinstance(oo.get("soap", [p]), oo.SOAP)
    with pytest.raises(ValueError, match="data_format"):
        oo.SOAP([p], data_format="NHWC")


def test_rotated_buffers_must_be_the_inner_transforms():
    from optimlab.optim.soap import ShampooEigenbasis
    from optimlab.optim.transforms import Adapt, AverageGradient

    with pytest.raises(ValueError, match="rotated=.*'exp_avg'.*not buffers"):
        ShampooEigenbasis(Adapt("ema", "betas.1"), rotated=("exp_avg",))
    basis = ShampooEigenbasis([AverageGradient("betas.0", bias_correction=False),
                               Adapt("ema", "betas.1")], rotated=("exp_avg",))
    assert basis.state[-4:] == ("exp_avg", "exp_avg_sq", "grad_avg", "max_exp_avg_sq")
