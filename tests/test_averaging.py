"""Weight averaging equals torch.optim.swa_utils; batch-norm statistics are recomputed."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from optimlab.averaging import WeightAverage
from optimlab.optim import SGD


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _train(model, steps, hooks):
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=gen)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        for hook in hooks:
            hook()


@pytest.mark.parametrize("mode", ["uniform", "ema"])
def test_matches_swa_utils_averaged_model(mode):
    model = _model()
    ours = WeightAverage(model, mode=mode, decay=0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9)) if mode == "ema" \
        else AveragedModel(model)
    _train(model, 30, [ours.update, lambda: theirs.update_parameters(model)])
    for a, b in zip(ours.params, theirs.module.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(ours.params[0], model[0].weight)


def test_swap_and_batchnorm_recomputed_like_update_bn():
    model = _model()
    ours = WeightAverage(model, mode="uniform")
    theirs = AveragedModel(model)
    _train(model, 20, [ours.update, lambda: theirs.update_parameters(model)])
    gen = torch.Generator().manual_seed(2)
    data = [torch.randn(32, 4, generator=gen) * 2 + 1 for _ in range(5)]
    raw_mean = model[1].running_mean.clone()
    ours.recompute_batchnorm(data)
    update_bn(data, theirs)
    torch.testing.assert_close(ours.buffers["1.running_mean"], theirs.module[1].running_mean)
    torch.testing.assert_close(ours.buffers["1.running_var"], theirs.module[1].running_var)
    assert not torch.allclose(ours.buffers["1.running_mean"], raw_mean)
    x = torch.randn(8, 4)
    model.eval()
    theirs.eval()
    trained = model(x)
    with ours.swapped():
        torch.testing.assert_close(model(x), theirs(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x), trained)  # restored
    assert torch.equal(model[1].running_mean, raw_mean)


def test_warmup_and_every():
    model = nn.Linear(2, 1)
    avg = WeightAverage(model, decay=0.99, warmup=True, every=2)
    assert avg.current_decay() == pytest.approx(0.1)
    for _ in range(4):
        avg.update()
    assert avg.n_averaged == 2  # calls 1 and 3
    assert avg.current_decay() == pytest.approx(3 / 12)
    with pytest.raises(ValueError, match="decay=1.0"):
        WeightAverage(model, decay=1.0)
