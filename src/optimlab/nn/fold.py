"""Fold batch normalization into the preceding Linear or Conv layer for inference."""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

__all__ = ["fold_batchnorm"]

_PAIRS = ((nn.Linear, nn.BatchNorm1d), (nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d),
          (nn.Conv3d, nn.BatchNorm3d))


def _fold(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    r"""Return a copy of ``layer`` computing bn(layer(x)) in eval mode:
    W' = γ/σ · W, b' = γ/σ · (b − μ) + β with σ = √(running_var + ε)."""
    folded = copy.deepcopy(layer)
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(std)
        beta = bn.bias if bn.affine else torch.zeros_like(std)
        scale = gamma / std
        folded.weight.mul_(scale.reshape(-1, *([1] * (folded.weight.dim() - 1))))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + beta
        if folded.bias is None:
            folded.bias = nn.Parameter(new_bias)
        else:
            folded.bias.copy_(new_bias)
    return folded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a Linear/Conv
    layer inside an ``nn.Sequential`` folded into it (and removed); outputs are unchanged."""
    model = copy.deepcopy(model).eval()

    def rewrite(module: nn.Module) -> nn.Module:
        for name, child in module.named_children():
            setattr(module, name, rewrite(child))
        if not isinstance(module, nn.Sequential):
            return module
        items = list(module.named_children())
        out: list[tuple[str, nn.Module]] = []
        i = 0
        while i < len(items):
            name, child = items[i]
            nxt = items[i + 1][1] if i + 1 < len(items) else None
            if nxt is not None and any(isinstance(child, a) and type(nxt) is b
                                       for a, b in _PAIRS) and nxt.track_running_stats:
                out.append((name, _fold(child, nxt)))
                i += 2
            else:
                out.append((name, child))
                i += 1
        return nn.Sequential(OrderedDict(out)) if out else module

    return rewrite(model)
