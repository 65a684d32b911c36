"""torch's own optimizer test inputs, run on optimlab: the default engine is torch.optim, exactly.

torch keeps its optimizer database in ``torch.testing._internal.common_optimizers`` (``optim_db``):
per optimizer, the constructor inputs its tests run and the inputs that must raise. Every such
input of the optimizers both libraries have runs here on our class and on torch's.
"""

from __future__ import annotations

import copy
import inspect
import re
from typing import Any

import pytest
import torch
from torch.testing._internal.common_optimizers import (
    OptimizerErrorEnum,
    _get_optim_inputs_including_global_cliquey_kwargs,
    optim_db,
)

import optimlab.optim as oo

from .database import default_dtype

#: the optimizers torch.optim and optimlab share, by class name.
SHARED = ("SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam", "RAdam",
          "Rprop", "ASGD", "LBFGS", "Muon", "Adafactor")
INFOS = {info.optim_cls.__name__: info for info in optim_db
         if info.optim_cls.__name__ in SHARED}
ENGINES = tuple(name for name in oo.ENGINES if name != "auto")
#: torch-only options optimlab refuses with a ValueError (it has no CUDA-graph capture and no
#: differentiable step); every input that sets one is checked to raise, and runs without it.
REFUSED = ("capturable", "differentiable")
STEPS = 5
TOLERANCE = 1e-10


@pytest.fixture(autouse=True)
def float64_default():
    """torch keeps ``step`` and NAdam's ``mu_product`` in the default dtype: make it float64."""
    with default_dtype(torch.float64):
        yield


def _inputs() -> list[tuple[str, str, dict[str, Any]]]:
    """(optimizer, description, kwargs) for every input torch lists for CPU or for CUDA (run on
    CPU here), each with the global-cliquey variants torch's helper adds for that device
    (foreach, fused where torch has a kernel, differentiable); every input once."""
    out = []
    with default_dtype(torch.float64):  # a Tensor lr is created in float64, as the parameters
        for name, info in INFOS.items():
            kept: list[dict[str, Any]] = []
            for device in ("cpu", "cuda"):
                for i in _get_optim_inputs_including_global_cliquey_kwargs(
                        device, torch.float64, info):
                    if not any(_same(i.kwargs, k) for k in kept):
                        kept.append(i.kwargs)
                        desc = i.desc if device == "cpu" else f"{i.desc} (cuda input)"
                        out.append((name, desc, i.kwargs))
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal inputs, a flag set to False counting as left out."""
    def key(kwargs):
        return {k: v for k, v in kwargs.items() if v is not False}
    return repr(key(a)) == repr(key(b))


def _unique_ids(ids: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    out = []
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
        out.append(i if counts[i] == 1 else f"{i} #{counts[i]}")
    return out


_ALL = _inputs()
INPUTS = [(n, k, i) for (n, _, k), i in zip(
    _ALL, _unique_ids([f"{n}-{d}" for n, d, _ in _ALL]), strict=True)]
REFUSED_INPUTS = [(n, k, i) for n, k, i in INPUTS if any(k.get(key) for key in REFUSED)]
RUNNABLE = [(n, k, i) for n, k, i in INPUTS if not any(k.get(key) for key in REFUSED)]
# an input that sets a refused option also runs without it (what is left of the CUDA inputs:
# Tensor lr, Tensor betas, amsgrad, foreach), unless that is an input already
for name, kwargs, ident in REFUSED_INPUTS:
    rest = {k: v for k, v in kwargs.items() if not (k in REFUSED and v)}
    if not any(n == name and _same(rest, k) for n, k, _ in RUNNABLE):
        dropped = " and ".join(k for k in REFUSED if kwargs.get(k))
        RUNNABLE.append((name, rest, f"{ident}, without {dropped}"))
#: the compiled engines compile for seconds: they run the first input of each optimizer
#: (torch's "default"; the flat one reuses the other's kernels).
FIRST = {name: next(i for n, _, i in RUNNABLE if n == name) for name in SHARED}


def _cases():
    return [pytest.param(name, kwargs, engine, id=f"{engine}-{ident}")
            for engine in ENGINES for name, kwargs, ident in RUNNABLE
            if "compiled" not in engine or FIRST[name] == ident]


# ------------------------------------------------------------------------------ the problem
SHAPES = [(3, 4), (3,), (), (2, 3)]


#: optimizers that take 2-D parameters only: the bias and the scale as matrices (1, 3), (1, 1)
MATRIX_ONLY = ("Muon",)


def _parameters(name: str | None = None) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]
    if name in MATRIX_ONLY:  # the same values, which _loss reads alike
        values = [v.reshape(1, -1) if v.dim() < 2 else v for v in values]
    return [torch.nn.Parameter(v) for v in values]


def _loss(params, step: int) -> torch.Tensor:
    """A small network: the weight, bias, a 0-d scale, and a branch that gets a gradient on
    odd steps only (its ``.grad`` is None on the others, as torch's optimizers expect)."""
    w, b, scale, branch = params
    b, scale = b.reshape(-1), scale.reshape(())  # as given, or from matrices (MATRIX_ONLY)
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(8, generator=gen, dtype=torch.float64)
    h = torch.tanh(x @ w.T + b)
    out = h.sum(1) * scale
    if step % 2:
        out = out + (h[:, :2] @ branch).sum(1)
    return ((out - y) ** 2).mean()


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in params])


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def _train(make, steps: int = STEPS, name: str | None = None):
    """Yield the parameters after each step, taken with a closure (which LBFGS needs and the
    others call once)."""
    params = _parameters(name)
    opt = make(params)
    for step in range(steps):
        def closure(step=step):
            opt.zero_grad()
            loss = _loss(params, step)
            loss.backward()
            return loss
        opt.step(closure)
        yield step, _flat(params)


