"""Train every optimizer with every strategy under torchrun and save rank 0's full results.

    torchrun --nproc-per-node 2 distributed_run.py OUTPUT.pt CHECKPOINT_ROOT

The test compares OUTPUT.pt with single-process training (``train(...)`` below, world size 1).
A run is (strategy, optimizer, engine): the final full parameters after EPOCHS epochs. For
each strategy the RESUMED optimizers also checkpoint after one epoch into
CHECKPOINT_ROOT/<strategy>-<optimizer>, and the test resumes those checkpoints in one process.
"""

from __future__ import annotations

import functools
import sys
import warnings

import torch

from optimlab.optim import get, names
from optimlab.train import Trainer, distributed

EPOCHS = 2
BATCH = 12  # 51 examples: batches of 12, 12, 12, 12, 3; the last splits 2 + 1 over two ranks
LR = {"adadelta": 1.0, "adagrad": 0.1, "ftrl": 0.1,
      "prodigy": 1.0}  # its default: d grows 40-fold in the 10 steps (at 0.05 it stays d0)
#: SOAP's eigenbasis of a rank-deficient statistic is decided by rounding in its null space
#: (the (10, 10) side of the first weight, G Gᵀ of rank ≤ 6): two processes' averaged
#: gradients round differently from one process', and the runs part (0.3 relative). With the
#: 10-sides left unpreconditioned every statistic is full rank; its eigendecompositions still
#: amplify rounding (see ``perturb`` and the test's tolerance for SOAP).
OPTIONS = {"soap": {"max_precondition_dim": 6}}
#: optimizers whose result amplifies the rounding of the gradients beyond 1e-10 in these 10
#: steps: compared with a tolerance derived from their own sensitivity (``perturb``)
SENSITIVE = ("soap",)
#: Adam with options that act across ranks: clipping, which needs the norm over every rank's
#: gradients (ZeRO: per tensor only), and Keras' moving average of the weights, written into
#: each rank's parameters (ZeRO: its partition's) at the end of fit
VARIANTS = {"ddp": ("global_clipnorm", "clipnorm", "clipvalue", "use_ema"),
            "zero": ("clipnorm", "clipvalue", "use_ema"),
            "fsdp": ("global_clipnorm", "clipnorm", "clipvalue", "use_ema")}
VARIANT_OPTIONS = {"global_clipnorm": {"global_clipnorm": 0.1}, "clipnorm": {"clipnorm": 0.1},
                   "clipvalue": {"clipvalue": 0.01},
                   "use_ema": {"use_ema": True, "ema_momentum": 0.8}}
RESUMED = ("adam", "ftrl")  # checkpointed after one epoch, resumed by the test in one process
ENGINES = {"ddp": ("reference", "eager", "compiled"), "zero": ("reference", "eager", "compiled"),
           "fsdp": ("auto",)}
#: the optimizers trained with the compiled engine too (each compiles its kernel in both
#: processes): one elementwise chain with scalar state, one of whole tensors. What the
#: strategies change (the gradients each rank steps on, its part of the parameters) is the same
#: for every engine; every optimizer's kernel equals the reference in tests/optim.
COMPILED = ("nadam", "lamb")


def engines(strategy: str, name: str) -> tuple[str, ...]:
    """The engines ``name`` is trained with under ``strategy``."""
    return tuple(e for e in ENGINES[strategy] if e != "compiled" or name in COMPILED)


def supported(strategy: str) -> list[str]:
    """The optimizers trained under ``strategy`` (the Trainer's step() takes no closure)."""
    return [name for name in names(closure=False, matrices=False)
            if not refused(name, strategy)]


def refused(name: str, strategy: str) -> bool:
    """Whether make_optimizer refuses ``name`` under ``strategy`` (ZeRO: a step that reduces
    over a group's tensors, Prodigy; FSDP2: one that needs whole tensors, Prodigy, Adafactor,
    LAMB, LARS, SOAP)."""
    try:
        distributed._check_chain(functools.partial(get, name), {}, strategy)
    except ValueError:
        return True
    return False


def problem():
    """A float64 tanh MLP on a fixed 51-example, 3-class problem (rows of 3 and 10 shard
    unevenly over two ranks)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(51, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (51,), generator=gen)
    torch.manual_seed(0)
    f64 = {"dtype": torch.float64}
    model = torch.nn.Sequential(torch.nn.Linear(6, 10, **f64), torch.nn.Tanh(),
                                torch.nn.Linear(10, 3, **f64))
    return model, torch.utils.data.TensorDataset(x, y)


def train(name: str, engine: str, strategy: str | None, epochs: int = EPOCHS,
          checkpoint_dir: str | None = None, resume: bool = False, perturb: bool = False,
          **options) -> tuple[dict[str, torch.Tensor], int]:
    """Train ``name`` on :func:`problem`: the full final state dict (complete on rank 0) and
    the number of training batches this call ran. ``perturb``: every gradient is multiplied by
    1 + 2⁻⁵², a change of one rounding, as two processes' averaging makes (for the
    sensitivity of an optimizer to it)."""
    model, data = problem()
    if perturb:
        for p in model.parameters():
            p.register_hook(lambda g: g * (1 + 2.0**-52))
    if strategy is not None:
        model = distributed.parallelize(model, strategy)
    opt = distributed.make_optimizer(functools.partial(get, name), model.parameters(), strategy,
                                     lr=LR.get(name, 0.05), engine=engine,
                                     **{**OPTIONS.get(name, {}), **options})
    # a schedule per epoch: what the strategies' wrappers keep of the param groups is checked
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    trainer = Trainer(model, opt, torch.nn.functional.cross_entropy, data, batch_size=BATCH,
                      progress=False, seed=3, checkpoint_dir=checkpoint_dir, scheduler=scheduler)
    batches = []
    model.register_forward_hook(lambda *_: batches.append(1))
    trainer.fit(epochs, resume=resume)
    return distributed.model_state(model), len(batches)


def main(output: str, checkpoint_root: str) -> None:
    world = distributed.init_from_env()
    warnings.simplefilter("ignore")
    results = {}
    for strategy, every in ENGINES.items():
        for name in supported(strategy):
            for engine in engines(strategy, name):
                results[(strategy, name, engine)] = train(name, engine, strategy)[0]
        for variant in VARIANTS[strategy]:
            results[(strategy, variant)] = train("adam", every[-1], strategy,
                                                 **VARIANT_OPTIONS[variant])[0]
        for name in RESUMED:
            train(name, every[0], strategy, epochs=1,
                  checkpoint_dir=f"{checkpoint_root}/{strategy}-{name}")
    if world.main:
        torch.save({"world_size": world.size, "results": results}, output)
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
