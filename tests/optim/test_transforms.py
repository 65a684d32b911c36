"""The algebra: optimizers assembled from transforms, and the identities the docs claim."""

from __future__ import annotations

import pytest
import torch

import optimlab.optim as oo
from optimlab.optim import transforms as T

from .references import batches, flat, initial_parameters, loss_fn


def train(make, steps=60, dtype=torch.float64):
    params = [torch.nn.Parameter(p.to(dtype)) for p in initial_parameters()]
    opt = make(params)
    for batch in batches(steps, dtype):
        opt.zero_grad()
        loss_fn(params, batch).backward()
        opt.step()
    return params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_from_transforms_is_bit_identical(dtype):
    def by_hand(params):
        return oo.Optimizer(params, [T.AverageGradient("betas.0"),
                                     T.Adapt("ema", "betas.1", bias_correction=True),
                                     T.LearningRate()],
                            lr=0.01, betas=(0.9, 0.999), eps=1e-8, amsgrad=False)

    built = train(by_hand, dtype=dtype)
    named = train(lambda p: oo.Adam(p, lr=0.01), dtype=dtype)
    assert torch.equal(flat(built), flat(named))


def test_new_combination_nesterov_rmsprop_matches_its_formula():
    """RMSprop with Nesterov momentum, a combination torch lacks, in three lines; checked
    against the formula written out: v = αv + (1−α)g², d = g/(√v+ε), b = μb + d,
    p ← p − η(d + μb)."""
    lr, alpha, eps, mu = 0.01, 0.9, 1e-8, 0.9
    built = train(lambda p: oo.Optimizer(
        p, T.chain(T.Adapt("ema", "alpha", name="square_avg"), T.Momentum(), T.LearningRate()),
        lr=lr, alpha=alpha, eps=eps, momentum=mu, nesterov=True))

    params = initial_parameters()
    v = [torch.zeros_like(p) for p in params]
    b = [torch.zeros_like(p) for p in params]
    for batch in batches(60):
        values = [p.clone().requires_grad_() for p in params]
        grads = torch.autograd.grad(loss_fn(values, batch), values)
        for i, g in enumerate(grads):
            v[i] = alpha * v[i] + (1 - alpha) * g * g
            d = g / (v[i].sqrt() + eps)
            b[i] = mu * b[i] + d
            params[i] = params[i] - lr * (d + mu * b[i])
    err = ((flat(built) - flat(params)).abs().max() / flat(params).abs().max()).item()
    assert err < 1e-12


def test_new_combination_descends():
    """Maxaprop (RMSprop's decaying statistic taken in L∞) lowers the loss."""
    def make(p):
        return oo.Optimizer(p, [T.Adapt("max", "alpha", name="exp_inf"), T.LearningRate()],
                            lr=0.01, alpha=0.99, eps=1e-8)

    params = train(make, steps=200)
    data = batches(8)
    with torch.no_grad():
        assert (sum(loss_fn(params, b) for b in data)
                < 0.9 * sum(loss_fn(initial_parameters(), b) for b in data))


def quadratic_grad(theta):
    """∇ of f(θ) = ½ θᵀAθ with A = diag(1, 10)."""
    return torch.tensor([1.0, 10.0], dtype=torch.float64) * theta


