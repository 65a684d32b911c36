"""Activation functions by string id (Keras' names), and Maxout."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..naming import unknown

__all__ = ["Activation", "Maxout", "get", "names"]


class _Exponential(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(x)


class _Softmax(nn.Softmax):
    def __init__(self):
        super().__init__(dim=-1)


class _HardSigmoid(nn.Module):
    """Keras' hard_sigmoid: clip(x/6 + 1/2, 0, 1) (torch's Hardsigmoid is the same function)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.hardsigmoid(x)


_REGISTRY: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU, "selu": nn.SELU, "gelu": nn.GELU, "swish": nn.SiLU, "silu": nn.SiLU,
    "softplus": nn.Softplus, "softsign": nn.Softsign, "hard_sigmoid": _HardSigmoid,
    "exponential": _Exponential, "linear": nn.Identity, "softmax": _Softmax,
}


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str | nn.Module) -> nn.Module:
    """A fresh activation module by id (``"relu"``, ``"swish"``, ...), or a module unchanged."""
    if isinstance(name, nn.Module):
        return name
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(unknown("activation", name, _REGISTRY))
    return _REGISTRY[key]()


Activation = get


class Maxout(nn.Module):
    r"""Maxout (Goodfellow et al., ICML 2013): the maximum of k linear pieces,
    :math:`h_i(x) = \max_{j\le k} (x W_{ij} + b_{ij})`."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features),
                            ("pieces", pieces)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        return y.view(*y.shape[:-1], self.out_features, self.pieces).amax(dim=-1)
