"""Every engine equals the reference engine; the flat engines keep torch's contracts."""

from __future__ import annotations

import io
import logging

import pytest
import torch

import optimlab.optim as oo
from optimlab.optim import engines

from .database import cases as database_cases
from .database import default_dtype
from .references import batches, flat, initial_parameters, loss_fn, relative_error

FIRST_SETS = [c for c in database_cases() if c.id.endswith("-0")]
# the compiled engine compiles once per optimizer and flag set: the first set of every entry
# and every set of Adam (clipping, accumulation and weight decay run around the fused kernel)
COMPILED_SETS = FIRST_SETS + [c for c in database_cases(lambda i: i.id == "Adam-torch")
                              if not c.id.endswith("-0")]
# a float32 step under each engine: the compiled one (a compile per optimizer and dtype, 1.4 s
# each) on the torch flavor's entries; the keras flavor's run the same kernels with other
# defaults, and the float64 equality above covers both flavors under every engine
ROUNDING_CASES = [pytest.param(*c.values, engine, id=f"{c.id}-{engine}")
                  for c in FIRST_SETS for engine in ("eager", "compiled", "flat")
                  if engine != "compiled" or c.values[0].flavor == "torch"]


@pytest.fixture(autouse=True)
def float64_default():
    with default_dtype(torch.float64):
        yield


def train(info, hp, engine, steps=30, dtype=torch.float64, params=None, data=None):
    params = params or [torch.nn.Parameter(p.to(dtype))
                        for p in initial_parameters(matrix_only=info.matrix_only)]
    opt = info.make(params, engine=engine, **hp)
    k = hp.get("gradient_accumulation_steps", 1)
    for batch in data or batches(steps * k, dtype):
        opt.zero_grad()
        loss_fn(params, batch).backward()
        opt.step()
    return params, opt


@pytest.mark.parametrize("engine", ["eager", "flat"])
@pytest.mark.parametrize("info, hp", database_cases())
def test_eager_equals_reference_float64(info, hp, engine):
    ours, opt = train(info, hp, engine)
    assert opt.engine == engine
    expected, _ = train(info, hp, "reference")
    assert relative_error(flat(ours), flat(expected)) <= 1e-12


@pytest.mark.parametrize("info, hp", COMPILED_SETS)
def test_compiled_equals_reference_float64(info, hp):
    ours, opt = train(info, hp, "compiled", steps=20)
    assert opt.engine == "compiled"
    expected, _ = train(info, hp, "reference", steps=20)
    assert relative_error(flat(ours), flat(expected)) <= 1e-12


@pytest.mark.parametrize("info, hp", FIRST_SETS)
def test_flat_compiled_equals_reference_float64(info, hp):
    ours, opt = train(info, hp, "flat-compiled", steps=20)
    assert opt.engine == "flat-compiled"
    expected, _ = train(info, hp, "reference", steps=20)
    assert relative_error(flat(ours), flat(expected)) <= 1e-12


U32 = 2.0**-24  # unit roundoff of float32


@pytest.mark.parametrize("info, hp, engine", ROUNDING_CASES)
def test_one_float32_step_within_the_rounding_bound(info, hp, engine):
    """From the same float32 state, one step of an engine and of the reference differ by at most
    64·u·(|p| + |Δ|) per element, u = 2⁻²⁴: both evaluate the same chain of at most ~16
    elementwise operations, each rounded once (a fused kernel may contract a·b + c into one
    rounding or turn a division into a multiplication by the reciprocal), so the update Δ differs
    by ≤ 2·16·u·|Δ| to first order, and p − Δ adds one rounding of ≤ u(|p| + |Δ|). The factor 2 of
    slack covers the second-order terms."""
    with default_dtype(torch.float32):
        warm, opt = train(info, hp, "reference", steps=10, dtype=torch.float32)
        state = io.BytesIO()
        torch.save({"p": [p.detach() for p in warm], "opt": opt.state_dict()}, state)
        batch = batches(11, torch.float32)[10:]
        results = {}
        for name in ("reference", engine):
            state.seek(0)
            saved = torch.load(state)
            params = [torch.nn.Parameter(p.clone()) for p in saved["p"]]
            o = info.make(params, engine=name, **hp)
            o.load_state_dict(saved["opt"])
            before = flat(params).clone()
            o.zero_grad()
            loss_fn(params, batch[0]).backward()
            o.step()
            results[name] = (before, flat(params))
        before, after_ref = results["reference"]
        _, after = results[engine]
        bound = 64 * U32 * (before.abs() + (before - after_ref).abs())
        assert ((after - after_ref).abs() <= bound).all(), \
            ((after - after_ref).abs() / bound).max().item()


