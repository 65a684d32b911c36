"""Continuation, curriculum learning and greedy layer-wise pretraining."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from optimlab import data
from optimlab import nn as onn
from optimlab.optim import SGD, Adam
from optimlab.train import (
    Continuation,
    CurriculumSampler,
    greedy_pretrain,
    pacing,
    score_by_loss,
)


def rastrigin(x):
    """x² + 10(1 − cos 2πx): global minimum 0 at 0, local minima near every integer."""
    return (x**2 + 10 * (1 - torch.cos(2 * math.pi * x))).sum()


def test_continuation_finds_the_global_minimum_where_gradient_descent_stops_locally():
    plain = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    opt = SGD([plain], lr=1e-3)
    for _ in range(2000):
        opt.zero_grad()
        rastrigin(plain).backward()
        opt.step()
    assert abs(plain.item() - 2.98) < 0.05 and rastrigin(plain).item() > 8  # a local minimum

    blurred = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    cont = Continuation(SGD([blurred], lr=1e-2), sigma=2.0, steps=1500, samples=16)
    for _ in range(2000):
        cont.step(lambda: rastrigin(blurred))
    assert abs(blurred.item()) < 0.05 and rastrigin(blurred).item() < 0.1
    assert cont.sigma() == 0.0


def test_curriculum_sampler_presents_examples_in_scored_order():
    scores = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    rank = torch.empty(1000, dtype=torch.long)
    rank[torch.argsort(scores)] = torch.arange(1000)
    for name in ("linear", "root", "step", "exponential"):
        sampler = CurriculumSampler(scores, batch_size=32, steps=50, pacing=name, start=0.1)
        sizes = [sampler.pool_size(t) for t in range(50)]
        assert sizes[0] == 100 and sizes[-1] == 1000 and sizes == sorted(sizes)
        for t, batch in enumerate(sampler):
            assert len(set(batch)) == 32
            assert max(rank[batch].tolist()) < sizes[t]  # only the easiest pool is shown
    assert pacing("step", 0.3, 0.2) == pytest.approx(0.2 + 0.8 / 3)
    with pytest.raises(ValueError, match="pacing='cubic'"):
        CurriculumSampler(scores, 8, 10, pacing="cubic")


def _digits():
    digits = data.digits(seed=0)
    scaler = data.Standardize().fit(digits.train.x)
    return [data.Split(scaler.transform(s.x).flatten(1), s.y)
            for s in (digits.train, digits.val, digits.test)]


def test_curriculum_on_digits_end_to_end():
    torch.manual_seed(0)
    train, _, test = _digits()
    reference = onn.MLP(64, [32], 10)
    opt = Adam(reference.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(train.x), train.y).backward()
        opt.step()
    scores = score_by_loss(reference, train.x, train.y)
    model = onn.MLP(64, [64], 10)
    opt = Adam(model.parameters(), lr=1e-2)
    model.train()
    for batch in CurriculumSampler(scores, batch_size=32, steps=300, pacing="root"):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(train.x[batch]), train.y[batch]).backward()
        opt.step()
    model.eval()
    error = (model(test.x).argmax(1) != test.y).float().mean().item()
    assert error < 0.1


def test_greedy_layerwise_pretraining_on_digits():
    torch.manual_seed(0)
    train, val, test = _digits()
    blocks = [nn.Sequential(nn.Linear(64, 48), nn.ReLU()),
              nn.Sequential(nn.Linear(48, 32), nn.ReLU())]
    heads = [nn.Linear(48, 10), nn.Linear(32, 10)]
    block1_at_stage_start = []

    def optimizer(params):
        block1_at_stage_start.append([p.detach().clone() for p in blocks[0].parameters()])
        return Adam(list(params), lr=1e-2)

    network, histories = greedy_pretrain(blocks, heads, optimizer,
                                         torch.nn.functional.cross_entropy, train, val=val,
                                         epochs_per_block=2, finetune_epochs=2)
    assert len(histories) == 3 and len(block1_at_stage_start) == 3
    stage1, stage2, finetune = block1_at_stage_start
    assert not all(torch.equal(a, b) for a, b in zip(stage1, stage2, strict=True))  # trained
    assert all(torch.equal(a, b) for a, b in zip(stage2, finetune, strict=True))  # frozen
    assert not all(torch.equal(a, b) for a, b in
                   zip(finetune, blocks[0].parameters(), strict=True))  # fine-tuned jointly
    network.eval()
    error = (network(test.x).argmax(1) != test.y).float().mean().item()
    assert error < 0.1
    assert histories[1]["val_error"][-1] < 0.2
