"""Initializers: sample statistics match the formulas, torch.nn.init and Keras."""

from __future__ import annotations

import math
import os

import pytest
import torch

from optimlab import init

os.environ.setdefault("KERAS_BACKEND", "torch")

SHAPES = [(400, 300), (64, 32, 5, 5)]
SPECS = ["zeros", "ones", "constant:0.3", "normal:0.02", "uniform:0.1", "truncated_normal:0.5",
         "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
         "lecun_uniform", "orthogonal", "orthogonal:2.0"]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("spec", SPECS)
def test_sample_mean_and_std_match_the_formula(spec, shape):
    """With n samples, the sample mean is within 6σ/√n of μ and the sample std within
    6σ·√(2/n) of σ (the std error of a sample std is ≤ σ/√(2n)·√2 for the normal, truncated
    normal and uniform distributions, whose kurtosis is ≤ 3): a six-sigma bound."""
    initializer = init.get(spec, seed=1)
    w = initializer(torch.empty(shape, dtype=torch.float64))
    n = w.numel()
    sigma = initializer.expected_std(shape)
    assert abs(w.mean().item() - initializer.expected_mean(shape)) <= 6 * sigma / math.sqrt(n) \
        + 1e-12
    assert abs(w.std().item() - sigma) <= 6 * sigma * math.sqrt(2 / n) + 1e-12


@pytest.mark.parametrize("ours, theirs, kwargs", [
    ("he_normal", torch.nn.init.kaiming_normal_, {"nonlinearity": "relu"}),
    ("he_uniform", torch.nn.init.kaiming_uniform_, {"nonlinearity": "relu"}),
    ("glorot_normal", torch.nn.init.xavier_normal_, {}),
    ("glorot_uniform", torch.nn.init.xavier_uniform_, {}),
])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_same_std_as_torch_nn_init(ours, theirs, kwargs, shape):
    torch.manual_seed(0)
    reference = theirs(torch.empty(shape, dtype=torch.float64), **kwargs)
    w = init.get(ours, seed=0)(torch.empty(shape, dtype=torch.float64))
    n = w.numel()
    assert abs(w.std().item() - reference.std().item()) <= 12 * w.std().item() / math.sqrt(n)


@pytest.mark.parametrize("name", ["HeNormal", "HeUniform", "GlorotNormal", "GlorotUniform",
                                  "LecunNormal", "LecunUniform"])
def test_same_std_as_keras_with_the_axes_swapped(name):
    import keras

    fan_in, fan_out = 300, 200
    theirs = keras.ops.convert_to_numpy(getattr(keras.initializers, name)(seed=0)(
        shape=(fan_in, fan_out), dtype="float64"))  # Keras kernels are (in, out)
    ours = getattr(init, name)(seed=0)(torch.empty(fan_out, fan_in, dtype=torch.float64))
    n = ours.numel()
    assert abs(ours.std().item() - float(theirs.std())) <= 12 * ours.std().item() / math.sqrt(n)
    assert abs(float(abs(theirs).max()) - ours.abs().max().item()) <= 0.1 * float(abs(theirs).max())


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (16, 8, 3, 3)], ids=str)
def test_orthogonal_gives_gain_squared_identity(shape):
    w = init.Orthogonal(gain=1.5, seed=3)(torch.empty(shape, dtype=torch.float64))
    flat = w.reshape(shape[0], -1)
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    torch.testing.assert_close(gram, 1.5**2 * torch.eye(gram.shape[0], dtype=torch.float64))


def test_identity_and_fans_and_gains():
    w = init.Identity(gain=2.0)(torch.empty(3, 5))
    assert torch.equal(w, 2.0 * torch.eye(3, 5))
    with pytest.raises(ValueError, match="2-D"):
        init.Identity()(torch.empty(3, 3, 3))
    assert init.fans((64, 32, 5, 5)) == (32 * 25, 64 * 25)
    assert init.fans((10, 20)) == (20, 10)
    assert init.gain("tanh") == pytest.approx(torch.nn.init.calculate_gain("tanh"))
    assert init.gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2))
    assert init.gain("selu") == pytest.approx(torch.nn.init.calculate_gain("selu"))


def test_seeds_reproduce():
    a = init.HeNormal(seed=5)(torch.empty(100, 100))
    b = init.HeNormal(seed=5)(torch.empty(100, 100))
    c = init.HeNormal(seed=6)(torch.empty(100, 100))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_get_by_string_and_errors():
    assert isinstance(init.get("kaiming_normal"), init.HeNormal)
    normal = init.get("normal:0.01")
    assert isinstance(normal, init.RandomNormal) and normal.stddev == 0.01
    with pytest.raises(ValueError, match="unknown initializer 'he_norml'.*he_normal"):
        init.get("he_norml")
    with pytest.raises(ValueError, match="'x' is not a number"):
        init.get("normal:x")
    with pytest.raises(ValueError, match="mode='fan_mid'"):
        init.VarianceScaling(mode="fan_mid")


def test_apply_by_rules():
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.BatchNorm1d(30),
                                torch.nn.ReLU(), torch.nn.Linear(30, 5))
    init.apply(model, weight="he_normal", bias="constant:0.1",
               rules={torch.nn.BatchNorm1d: ("constant:2.0", None)}, seed=0)
    assert torch.all(model[0].bias == 0.1) and torch.all(model[1].weight == 2.0)
    assert torch.all(model[1].bias == 0.0)  # None leaves it
    first = model[0].weight.detach().clone()
    init.apply(model, weight="he_normal", seed=0)
    assert torch.equal(model[0].weight, first)  # seeded: the same again
