"""Greedy supervised layer-wise pretraining (Bengio et al., NeurIPS 2007): train block 1 with
an auxiliary classifier head, freeze it, add block 2 with its own head, and so on; then
fine-tune the whole network jointly."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .trainer import Trainer

__all__ = ["greedy_pretrain"]


def greedy_pretrain(blocks: Sequence[nn.Module], heads: Sequence[nn.Module],
                    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
                    loss_fn: Callable, train, *, val=None, epochs_per_block: int = 2,
                    finetune_epochs: int = 2, batch_size: int = 64, seed: int = 0,
                    progress: bool = False) -> tuple[nn.Sequential, list]:
    """Returns the fine-tuned network ``Sequential(*blocks, heads[-1])`` and the histories of
    every stage (one per block, then the fine-tuning). ``heads[i]`` maps block i's output to
    the classes; only the last head is kept."""
    if len(blocks) != len(heads) or not blocks:
        raise ValueError(f"need one head per block, got {len(blocks)} blocks and "
                         f"{len(heads)} heads")
    histories = []
    for i, head in enumerate(heads):
        for frozen in blocks[:i]:
            frozen.requires_grad_(False)
            frozen.eval()
        stage = nn.Sequential(*blocks[: i + 1], head)
        trainable = [p for p in stage.parameters() if p.requires_grad]
        trainer = Trainer(stage, optimizer(trainable), loss_fn, train, val=val,
                          batch_size=batch_size, progress=progress, seed=seed + i)
        histories.append(trainer.fit(epochs_per_block))
    for block in blocks:
        block.requires_grad_(True)
    network = nn.Sequential(*blocks, heads[-1])
    trainer = Trainer(network, optimizer(list(network.parameters())), loss_fn, train, val=val,
                      batch_size=batch_size, progress=progress, seed=seed + len(blocks))
    histories.append(trainer.fit(finetune_epochs))
    return network, histories