def test_nesterov_reformulation_equals_look_ahead_definition():
    """torch's Nesterov iterate p equals θ + μv of Sutskever et al.'s look-ahead form
    v ← μv − η∇f(θ + μv), θ ← θ + v (derivation in Momentum's docstring reference)."""
    lr, mu = 0.05, 0.9
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    opt = oo.SGD([p], lr=lr, momentum=mu, nesterov=True)
    theta, v = p.detach().clone(), torch.zeros(2, dtype=torch.float64)
    for _ in range(50):
        p.grad = quadratic_grad(p.detach())
        opt.step()
        v = mu * v - lr * quadratic_grad(theta + mu * v)
        theta = theta + v
        torch.testing.assert_close(p.detach(), theta + mu * v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("flavor", ["torch", "keras"])
def test_momentum_conventions_agree_at_constant_lr(flavor):
    """Classic (v = μv − ηg) and torch (v = μv + g) momentum: same iterates for constant η."""
    def run(flavor, lrs):
        p = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
        opt = oo.SGD([p], lr=lrs[0], momentum=0.9, flavor=flavor)
        for lr in lrs:
            opt.param_groups[0]["lr"] = lr
            p.grad = quadratic_grad(p.detach())
            opt.step()
        return p.detach()

    constant = [0.05] * 30
    torch.testing.assert_close(run("torch", constant), run("keras", constant), rtol=1e-12, atol=0)
    # with a schedule they differ: classic momentum keeps the old η inside v
    schedule = [0.05] * 10 + [0.005] * 20
    assert (run("torch", schedule) - run("keras", schedule)).abs().max() > 1e-4


def test_classic_momentum_is_the_textbook_formula():
    lrs = [0.05] * 5 + [0.01] * 5
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    opt = oo.SGD([p], momentum=0.8, flavor="keras")
    theta, v = p.detach().clone(), torch.zeros(2, dtype=torch.float64)
    for lr in lrs:
        opt.param_groups[0]["lr"] = lr
        p.grad = quadratic_grad(p.detach())
        opt.step()
        v = 0.8 * v - lr * quadratic_grad(theta)
        theta = theta + v
    torch.testing.assert_close(p.detach(), theta, rtol=1e-12, atol=1e-15)


def test_interval_parsing_and_messages():
    unit = T.Interval.parse("[0, 1)")
    assert 0 in unit and 0.5 in unit and 1 not in unit
    assert str(T.Interval.parse("(0, inf)")) == "(0, inf)"
    with pytest.raises(ValueError, match=r"betas\[1\]=1.5 is out of range: allowed \[0, 1\)"):
        unit.check("betas.1", 1.5)
    with pytest.raises(ValueError, match="must be a number"):
        unit.check("lr", "fast")


def test_chain_rejects_non_transforms_and_base_needs_a_chain():
    with pytest.raises(TypeError, match="Transform"):
        T.chain(T.LearningRate(), lambda u: u)
    with pytest.raises(TypeError, match="needs a chain"):
        oo.Optimizer([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="statistic='l3'"):
        T.Adapt("l3")


def test_gradient_accumulation_updates_every_k_calls():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = oo.SGD([p], lr=0.1, gradient_accumulation_steps=3)
    for grad, expected in [(1.0, 1.0), (2.0, 1.0), (6.0, 1.0 - 0.1 * 3.0), (3.0, 0.7)]:
        p.grad = torch.tensor([grad])
        opt.step()
        torch.testing.assert_close(p.detach(), torch.tensor([expected]))


@pytest.mark.parametrize("make, name, first, second", [
    (lambda: T.chain(T.Momentum(), T.Momentum()), "momentum_buffer", "Momentum", "Momentum"),
    (lambda: T.chain(T.AverageGradient(), T.LearningRate(), T.AverageGradient("betas.1")),
     "exp_avg", "AverageGradient", "AverageGradient"),
    (lambda: T.chain(T.AverageGradient(), T.NesterovAverage()), "exp_avg", "AverageGradient",
     "NesterovAverage"),
    (lambda: T.chain(T.Adapt("ema", "alpha", name="square_avg"), T.Adapt("sum", name="square_avg")),
     "square_avg", "Adapt", "Adapt"),
    (lambda: T.Chain([T.Momentum(), T.Chain([T.LearningRate(), T.Momentum()])]),
     "momentum_buffer", "Momentum", "chain"),
], ids=["momentum", "average", "average-nesterov", "adapt-name", "nested"])
def test_chain_refuses_two_transforms_keeping_the_same_state(make, name, first, second):
    with pytest.raises(ValueError) as error:
        make()
    message = str(error.value)
    assert f"state {name!r}" in message
    assert f"({first}(" in message and f"({second}(" in message


def test_an_optimizer_refuses_a_chain_with_a_shared_state():
    with pytest.raises(ValueError, match="momentum_buffer"):
        oo.Optimizer([torch.nn.Parameter(torch.zeros(2))],
                     [T.Momentum(), T.LearningRate(), T.Momentum()], lr=0.1, momentum=0.9)


def test_state_names_are_declared_before_any_state_exists():
    assert T.Momentum().state == ("momentum_buffer",)
    assert T.Adapt("sum", name="sum").state[0] == "sum"  # a name given to the constructor
    assert T.chain(T.AverageGradient(), T.Adapt(), T.LearningRate()).state == (
        "exp_avg", "exp_avg_sq", "grad_avg", "max_exp_avg_sq")
    # two Adapt with distinct names still share the centered/AMSGrad buffers' names
    with pytest.raises(ValueError, match="grad_avg"):
        T.chain(T.Adapt(), T.Adapt("max", name="exp_inf"))


FLAGS_ON = {"SGD": {"momentum": 0.9}, "RMSprop": {"momentum": 0.9, "centered": True},
            "Adam": {"amsgrad": True}, "AdamW": {"amsgrad": True}}


@pytest.mark.parametrize("flavor", oo.FLAVORS)
@pytest.mark.parametrize("name", oo.names())
def test_every_optimizer_keeps_only_declared_state(name, flavor):
    matrix = name not in oo.names(matrices=False)  # Muon: 2-D parameters only
    p = torch.nn.Parameter(torch.tensor([[1.0, -2.0]] if matrix else [1.0, -2.0]))
    cls = oo.REGISTRY[name]
    kwargs = FLAGS_ON.get(getattr(cls, "__name__", ""), {})
    opt = oo.get(name, [p], flavor=flavor, **kwargs)

    def closure():  # LBFGS needs one; the others call it once
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    # an optimizer that is not a chain (LBFGS) declares its state keys itself
    declared = getattr(opt, "state_keys", None) or opt.chain.state
    assert set(opt.state[p]) - {"step"} <= set(declared)


def test_a_transform_creating_undeclared_state_is_refused():
    class Leaky(T.Transform):
        state = ("declared",)

        def init(self, p, hp):
            return {"declared": torch.zeros_like(p), "hidden": torch.zeros_like(p)}

        def update(self, u, g, s, p, hp, c):
            return u

    with pytest.raises(TypeError, match="hidden"):
        T.chain(Leaky()).init(torch.zeros(2), T.Hyper({}))