@pytest.mark.parametrize("first, second", [("reference", "eager"), ("eager", "compiled"),
                                           ("compiled", "reference"), ("eager", "reference"),
                                           ("flat", "eager"), ("eager", "flat")])
@pytest.mark.parametrize("name", ["Adam-torch", "NAdam-torch", "RMSprop-torch"])
def test_state_dict_moves_between_engines(name, first, second):
    info, hp = next(c.values for c in FIRST_SETS if c.id.startswith(name))
    data = batches(20)
    expected, _ = train(info, hp, "reference", data=data)
    params, opt = train(info, hp, first, data=data[:10])
    buffer = io.BytesIO()
    torch.save({"p": [p.detach() for p in params], "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = [torch.nn.Parameter(p.clone()) for p in saved["p"]]
    opt2 = info.make(resumed, engine=second, **hp)
    opt2.load_state_dict(saved["opt"])
    for batch in data[10:]:
        opt2.zero_grad()
        loss_fn(resumed, batch).backward()
        opt2.step()
    assert relative_error(flat(resumed), flat(expected)) <= 1e-12


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))


def _steps(model, opt, n, hook=None, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        if hook is not None:
            hook(i)
        opt.zero_grad()
        model(torch.randn(4, 5, generator=gen)).pow(2).sum().backward()
        opt.step()


def _storages(tensors):
    return {t.untyped_storage().data_ptr() for t in tensors}


@pytest.mark.parametrize("engine", ["reference", "eager", "compiled"])
def test_default_engines_leave_parameters_and_gradients_alone(engine):
    """The user's tensors stay the user's: storage, dtype, layout and identity of every parameter
    and of the gradients autograd made are unchanged by a step; the state is torch's."""
    model = _model()
    params = list(model.parameters())
    before = [(p.data_ptr(), p.dtype, p.stride()) for p in params]
    opt = oo.Adam(model.parameters(), lr=0.01, engine=engine)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 5)).pow(2).sum().backward()
        grads = [p.grad for p in params]
        opt.step()
        assert all(p.grad is g for p, g in zip(params, grads, strict=True))
    assert [(p.data_ptr(), p.dtype, p.stride()) for p in params] == before
    assert len(_storages(params)) == len(params)
    assert all(opt.state[p]["exp_avg"].shape == p.shape for p in params)


def test_flat_engine_puts_parameters_and_gradients_in_one_buffer():
    """engine="flat" (opt-in): one storage for the parameters, one for the gradients; zero_grad
    keeps torch's meaning (None by default, zeros in place with set_to_none=False)."""
    model = _model()
    opt = oo.Adam(model.parameters(), lr=0.01, engine="flat")
    _steps(model, opt, 2)
    params = list(model.parameters())
    assert len(_storages(params)) == 1
    assert len(_storages([p.grad for p in params])) == 1
    assert len(_storages([opt.state[p]["exp_avg"] for p in params])) == 1
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    model(torch.randn(3, 5)).sum().backward()  # backward accumulates into the buffer
    assert len(_storages([p.grad for p in params])) == 1
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    assert opt.state_dict()["state"][0]["exp_avg"].shape == model[0].weight.shape


@pytest.mark.parametrize("engine", ["eager", "compiled", "flat", "flat-compiled"])
def test_replaced_parameters_and_none_grads_still_step_correctly(engine):
    def hook(i):
        if i == 2:
            for p in model.parameters():  # what Module.to() / .double() do: swap p.data
                p.data = p.data.clone()
        if i == 4:
            model.zero_grad(set_to_none=True)  # grads become None; backward makes new ones

    def reference_hook(i):
        if i == 4:
            ref.zero_grad(set_to_none=True)

    model, ref = _model(), _model()
    opt = oo.NAdam(model.parameters(), lr=0.01, engine=engine)
    ref_opt = oo.NAdam(ref.parameters(), lr=0.01, engine="reference")
    _steps(model, opt, 8, hook)
    _steps(ref, ref_opt, 8, reference_hook)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_complex_parameters_fall_back_to_reference_with_one_warning():
    p = torch.nn.Parameter(torch.randn(3, dtype=torch.complex128))
    q = torch.nn.Parameter(torch.randn(3))
    opt = oo.Adam([p, q], lr=0.1, engine="eager")
    with pytest.warns(UserWarning, match="complex or sparse parameters run on the reference"):
        for _ in range(3):
            opt.zero_grad()
            ((p.abs() ** 2).sum() + (q**2).sum()).backward()
            opt.step()
    assert opt.state[p]["step"].item() == 3 and opt.state[q]["step"].item() == 3


