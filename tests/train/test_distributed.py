"""Data-parallel training on two gloo processes equals one process (float64, 1e-10 relative):
DDP, ZeroRedundancyOptimizer and FSDP2, every optimizer under the reference and eager engines
and a few under the compiled one (distributed_run.COMPILED); checkpoints written at two
processes resume at one."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from optimlab.optim import get
from optimlab.train import distributed

from . import distributed_run as run

#: under pytest-xdist, on one worker: one torchrun launch (a module fixture) serves every test here
pytestmark = pytest.mark.xdist_group("torchrun")

SCRIPT = Path(__file__).with_name("distributed_run.py")
# LBFGS's step needs a closure: the Trainer steps without one
RUNS = [(s, n, e) for s in run.ENGINES for n in run.supported(s) for e in run.engines(s, n)]


def _relative_error(state: dict, reference: dict) -> float:
    return max(float((state[k] - reference[k]).norm() / reference[k].norm()) for k in reference)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun launch with two gloo processes training every run of distributed_run."""
    root = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", "2", str(SCRIPT), str(root / "out.pt"),
                    str(root / "checkpoints")], check=True, env=env, timeout=600)
    out = torch.load(root / "out.pt", weights_only=False)
    assert out["world_size"] == 2
    return out["results"], root / "checkpoints"


@pytest.fixture(scope="module")
def one_process():
    """Single-process training with the same global batch, on the reference engine."""
    cache = {}

    def result(name):
        if name not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[name] = run.train(name, "reference", None)[0]
        return cache[name]
    return result


def _tolerance(name: str) -> float:
    """1e-10, or for an optimizer that amplifies rounding (run.SENSITIVE) 100× the change that
    one rounding of every gradient makes to its one-process result, measured here."""
    if name not in run.SENSITIVE:
        return 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone, perturbed = (run.train(name, "reference", None, perturb=p)[0] for p in (0, 1))
    return max(1e-10, 100 * _relative_error(perturbed, alone))


@pytest.mark.parametrize("strategy,name,engine", RUNS)
def test_two_processes_equal_one_process(two_processes, one_process, strategy, name, engine):
    results, _ = two_processes
    error = _relative_error(results[(strategy, name, engine)], one_process(name))
    assert error <= _tolerance(name)


@pytest.mark.parametrize("strategy,variant", [(s, v) for s, variants in run.VARIANTS.items()
                                              for v in variants])
def test_options_across_ranks_over_two_processes_equal_one_process(two_processes, strategy,
                                                                   variant):
    """Clipping and the moving average of the weights (``use_ema``, which must change the final
    weights: the run without it is another result)."""
    results, _ = two_processes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone, _ = run.train("adam", "reference", None, **run.VARIANT_OPTIONS[variant])
        if variant == "use_ema":
            plain, _ = run.train("adam", "reference", None)
            assert _relative_error(plain, alone) > 1e-3
    assert _relative_error(results[(strategy, variant)], alone) <= 1e-10


@pytest.mark.parametrize("strategy,name", [(s, n) for s in run.ENGINES for n in run.RESUMED])
def test_a_checkpoint_from_two_processes_resumes_in_one(two_processes, one_process, strategy,
                                                        name):
    _, checkpoints = two_processes
    folder = checkpoints / f"{strategy}-{name}"
    assert len(list(folder.glob("ckpt-*.pt"))) >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state, batches = run.train(name, "reference", None, checkpoint_dir=str(folder),
                                   resume=True)
    assert batches == 5  # only the second epoch ran here: 51 examples in batches of 12
    assert _relative_error(state, one_process(name)) <= 1e-10


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group in this process, for what needs a group but not a peer."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("engine", ["auto", "eager", "compiled"])
def test_fsdp2_parameters_run_on_the_reference_path_and_say_so(process_group, engine):
    model, _ = run.problem()
    model = distributed.parallelize(model, "fsdp")
    with pytest.warns(UserWarning, match="DTensor"):
        opt = get("adam", model.parameters(), lr=0.1, engine=engine)
        for p in model.parameters():
            p.grad = torch.distributed.tensor.distribute_tensor(
                torch.ones(p.shape, dtype=p.dtype), p.device_mesh, p.placements)
        opt.step()
    # Adam's first step from a gradient of ones: m̂ = v̂ = 1, so p ← p − lr·1/(√1 + ε)
    before, _ = run.problem()
    after = distributed.model_state(model)
    for key, value in before.state_dict().items():
        torch.testing.assert_close(after[key], value - 0.1 / (1 + 1e-8), rtol=0, atol=1e-15)


def test_strategies_and_backends_are_checked():
    with pytest.raises(ValueError, match="strategy='dp'.*ddp, zero, fsdp"):
        distributed.make_optimizer(get, [], "dp")
    with pytest.raises(ValueError, match="backend='mpi'"):
        distributed.init_from_env("mpi")
    with pytest.raises(ValueError, match="global_clipnorm=1.0 with strategy='zero'.*partition"):
        distributed.make_optimizer(get, [], "zero", global_clipnorm=1.0)
    # ZeRO partitions a group's tensors over the ranks: Prodigy's estimate of d reduces over
    # all of them; FSDP2 shards every tensor: the optimizers with per-tensor norms, factored
    # moments or eigenbases (and Prodigy's reduction) need whole ones
    expected = {"zero": {"prodigy"},
                "fsdp": {"prodigy", "adafactor", "lamb", "lars", "soap"}}
    for strategy, names in expected.items():
        for name in names:
            with pytest.raises(ValueError, match=f"with strategy='{strategy}'.*'ddp'"):
                distributed.make_optimizer(functools.partial(get, name), [], strategy)
        assert {n for n in run.names(closure=False, matrices=False)
                if run.refused(n, strategy)} == names
    with pytest.raises(RuntimeError, match="needs a process group"):
        distributed.parallelize(torch.nn.Linear(2, 2), "ddp")
