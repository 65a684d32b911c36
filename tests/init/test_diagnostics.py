"""The classic initialization experiments, and LSUV."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimlab import init

DEPTH, WIDTH = 10, 500


def mlp(activation: type[nn.Module]) -> nn.Sequential:
    layers = []
    for _ in range(DEPTH):
        layers += [nn.Linear(WIDTH, WIDTH), activation()]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def inputs():
    return torch.randn(1000, WIDTH, generator=torch.Generator().manual_seed(0))


def run(activation, weight, inputs):
    model = init.apply(mlp(activation), weight=weight, bias="zeros", seed=0)
    return init.diagnose(model, inputs)


def test_small_normal_with_tanh_vanishes_in_the_deep_layers(inputs):
    d = run(nn.Tanh, "normal:0.01", inputs)
    assert len(d.layers) == DEPTH
    assert all(flag == "vanishing" for flag in d.flags()[3:])
    assert d.layers[-1].std < 1e-5
    # and backward, the gradient reaching the first layer has vanished too
    assert d.layers[0].grad_std < 1e-3 * d.layers[-1].grad_std


def test_unit_normal_with_tanh_saturates(inputs):
    d = run(nn.Tanh, "normal:1.0", inputs)
    assert all(flag == "saturated" for flag in d.flags())
    assert min(layer.saturated for layer in d.layers) > 0.9


@pytest.mark.parametrize("activation, weight", [(nn.Tanh, f"glorot_normal:{5 / 3}"),
                                                (nn.ReLU, "he_normal")])
def test_xavier_tanh_and_he_relu_keep_the_variance(activation, weight, inputs):
    """Xavier with tanh's gain 5/3 (torch.nn.init.calculate_gain("tanh")) and He with ReLU keep
    every layer's activation std within a factor of 2 of the first layer's."""
    d = run(activation, weight, inputs)
    assert d.flags() == ["ok"] * DEPTH
    first = d.layers[0].std
    assert all(first / 2 <= layer.std <= 2 * first for layer in d.layers)


def test_plain_xavier_with_tanh_decays_slowly_but_stays_ok(inputs):
    """Glorot's gain-1 derivation assumes tanh's linear regime: the std decays (here 0.63 →
    0.23 over ten layers, a factor 2.8) but never vanishes."""
    d = run(nn.Tanh, "glorot_normal", inputs)
    assert d.flags() == ["ok"] * DEPTH
    stds = [layer.std for layer in d.layers]
    assert all(a > b for a, b in zip(stds, stds[1:], strict=False))
    assert stds[-1] > 0.2 * stds[0]


def test_unit_normal_with_relu_explodes(inputs):
    d = run(nn.ReLU, "normal:1.0", inputs)
    assert d.flags()[-1] == "exploding"


def test_lsuv_brings_every_layer_to_unit_std(inputs):
    model = mlp(nn.ReLU)
    stds = init.lsuv(model, inputs[:500])
    assert len(stds) == DEPTH
    assert all(abs(s - 1) <= 0.1 for s in stds)


def test_table_and_histograms(inputs, tmp_path):
    from rich.console import Console

    d = run(nn.Tanh, "normal:0.01", inputs[:200])
    console = Console(record=True, width=120)
    console.print(d.table())
    assert "vanishing" in console.export_text()
    path = d.plot(str(tmp_path / "hist.png"), title="N(0, 0.01), tanh")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