def _first_step(opt):
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    opt.step()
    return opt.engine


def test_auto_picks_eager_for_small_and_compiled_for_large_models(monkeypatch):
    small = oo.Adam([torch.nn.Parameter(torch.zeros(10))])
    assert small.engine == "auto"  # decided at the first step, when the parameters exist
    assert _first_step(small) == "eager"
    big = [torch.nn.Parameter(torch.zeros(engines.COMPILE_THRESHOLD))]
    monkeypatch.setattr(engines, "compiler_available", lambda device: None)
    monkeypatch.setattr(engines.CompiledEngine, "run", lambda *args: None)
    assert _first_step(oo.Adam(big)) == "compiled"
    monkeypatch.setattr(engines, "compiler_available", lambda device: "no C++ compiler found")
    with pytest.warns(UserWarning, match="engine='auto' uses eager: no C\\+\\+ compiler"):
        assert _first_step(oo.Adam(big)) == "eager"


@pytest.mark.parametrize("engine", ["reference", "eager", "compiled"])
def test_bfloat16_parameters_with_float32_state(engine):
    """One step equals the float32 computation rounded once to bfloat16."""
    torch.manual_seed(0)
    p32 = torch.randn(1000)
    g32 = torch.randn(1000).to(torch.bfloat16).float()
    p = torch.nn.Parameter(p32.to(torch.bfloat16))
    opt = oo.Adam([p], lr=0.01, engine=engine, state_dtype=torch.float32)
    p.grad = g32.to(torch.bfloat16)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.float32
    reference = torch.nn.Parameter(p32.to(torch.bfloat16).float())
    ref_opt = oo.Adam([reference], lr=0.01, engine="reference")
    reference.grad = g32
    ref_opt.step()
    assert torch.equal(p.detach(), reference.detach().to(torch.bfloat16))
    with pytest.raises(ValueError, match="state_dtype"):
        oo.Adam([p], state_dtype=torch.int32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_half_precision_steps_equal_torchs_fused_step(dtype):
    """The compiled engine computes a float16 or bfloat16 step in float32, as torch's fused
    Adam: bit for bit equal to it, and finite in float16 where torch's foreach step is not
    (ε = 1e-8 is 0 in float16; the README says so)."""
    torch.manual_seed(0)
    start, grad = torch.randn(4096).to(dtype), (torch.randn(4096) * 1e-3).to(dtype)

    def run(make):
        p = torch.nn.Parameter(start.clone())
        opt = make([p])
        for _ in range(3):
            p.grad = grad.clone()
            opt.step()
        return p.detach()

    ours = run(lambda ps: oo.Adam(ps, lr=1e-3, engine="compiled"))
    assert torch.equal(ours, run(lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)))
    foreach = run(lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True))
    if dtype == torch.float16:
        assert not torch.isfinite(foreach).any() and torch.isfinite(ours).all()


@pytest.mark.parametrize("engine", ["reference", "eager", "compiled"])
def test_taking_a_state_dict_does_not_disturb_training(engine):
    """state_dict() in the middle of training (a checkpoint) leaves the run unchanged."""
    info, hp = next(c.values for c in FIRST_SETS if c.id.startswith("NAdam-torch"))
    data = batches(20)
    expected, _ = train(info, hp, engine, data=data)
    params = [torch.nn.Parameter(p) for p in initial_parameters()]
    opt = info.make(params, engine=engine, **hp)
    for i, batch in enumerate(data):
        opt.zero_grad()
        loss_fn(params, batch).backward()
        opt.step()
        if i % 5 == 0:
            opt.state_dict()
    assert torch.equal(flat(params), flat(expected))