def _as_torch_runs_it(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The input for torch's class. torch's fused CPU SGD with momentum fails (TypeError in
    ``_fused_sgd``) once a parameter gets its first gradient after the others have momentum
    buffers, as the branch here does at step 2: those inputs are compared with torch's
    single-tensor SGD instead (``fused`` is a kernel choice, not a different update)."""
    if name == "SGD" and kwargs.get("fused") and kwargs.get("momentum"):
        return {**kwargs, "fused": False}
    return kwargs


# ------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name, kwargs, engine", _cases())
def test_matches_torch_step_by_step(name, kwargs, engine):
    """Every step's parameters equal torch's to 1e-10 relative, or both raise alike."""
    torch_cls, ours_cls = getattr(torch.optim, name), getattr(oo, name)
    try:
        theirs = _as_torch_runs_it(name, kwargs)
        expected = list(_train(lambda p: torch_cls(p, **copy.deepcopy(theirs)), name=name))
    except Exception as error:  # torch refuses the input: ours must refuse it alike
        with pytest.raises(type(error)):
            list(_train(lambda p: ours_cls(p, engine=engine, **copy.deepcopy(kwargs)),
                        name=name))
        return
    ours = _train(lambda p: ours_cls(p, engine=engine, **copy.deepcopy(kwargs)), name=name)
    start = _flat(_parameters(name))
    for (step, actual), (_, reference) in zip(ours, expected, strict=True):
        err = _relative_error(actual, reference)
        assert err <= TOLERANCE, f"step {step + 1}: relative error {err:.3g} vs torch.optim.{name}"
    assert not torch.equal(actual, start), "parameters did not move"


@pytest.mark.parametrize("name, kwargs", [pytest.param(n, k, id=i) for n, k, i in REFUSED_INPUTS])
def test_torch_only_option_is_refused(name, kwargs):
    """capturable=True and differentiable=True are refused with a ValueError naming them."""
    refused = [key for key in REFUSED if kwargs.get(key)]
    with pytest.raises(ValueError, match=refused[0]) as error:
        getattr(oo, name)(_parameters(name), **copy.deepcopy(kwargs))
    assert "False" in str(error.value), "the message says what is allowed"


def _error_cases():
    out, ids = [], []
    for name, info in INFOS.items():
        for case in info.optim_error_inputs_func(device="cpu", dtype=torch.float64):
            out.append((name, case))
            ids.append(f"{name}-{case.optimizer_error_input.desc}")
    return [pytest.param(n, c, id=i) for (n, c), i in zip(out, _unique_ids(ids), strict=True)]


def _named_arguments(kwargs: dict[str, Any], regex: str) -> list[str]:
    """The keyword arguments torch's message names (``betas`` for "beta parameter")."""
    return [key for key in kwargs if re.search(rf"\b({key}|{key.rstrip('s')})\b", regex)]


@pytest.mark.parametrize("name, case", _error_cases())
def test_error_input_raises_like_torch(name, case):
    """torch's error inputs raise torch's exception type (or warning) from our class; where
    torch's message names an argument, ours names it too, and the value given if a number."""
    given = case.optimizer_error_input
    cls = getattr(oo, name)

    def build_and_step():
        opt = cls(given.params, **given.kwargs)
        if case.error_on == OptimizerErrorEnum.STEP_ERROR:
            opt.step()

    if issubclass(case.error_type, Warning):
        with pytest.warns(case.error_type, match=case.error_regex):
            build_and_step()
        return
    with pytest.raises(case.error_type) as error:
        build_and_step()
    message = str(error.value)
    named = _named_arguments(given.kwargs, case.error_regex)
    if not given.kwargs:  # the params argument: optimlab keeps torch's own checks and messages
        assert re.search(case.error_regex, message), message
    for key in named:
        assert key in message, f"the message does not name {key!r}: {message}"
        value = given.kwargs[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert repr(value) in message, f"the message does not give {value!r}: {message}"


# ------------------------------------------------------------------------ keyword arguments
@pytest.mark.parametrize("name", SHARED)
def test_takes_every_keyword_torch_takes(name):
    """Each keyword argument of torch's class, at torch's default, is accepted."""
    signature = inspect.signature(getattr(torch.optim, name))
    for key, parameter in signature.parameters.items():
        if key == "params" or parameter.default is inspect.Parameter.empty:
            continue
        getattr(oo, name)(_parameters(name), **{key: parameter.default})


def _typo(word: str) -> str:
    return word[:-2] + word[-1] if len(word) > 3 else word + word[-1]


@pytest.mark.parametrize("name", SHARED)
def test_misspelled_keyword_raises_type_error_like_torch(name):
    """A misspelled keyword raises TypeError as torch's class does, naming the keyword and the
    one meant."""
    signature = inspect.signature(getattr(torch.optim, name))
    for key in signature.parameters:
        if key == "params":
            continue
        wrong = _typo(key)
        with pytest.raises(TypeError):
            getattr(torch.optim, name)(_parameters(name), **{wrong: 0.1})
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{wrong}'") as error:
            getattr(oo, name)(_parameters(name), **{wrong: 0.1})
        assert f"did you mean '{key}'?" in str(error.value)


def test_keyword_of_another_optimizer_raises_type_error():
    with pytest.raises(TypeError, match="argument 'momentum'; did you mean 'betas'"):
        oo.Adam(_parameters(), momentum=0.9)  # Adam's momentum is betas[0], not Keras' EMA's
    with pytest.raises(TypeError, match="argument 'learning_rate'; did you mean 'lr'"):
        oo.SGD(_parameters(), learning_rate=0.1)
    with pytest.raises(TypeError, match="argument 'beta_1'; did you mean 'betas'"):
        oo.Adam(_parameters(), beta_1=0.9, flavor="keras")  # Keras' name; ours are torch's
    with pytest.raises(TypeError, match="argument 'epsilon'; did you mean 'eps'"):
        oo.RMSprop(_parameters(), epsilon=1e-7)
    with pytest.raises(TypeError, match="'weight_decy'; did you mean 'weight_decay'"):
        oo.AdamW(_parameters(), weight_decy=0.1)
    with pytest.raises(TypeError, match="'clip_norm'; did you mean 'clipnorm'"):
        oo.SGD(_parameters(), clip_norm=1.0)
    with pytest.raises(TypeError, match="'lr_decay'"):  # Adagrad's, read by LearningRate
        oo.Adam(_parameters(), lr_decay=0.1)
    with pytest.raises(TypeError, match="'lr_pow'; did you mean 'lr_power'"):
        oo.Ftrl(_parameters(), lr_pow=-0.5)


def test_chain_given_directly_takes_the_hyperparameters_its_transforms_read():
    """For ``Optimizer(params, transforms, **hp)`` the keywords are the base options and what
    the chain's transforms read (their ranges and their switches, e.g. ``amsgrad``)."""
    from optimlab.optim import transforms as T

    def adam(**hp):
        return oo.Optimizer(_parameters(), [T.AverageGradient("betas.0"),
                                            T.Adapt("ema", "betas.1", bias_correction=True),
                                            T.LearningRate()], **hp)

    adam(lr=0.01, betas=(0.9, 0.99), eps=1e-8, amsgrad=True, weight_decay=0.1, clipnorm=1.0)
    with pytest.raises(TypeError, match="'beta'; did you mean 'betas'"):
        adam(beta=(0.9, 0.99))
    with pytest.raises(TypeError, match="'nesterov'"):  # no Momentum in this chain
        adam(nesterov=True)
