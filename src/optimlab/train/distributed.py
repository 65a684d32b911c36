"""Data-parallel training on torch.distributed: joining the process group torchrun describes,
spreading a model and its optimizer with DDP, ZeroRedundancyOptimizer or FSDP2, and the full
model and optimizer state, so a checkpoint written once resumes at any number of processes.

Nothing here reimplements torch.distributed: the strategies are torch's own wrappers, and the
full state of an FSDP2 model comes from ``torch.distributed.checkpoint.state_dict``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..optim import stepping
from ..optim.engines import is_dtensor, loaded

__all__ = ["STRATEGIES", "World", "active", "world", "init_from_env", "shutdown", "parallelize",
           "make_optimizer", "unwrap", "is_sharded", "mode", "finish", "model_state",
           "optimizer_state", "load_state", "all_sum", "gather_objects"]

#: how parameters, gradients and optimizer state are spread over the processes
STRATEGIES = ("ddp", "zero", "fsdp")


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` processes; rank 0 logs and writes checkpoints."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def active() -> bool:
    """True inside a torch.distributed process group (of any size)."""
    return dist.is_available() and dist.is_initialized()


def world() -> World:
    """The current process group's rank and size (0 of 1 outside torch.distributed)."""
    if active():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(backend: str = "auto") -> World:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``); gloo on CPU, NCCL when CUDA is there (``"auto"``).
    Without that environment this is a single process and nothing is initialised."""
    if backend not in ("auto", "gloo", "nccl"):
        raise ValueError(f"backend={backend!r} must be 'auto', 'gloo' or 'nccl'")
    if "WORLD_SIZE" not in os.environ or active():
        return world()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run a single process")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return world()


def shutdown() -> None:
    """Leave the process group once every rank is done (a process that exits with it still
    open can abort in gloo's threads at interpreter shutdown)."""
    if active():
        dist.barrier()
        dist.destroy_process_group()


def device() -> torch.device:
    """This process's device: its CUDA device under NCCL, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} must be one of {', '.join(STRATEGIES)}")


def parallelize(model: nn.Module, strategy: str = "ddp") -> nn.Module:
    """``model`` spread over the process group: wrapped in DDP (``"ddp"``, and ``"zero"``,
    whose optimizer :func:`make_optimizer` shards), or sharded with FSDP2's ``fully_shard``
    (each module holding parameters of its own, then the root)."""
    _check_strategy(strategy)
    if not active():
        raise RuntimeError(f"strategy={strategy!r} needs a process group: launch with torchrun "
                           f"(or call init_from_env / torch.distributed.init_process_group)")
    model = model.to(device())
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules())[1:]:
            if any(True for _ in module.parameters(recurse=False)):
                fully_shard(module)
        return fully_shard(model)
    ids = [device().index] if device().type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def make_optimizer(build: Callable[..., torch.optim.Optimizer], params: Iterable[Tensor],
                   strategy: str | None = None, **hyper: Any) -> torch.optim.Optimizer:
    """``build(params, **hyper)``; under ``"zero"`` wrapped in ZeroRedundancyOptimizer, which
    gives each rank the optimizer state of its share of the parameters.

    Refused with a ``ValueError`` naming the fix: an optimizer whose step reduces over all of
    a param group's parameters (Prodigy's estimate of d) under ``"zero"``, where each rank's
    optimizer sees only its partition, and one that needs whole tensors under ``"fsdp"``,
    whose parameters are shards."""
    if strategy is not None:
        _check_strategy(strategy)
    if strategy == "zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer

        if hyper.get("global_clipnorm") is not None:
            raise ValueError(
                f"global_clipnorm={hyper['global_clipnorm']!r} with strategy='zero': each rank's "
                f"optimizer sees only its partition, so its norm is not the global one; clip "
                f"with torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) before "
                f"step, or use strategy 'ddp' or 'fsdp'")

        _check_chain(build, hyper, strategy)
        return ZeroRedundancyOptimizer(params, optimizer_class=build, **hyper)
    if strategy == "fsdp":
        _check_chain(build, hyper, strategy)
    return build(params, **hyper)


def _check_chain(build: Callable[..., torch.optim.Optimizer], hyper: dict[str, Any],
                 strategy: str) -> None:
    """Refuse an optimizer whose chain the strategy cannot run as one process would (see
    :func:`make_optimizer`), built on a probe parameter (its state is made lazily)."""
    probe = build([nn.Parameter(torch.zeros(1))], **hyper)
    chain, name = getattr(probe, "chain", None), type(probe).__name__
    if strategy == "zero" and chain is not None and chain.reduces:
        raise ValueError(
            f"{name} with strategy='zero': its step reduces over all of a param group's "
            f"parameters, and each rank's optimizer sees only its partition, so the result "
            f"would not be the global one; use strategy 'ddp'")
    if strategy == "fsdp" and chain is not None and chain.scope == "tensor":
        raise ValueError(
            f"{name} with strategy='fsdp': its step needs whole tensors, and FSDP2's "
            f"parameters are shards; use strategy 'ddp'")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 shards in place: nothing to unwrap)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_sharded(model: nn.Module) -> bool:
    """True when the parameters are DTensor shards (FSDP2)."""
    return any(is_dtensor(p) for p in model.parameters())


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _is_zero(optimizer: torch.optim.Optimizer) -> bool:
    zero = loaded("torch.distributed.optim", "ZeroRedundancyOptimizer")
    return zero is not None and isinstance(optimizer, zero)


def mode(optimizer: torch.optim.Optimizer, training: bool) -> None:
    """:func:`~optimlab.optim.stepping.mode` under any strategy (see :func:`_per_partition`)."""
    _per_partition(optimizer, lambda local: stepping.mode(local, training))


def finish(optimizer: torch.optim.Optimizer) -> None:
    """:func:`~optimlab.optim.stepping.finish` under any strategy (see :func:`_per_partition`)."""
    _per_partition(optimizer, stepping.finish)


def _per_partition(optimizer: torch.optim.Optimizer,
                   act: Callable[[torch.optim.Optimizer], None]) -> None:
    """``act(optimizer)``, which may move parameters in place. Under ZeroRedundancyOptimizer
    each rank's optimizer acts on the parameters of its partition, with the param groups
    synchronized around it as the wrapper's step does (the wrapper's settings, a scheduler's
    learning rate, into the local groups first; the local ones, a mode, back after), and every
    rank then gets every partition's parameters from their owner, as after a step (a
    collective: every rank calls it)."""
    if not _is_zero(optimizer):
        act(optimizer)
        return
    local = optimizer.optim
    optimizer._sync_param_groups(optimizer.param_groups, local.param_groups)
    act(local)
    optimizer._sync_param_groups(local.param_groups, optimizer.param_groups)
    optimizer._sync_params()


def model_state(model: nn.Module) -> dict[str, Any]:
    """The whole model's state dict, without the DDP prefix; FSDP2 shards are gathered (a
    collective: every rank calls it; rank 0 gets the tensors)."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=_full_options())
    return unwrap(model).state_dict()


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The whole optimizer state; ZeroRedundancyOptimizer's partitions are consolidated on
    rank 0 and FSDP2's shards gathered (collectives: every rank calls it)."""
    if _is_zero(optimizer):
        optimizer.consolidate_state_dict(to=0)
        return optimizer.state_dict() if world().main else {}
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=_full_options())
    return optimizer.state_dict()


def load_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict[str, Any],
               optimizer_sd: dict[str, Any]) -> None:
    """Load a full state written by :func:`model_state` / :func:`optimizer_state` at any number
    of processes: each rank keeps its share (ZeRO partition, FSDP2 shard)."""
    fqn_keyed = any(isinstance(k, str) for k in optimizer_sd.get("state", {}))
    sharded = is_sharded(model)
    if sharded or fqn_keyed:
        from torch.distributed.checkpoint.state_dict import set_state_dict

        if not optimizer.state and hasattr(optimizer, "init_state"):
            optimizer.init_state()  # else torch would take a step at lr = 0 (Ftrl divides by lr)
        set_state_dict(model, optimizer, model_state_dict=model_sd,
                       optim_state_dict=optimizer_sd,
                       options=_full_options() if sharded else None)
        return
    unwrap(model).load_state_dict(model_sd)
    optimizer.load_state_dict(optimizer_sd)


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over the processes (float64; unchanged when alone)."""
    if world().size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (``[obj]`` when alone)."""
    if world().size == 1:
        return [obj]
    out: list[Any] = [None] * world().size
    dist.all_gather_object(out, obj)
    return out