@pytest.mark.parametrize("engine, slices", [("eager", True), ("compiled", False),
                                            ("compiled", True)])
def test_a_parameter_of_many_pieces_equals_torch(engine, slices, monkeypatch):
    """A large parameter (an embedding): eager updates it in cache-sized slices; compiled takes
    it whole, or, sliced, over several kernel calls on views of the same leaf (a view of a leaf
    changed in place by one call once failed to trace for the next). Equal to
    torch.optim.Adam. Pieces are made small here, so 10,000 elements are 16 pieces."""
    monkeypatch.setattr(engines.PackedEngine, "piece", 640)
    monkeypatch.setattr(engines.CompiledEngine, "slices", slices)
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(100, 100))
    theirs = torch.nn.Parameter(ours.detach().clone())
    opt = oo.Adam([ours], lr=0.01, engine=engine)
    ref = torch.optim.Adam([theirs], lr=0.01)
    for _ in range(3):
        grad = torch.randn(100, 100)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
        assert relative_error(ours.detach(), theirs.detach()) <= 1e-12


@pytest.mark.parametrize("engine", ["eager", "compiled"])
def test_large_same_shaped_tensors_of_a_tensor_chain_are_stacks_of_one(engine):
    """A chain of whole tensors (LAMB) gets stacks of same-shaped parameters: small ones are
    stacked together (gathered into scratch), a large one is a stack of one, a view of the
    parameter (gathering large ones copied every parameter and gradient in and out each step,
    and Prodigy gathered twice). Equal to the reference engine either way."""
    torch.manual_seed(0)
    side = int(engines.SINGLE ** 0.5) + 1
    shapes = [(side, side)] * 3 + [(4, 5)] * 3
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = oo.Lamb(ours, lr=0.01, weight_decay=0.1, engine=engine)
    ref = oo.Lamb(theirs, lr=0.01, weight_decay=0.1, engine="reference")
    _steps_beside(opt, ours, ref, theirs)
    assert _pack_sizes(opt) == [1, 1, 1, 3]
    assert relative_error(flat(ours), flat(theirs)) <= 1e-12


