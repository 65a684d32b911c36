"""Initialize a whole model by rules, and LSUV, the data-driven initialization."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .initializers import Initializer, Orthogonal, get

__all__ = ["apply", "lsuv", "WEIGHTED_LAYERS"]

#: layers whose weights ``apply`` initializes by default.
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
    nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding, nn.RNNBase,
)

Rule = tuple[str | Initializer | None, str | Initializer | None]


def apply(model: nn.Module, weight: str | Initializer = "glorot_uniform",
          bias: str | Initializer = "zeros", *,
          rules: Mapping[type[nn.Module], Rule] | None = None,
          seed: int | None = None) -> nn.Module:
    """Initialize every layer of ``model`` in place and return it.

    Each module that ``rules`` names (by type, first match wins) gets its (weight, bias) pair;
    other Linear/Conv/Embedding/RNN layers get ``weight`` for their weight matrices and ``bias``
    for their biases. A None in a rule leaves that part as it is; normalization layers are left
    alone unless a rule names them. ``seed`` makes the whole model reproducible.

        apply(model, "he_normal", "zeros", rules={nn.LSTM: ("orthogonal", "zeros")})
    """
    rules = dict(rules or {})
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for module in model.modules():
        rule = next((r for kind, r in rules.items() if isinstance(module, kind)), None)
        if rule is None:
            if not isinstance(module, WEIGHTED_LAYERS):
                continue
            rule = (weight, bias)
        for name, param in module.named_parameters(recurse=False):
            spec = rule[0] if name.startswith("weight") else rule[1] if name.startswith(
                "bias") else None
            if spec is None:
                continue
            initializer = get(spec)
            if gen is not None:
                initializer = _seeded(initializer, int(torch.randint(0, 2**62, (), generator=gen)))
            initializer(param)
    return model


def _seeded(initializer: Initializer, seed: int) -> Initializer:
    import copy

    clone = copy.copy(initializer)
    clone.seed = seed
    return clone


def lsuv(model: nn.Module, inputs: Tensor, *, tol: float = 0.1, max_iters: int = 10,
         seed: int | None = 0) -> list[float]:
    """Layer-sequential unit-variance initialization (Mishkin & Matas, ICLR 2016).

    Orthogonal weights and zero biases first; then, layer by layer in execution order, the
    output of each Linear/Conv layer on ``inputs`` is measured and its weight divided by the
    output's std until |std − 1| < ``tol`` (at most ``max_iters`` rescalings per layer).
    Returns each layer's final output std.
    """
    apply(model, Orthogonal(), "zeros", seed=seed)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d,
                                                           nn.Conv3d))]
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in layers]
    with torch.no_grad():
        model(inputs)
    for h in handles:
        h.remove()
    seen: list[nn.Module] = []
    for m in order:
        if m not in seen:
            seen.append(m)
    stds = []
    captured: dict[str, Tensor] = {}

    def capture(module, args, output):
        captured["out"] = output

    for layer in seen:
        handle = layer.register_forward_hook(capture)
        with torch.no_grad():
            for _ in range(max_iters):
                model(inputs)
                std = captured["out"].std().item()
                if abs(std - 1.0) < tol or std == 0:
                    break
                layer.weight.div_(std)
            model(inputs)
            stds.append(captured["out"].std().item())
        handle.remove()
    return stds
