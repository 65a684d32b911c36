"""The algebra past elementwise: transforms of ``scope = "tensor"`` (whole tensors, stacked by
shape), group hooks (``begin``) and global reductions (``reduce``/``combine``) give the same
numbers in every engine as the formula written out directly, one tensor at a time."""

from __future__ import annotations

import pytest
import torch

import optimlab.optim as oo
from optimlab.optim import transforms as T

ENGINES = ("reference", "eager", "compiled", "flat", "flat-compiled")


class Normalize(T.Transform):
    """u / ‖u‖ · (1 + mean of r) per tensor, with r the EMA of the row means of u²: a state of
    another shape than the parameter's."""

    scope = "tensor"
    state = ("rows",)
    hyperparameters = {"beta": "[0, 1)"}

    def init(self, p, hp):
        return {"rows": torch.zeros(*p.shape[:-1], 1, dtype=p.dtype, device=p.device)}

    def update(self, u, g, s, p, hp, c):
        rows = s["rows"]
        rows.lerp_(u.square().mean(dim=-1, keepdim=True), 1 - hp["beta"])
        return u / T.per_tensor(u, "norm") * (1 + T.per_tensor(rows, "mean", like=u))


class GlobalScale(T.Transform):
    """Divide by the norm of all the group's gradients (a global reduction), counting calls in
    the group (``begin``)."""

    reduces = True

    def begin(self, group):
        group["calls"] = group.get("calls", 0) + 1

    def reduce(self, g, s, p, hp):
        return {"square": g.square().sum()}

    def combine(self, group, totals):
        group["norm"] = totals["square"].sqrt().item()

    def update(self, u, g, s, p, hp, c):
        return u / hp["norm"]


def shapes():
    return [(3, 4), (3, 4), (5,), (2, 3, 4), (3, 4), (7, 2)]


def direct(params, grads, steps, lr, beta):
    """The formulas above, written out per tensor."""
    rows = [torch.zeros(*p.shape[:-1], 1, dtype=p.dtype) for p in params]
    params = [p.clone() for p in params]
    for t in range(steps):
        for i, p in enumerate(params):
            u = grads[t][i]
            rows[i] = beta * rows[i] + (1 - beta) * u.square().mean(dim=-1, keepdim=True)
            params[i] = p - lr * u / u.norm() * (1 + rows[i].mean())
    return params


@pytest.mark.parametrize("engine", ENGINES)
def test_tensor_scope_matches_the_formula(engine):
    torch.manual_seed(0)
    start = [torch.randn(s, dtype=torch.float64) for s in shapes()]
    grads = [[torch.randn(s, dtype=torch.float64) for s in shapes()] for _ in range(4)]
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = oo.Optimizer(params, [Normalize(), T.LearningRate()], lr=0.1, beta=0.5, engine=engine)
    for t in range(4):
        for p, g in zip(params, grads[t], strict=True):
            p.grad = g.clone()
        opt.step()
    for ours, expected in zip(params, direct(start, grads, 4, 0.1, 0.5), strict=True):
        torch.testing.assert_close(ours.detach(), expected, rtol=1e-12, atol=1e-14)
    for p in params:  # the state keeps the shapes the transform gave it
        assert opt.state[p]["rows"].shape == (*p.shape[:-1], 1)


@pytest.mark.parametrize("engine", ENGINES)
def test_global_reduction_and_group_hook(engine):
    torch.manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in shapes()]
    params.append(torch.nn.Parameter(torch.randn(3, dtype=torch.float64)))  # no gradient
    opt = oo.Optimizer(params, [GlobalScale(), T.LearningRate()], lr=0.5, engine=engine)
    for step in range(1, 4):
        before = [p.detach().clone() for p in params]
        grads = [torch.randn_like(p) for p in params[:-1]]
        for p, g in zip(params, grads, strict=False):
            p.grad = g
        opt.step()
        norm = torch.cat([g.reshape(-1) for g in grads]).norm()
        for p, b, g in zip(params, before, grads, strict=False):
            torch.testing.assert_close(p.detach(), b - 0.5 * g / norm, rtol=1e-12, atol=1e-14)
        assert torch.equal(params[-1].detach(), before[-1])  # skipped, as torch
        assert opt.param_groups[0]["calls"] == step
        assert opt.param_groups[0]["norm"] == pytest.approx(norm.item(), rel=1e-12)


def test_tensor_scope_refuses_complex_parameters_clearly():
    p = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.complex128))
    p.grad = torch.randn_like(p)
    opt = oo.Optimizer([p], [Normalize(), T.LearningRate()], lr=0.1, beta=0.5,
                       engine="reference")
    with pytest.raises(ValueError, match="complex"):
        opt.step()


def lars_direct(start, grads, lr, coefficient, decay, momentum, decoupled):
    """LARS written out per tensor (You, Gitman, Ginsburg 2017, eq. (6), as pytorch_optimizer
    applies it: matrices only, η after the momentum), or with the base's decoupled decay."""
    params = [p.clone() for p in start]
    buffers = [torch.zeros_like(p) for p in start]
    for step in grads:
        for i, g in enumerate(step):
            p = params[i] * (1 - lr * decay) if decoupled else params[i]
            if p.dim() > 1:
                coupled = 0.0 if decoupled else decay
                denominator = g.norm() + coupled * p.norm()
                ratio = (coefficient * p.norm() / denominator
                         if p.norm() > 0 and denominator > 0 else 1.0)
                g = ratio * (g + coupled * p)
            buffers[i] = momentum * buffers[i] + g
            params[i] = p - lr * buffers[i]
    return params


@pytest.mark.parametrize("decoupled", [False, True], ids=["coupled", "decoupled"])
@pytest.mark.parametrize("engine", ENGINES)
def test_trust_ratio_matches_the_formula(engine, decoupled):
    """LARS's TrustRatio on a stack of same-shaped tensors (each its own norms), a zero matrix
    (ratio 1) and a zero gradient (ratio 1), and vectors left alone, in every engine. (On CPU,
    torch 2.13's Inductor fails to compile the coupled form over stacks: the compiled engines
    announce it and run that kernel eager; see engines._compile.)"""
    torch.manual_seed(2)
    start = [torch.randn(s, dtype=torch.float64) for s in shapes()]
    start[1].zero_()  # a (3, 4) initialized at zero still moves: r = 1
    grads = [[torch.randn(s, dtype=torch.float64) for s in shapes()] for _ in range(4)]
    grads[2][3].zero_()  # ‖g‖ = 0 on one step: r = 1 without decay, c‖p‖/λ‖p‖ with
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = oo.LARS(params, lr=0.5, trust_coefficient=0.02, weight_decay=0.1, momentum=0.5,
                  decoupled_weight_decay=decoupled, engine=engine)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        opt.step()
    expected = lars_direct(start, grads, 0.5, 0.02, 0.1, 0.5, decoupled)
    for ours, theirs in zip(params, expected, strict=True):
        torch.testing.assert_close(ours.detach(), theirs, rtol=1e-12, atol=1e-14)
    assert all(p.grad.equal(g) for p, g in zip(params, grads[-1], strict=True))  # untouched