def _steps_beside(opt, ours, ref, theirs, steps=2):
    """``steps`` steps of both optimizers on the same random gradients."""
    for _ in range(steps):
        for p, q in zip(ours, theirs, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()


def _pack_sizes(opt):
    """The parameters in each pack of the engine's plans, sorted."""
    return sorted(len(pack.params) for plan in opt._engine.plans.values()
                  for cohort in plan.cohorts for pack in cohort.packs)


def test_compiled_engine_gathers_only_tensors_under_a_thousand_elements():
    """The compiled kernel takes several pieces of any size per call, so a tensor from
    SINGLE_COMPILED elements on is a piece of its own (its parameter and gradient views, not
    copied in and out); smaller ones, and eager's up to SINGLE, are gathered together. Equal to
    torch.optim.Adam either way."""
    torch.manual_seed(0)
    shapes = [(engines.SINGLE_COMPILED,)] * 3 + [(engines.SINGLE_COMPILED - 1,)] * 2
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    compiled = oo.Adam(ours, lr=0.01, engine="compiled")
    ref = torch.optim.Adam(theirs, lr=0.01)
    _steps_beside(compiled, ours, ref, theirs)
    assert relative_error(flat(ours), flat(theirs)) <= 1e-12
    assert _pack_sizes(compiled) == [1, 1, 1, 2]
    eager = oo.Adam(ours, lr=0.01, engine="eager")
    eager.step()
    assert _pack_sizes(eager) == [5]


def test_compiled_engine_runs_stacks_of_several_small_tensors_eager():
    """A chain of whole tensors (LAMB) under engine='compiled': a stack of several small
    same-shaped tensors runs as in eager (its per-tensor reductions compiled to loops slower
    than eager's batched ops), so nothing is compiled and the result is bit-equal to the eager
    engine's."""
    torch.manual_seed(0)
    start = [torch.randn(6, 7) for _ in range(4)]
    runs = {}
    for engine in ("compiled", "eager"):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = oo.Lamb(params, lr=0.01, weight_decay=0.1, engine=engine)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        runs[engine] = params, opt
    (compiled, opt), (eager, _) = runs["compiled"], runs["eager"]
    assert all(torch.equal(a, b) for a, b in zip(compiled, eager, strict=True))
    assert not opt._engine.kernels


def test_compiled_engine_runs_the_matrix_work_of_a_group_eager():
    """Muon's matrix group runs as in eager under engine='compiled' (nothing is compiled for
    it: bit-equal to eager); the AdamW group of a vector still compiles. The loss is separable,
    so the vector's rounding in the fused kernel does not reach the matrices' gradients."""
    torch.manual_seed(0)
    start = [torch.randn(5, 6), torch.randn(3, 5), torch.randn(5)]
    runs = {}
    for engine in ("compiled", "eager"):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = oo.Muon([{"params": params[:2]}, {"params": params[2:], "algorithm": "adamw"}],
                      lr=0.02, engine=engine)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            opt.zero_grad()
            x, y = torch.randn(4, 6, generator=gen), torch.randn(4, 5, generator=gen)
            loss = ((x @ params[0].T).square().sum() + (y @ params[1].T).square().sum()
                    + (params[2] - 1).square().sum())
            loss.backward()
            opt.step()
        runs[engine] = params, opt
    (compiled, opt), (eager, _) = runs["compiled"], runs["eager"]
    assert torch.equal(compiled[0], eager[0]) and torch.equal(compiled[1], eager[1])
    assert relative_error(compiled[2], eager[2]) <= 1e-12
    assert len(opt._engine.kernels) == 1  # the vector's AdamW


def test_compiled_engine_compiles_the_first_pass_of_a_global_reduction():
    """Prodigy's first pass (its moments, the sums of its distance estimate) runs in a compiled
    kernel of its own, with no graph break (``slice_p`` an int the kernel is specialised on,
    ``lr > 0`` a flag), and equals the reference engine while d grows, in float64."""
    import torch._dynamo.utils

    torch.manual_seed(0)
    shapes = [(40, 40), (40, 40), (300,), (7, 9)]
    start = [torch.randn(s, dtype=torch.float64) for s in shapes]
    targets = [torch.randn(s, dtype=torch.float64) for s in shapes]
    torch._dynamo.utils.counters.clear()
    runs = {}
    for engine in ("compiled", "reference"):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = oo.Prodigy(params, lr=1.0, weight_decay=0.01, slice_p=3, engine=engine)
        for _ in range(6):
            for p, t in zip(params, targets, strict=True):
                p.grad = 2 * (p.detach() - t)
            opt.step()
        runs[engine] = params, opt
    (compiled, opt), (reference, ref) = runs["compiled"], runs["reference"]
    assert ref.param_groups[0]["d"] > 10 * ref.param_groups[0]["d0"]  # the estimate moved
    assert opt.param_groups[0]["d"] == pytest.approx(ref.param_groups[0]["d"], rel=1e-12)
    assert relative_error(flat(compiled), flat(reference)) <= 1e-12
    assert {signature[0] for signature in opt._engine.kernels} == {"update", "reduce"}
    assert not torch._dynamo.utils.counters["graph_break"]


def test_several_large_pieces_get_a_graph_of_their_own():
    """The graph compiled for three large pieces and one dummy (a call padded to four slots)
    is not reused for four large pieces: the dummies' length is static, so the second call
    pattern compiles its own graph (the first would run the fourth piece in the loop fused for
    the dummy). A chain of this test only, so that no other test's graphs are counted."""
    import torch._dynamo.utils

    from optimlab.optim import transforms as T

    def build(count):
        side = int(engines.SINGLE ** 0.5) + 1  # each parameter a piece of its own
        params = [torch.nn.Parameter(torch.randn(side, side)) for _ in range(count)]
        for p in params:
            p.grad = torch.randn_like(p)
        return oo.Optimizer(params, [T.Adapt("ema", "alpha", name="only_in_this_test"),
                                     T.LearningRate()], lr=0.01, alpha=0.9, eps=1e-8,
                            engine="compiled")

    torch._dynamo.utils.counters.clear()
    for count in (3, 4):
        build(count).step()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2


def test_a_step_that_fails_while_traced_raises_torchs_own_error(caplog):
    """A model converted with .double() after a step meets its float32 state: under the compiled
    engine the user gets the error the reference engine (and torch.optim) raises, not the
    tracer's wrapping of it, and no error of the tracer is logged before it."""
    errors = {}
    caplog.set_level(logging.ERROR, logger="torch")
    for engine in ("compiled", "reference"):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(64, 64, dtype=torch.float32))
        opt = oo.Lamb([p], lr=1e-3, engine=engine)
        p.grad = torch.randn_like(p)
        opt.step()
        p.data = p.data.double()
        p.grad = torch.randn_like(p)
        with pytest.raises(RuntimeError) as caught:
            opt.step()
        errors[engine] = (type(caught.value), str(caught.value))
    assert errors["compiled"] == errors["reference"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_direct_calls_follow_the_gradients_layout():
    """After its first call of a key, a compiled kernel's graph is called directly (no Dynamo
    guards); a gradient of another layout (channels_last) is another key, which goes through
    Dynamo first: LAMB, a chain of whole tensors, on a large 4-D parameter (a stack of one,
    whose gradient's strides reach the kernel) and a matrix, equal to the reference engine at
    every step before and after the change."""
    torch.manual_seed(0)
    shapes = [(8, 16, 16, 20), (200, 200)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = oo.Lamb(ours, lr=0.01, weight_decay=0.1, engine="compiled")
    ref = oo.Lamb(theirs, lr=0.01, weight_decay=0.1, engine="reference")
    keys = []
    for step in range(6):
        for p, q in zip(ours, theirs, strict=True):
            g = torch.randn_like(p)
            if step >= 3 and g.dim() == 4:
                g = g.contiguous(memory_format=torch.channels_last)
            p.grad, q.grad = g, g.clone()
        opt.step()
        ref.step()
        assert relative_error(flat(ours), flat(theirs)) <= 1e-12, f"step {step}"
        keys.append(sum(len(k.graphs) for k in opt._engine.kernels.values()))
    assert not ours[0].grad.is_contiguous()
    assert keys[0] == keys[2] >= 1 and keys[3] == keys[5] > keys[2]


def test_a_kernel_past_dynamos_recompile_limit_still_steps():
    """Dynamo's recompile limit reached (every chain's kernel is one code object, so a process
    with many optimizers may reach it): the step is still taken, equal to the reference engine,
    where ``fullgraph`` would raise. A chain of this test only."""
    import torch._dynamo

    from optimlab.optim import transforms as T

    def build(count, engine):
        torch.manual_seed(count)
        side = int(engines.SINGLE ** 0.5) + 1  # each parameter a piece of its own
        params = [torch.nn.Parameter(torch.randn(side, side)) for _ in range(count)]
        for p in params:
            p.grad = torch.randn_like(p)
        return params, oo.Optimizer(params, [T.Adapt("ema", "alpha", name="past_the_limit"),
                                             T.LearningRate()], lr=0.01, alpha=0.9, eps=1e-8,
                                    engine=engine)

    params, opt = build(1, "compiled")
    opt.step()  # one graph of the code object compiled
    with torch._dynamo.config.patch(recompile_limit=1, accumulated_recompile_limit=1):
        for _ in range(2):
            ours, opt = build(3, "compiled")  # three pieces: another graph, past the limit
            theirs, ref = build(3, "reference")
            opt.step()
            ref.step()
            assert relative_error(flat(ours), flat(theirs)) <= 1e-12


def test_compiled_engine_sees_every_change_of_a_hyperparameter():
    """The compiled kernel's numbers are written only when they change: a learning rate that a
    scheduler changes every step, betas changed once mid-run and a weight decay set back to
    its first value are all seen, equal to the reference engine at every step."""
    torch.manual_seed(0)
    start = [torch.randn(200, 200), torch.randn(300)]
    runs = {}
    for engine in ("compiled", "reference"):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = oo.AdamW(params, lr=1e-2, weight_decay=0.1, engine=engine)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-2, total_steps=20)
        gen = torch.Generator().manual_seed(1)
        trajectory = []
        for t in range(20):
            if t == 8:
                opt.param_groups[0]["betas"] = (0.8, 0.99)
                opt.param_groups[0]["weight_decay"] = 0.3
            if t == 14:
                opt.param_groups[0]["weight_decay"] = 0.1
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
            schedule.step()
            trajectory.append(flat(params).clone())
        runs[engine] = trajectory
    for t, (a, b) in enumerate(zip(runs["compiled"], runs["reference"], strict=True)):
        assert relative_error(a, b) <= 1e-12, f"step {t}"
