"""Weight initializers, Keras' set in torch's layouts, by class or by string id.

Fans follow torch's weight layouts: Linear (out, in), Conv (out, in/groups, *kernel), so
fan_in = in·∏kernel and fan_out = out·∏kernel (Keras' kernels are (in, out): the same formulas
with the axes swapped). A 1-D tensor (a bias) has fan_in = fan_out = its length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..naming import unknown

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "GlorotNormal", "GlorotUniform", "XavierNormal",
    "XavierUniform", "HeNormal", "HeUniform", "KaimingNormal", "KaimingUniform", "LecunNormal",
    "LecunUniform", "Orthogonal", "Identity", "fans", "gain", "get", "names",
]

#: std of a standard normal truncated to [−2, 2] (Keras' truncated_normal correction).
TRUNCATED_STD = 0.87962566103423978


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape in torch's layout."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def gain(activation: str, param: float | None = None) -> float:
    """The recommended gain for an activation (torch.nn.init.calculate_gain's values)."""
    name = activation.lower()
    if name in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d", "softmax",
                "exponential", "softsign"):
        return 1.0
    if name == "tanh":
        return 5.0 / 3
    if name in ("relu", "elu", "gelu", "swish", "silu", "softplus"):
        return math.sqrt(2.0)
    if name == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if name == "selu":
        return 3.0 / 4
    raise ValueError(f"no gain is known for activation={activation!r}")


@dataclass
class Initializer:
    """Fills a tensor in place; ``seed`` makes it reproducible."""

    seed: int | None = field(default=None, kw_only=True)

    def __call__(self, tensor: Tensor) -> Tensor:
        with torch.no_grad():
            gen = None
            if self.seed is not None:
                gen = torch.Generator(device=tensor.device).manual_seed(self.seed)
            self.fill(tensor, gen)
        return tensor

    def fill(self, tensor: Tensor, gen: torch.Generator | None) -> None:
        raise NotImplementedError

    def expected_std(self, shape: tuple[int, ...]) -> float:
        """The standard deviation the formula gives for a tensor of this shape."""
        raise NotImplementedError

    def expected_mean(self, shape: tuple[int, ...]) -> float:
        return 0.0


@dataclass
class Constant(Initializer):
    value: float = 0.0

    def fill(self, tensor, gen):
        tensor.fill_(self.value)

    def expected_std(self, shape):
        return 0.0

    def expected_mean(self, shape):
        return self.value


@dataclass
class Zeros(Constant):
    value: float = 0.0


@dataclass
class Ones(Constant):
    value: float = 1.0


def _truncated_normal(tensor: Tensor, std: float, mean: float, gen) -> None:
    """N(mean, std²) truncated to mean ± 2·std (not rescaled), as Keras' TruncatedNormal."""
    torch.nn.init.trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=gen)
    tensor.mul_(std).add_(mean)


@dataclass
class RandomNormal(Initializer):
    mean: float = 0.0
    stddev: float = 0.05

    def fill(self, tensor, gen):
        tensor.normal_(self.mean, self.stddev, generator=gen)

    def expected_std(self, shape):
        return self.stddev

    def expected_mean(self, shape):
        return self.mean


@dataclass
class RandomUniform(Initializer):
    minval: float = -0.05
    maxval: float = 0.05

    def fill(self, tensor, gen):
        tensor.uniform_(self.minval, self.maxval, generator=gen)

    def expected_std(self, shape):
        return (self.maxval - self.minval) / math.sqrt(12)

    def expected_mean(self, shape):
        return (self.maxval + self.minval) / 2


@dataclass
class TruncatedNormal(Initializer):
    """N(mean, stddev²) with values beyond two standard deviations redrawn."""

    mean: float = 0.0
    stddev: float = 0.05

    def fill(self, tensor, gen):
        _truncated_normal(tensor, self.stddev, self.mean, gen)

    def expected_std(self, shape):
        return self.stddev * TRUNCATED_STD

    def expected_mean(self, shape):
        return self.mean


MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


@dataclass
class VarianceScaling(Initializer):
    r"""Samples with variance ``scale / n``, n the fan of ``mode``.

    ``truncated_normal``: N(0, σ²) truncated at ±2σ with σ = √(scale/n)/0.8796 so the variance is
    scale/n; ``untruncated_normal``: σ = √(scale/n); ``uniform``: U(−l, l), l = √(3·scale/n).
    Reference: Keras ``VarianceScaling``; He et al. 2015; Glorot & Bengio 2010; LeCun et al. 1998.
    """

    scale: float = 1.0
    mode: str = "fan_in"
    distribution: str = "truncated_normal"

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"scale={self.scale!r} must be > 0")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution={self.distribution!r} is not one of "
                             f"{', '.join(DISTRIBUTIONS)}")

    def variance(self, shape) -> float:
        fan_in, fan_out = fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return self.scale / max(1.0, n)

    def fill(self, tensor, gen):
        variance = self.variance(tensor.shape)
        if self.distribution == "truncated_normal":
            _truncated_normal(tensor, math.sqrt(variance) / TRUNCATED_STD, 0.0, gen)
        elif self.distribution == "untruncated_normal":
            tensor.normal_(0.0, math.sqrt(variance), generator=gen)
        else:
            limit = math.sqrt(3.0 * variance)
            tensor.uniform_(-limit, limit, generator=gen)

    def expected_std(self, shape):
        return math.sqrt(self.variance(shape))


def _preset(name: str, scale: float, mode: str, distribution: str, doc: str):
    def __init__(self, gain: float = 1.0, *, seed: int | None = None):
        VarianceScaling.__init__(self, scale * gain**2, mode, distribution, seed=seed)

    return type(name, (VarianceScaling,), {"__init__": __init__, "__doc__": doc})


GlorotNormal = _preset("GlorotNormal", 1.0, "fan_avg", "truncated_normal",
                       "Glorot/Xavier normal: variance gain²·2/(fan_in + fan_out) "
                       "(Glorot & Bengio, AISTATS 2010).")
GlorotUniform = _preset("GlorotUniform", 1.0, "fan_avg", "uniform",
                        "Glorot/Xavier uniform: U(−l, l), l = gain·√(6/(fan_in + fan_out)).")
HeNormal = _preset("HeNormal", 2.0, "fan_in", "truncated_normal",
                   "He/Kaiming normal: variance 2/fan_in (He et al., ICCV 2015).")
HeUniform = _preset("HeUniform", 2.0, "fan_in", "uniform",
                    "He/Kaiming uniform: U(−l, l), l = √(6/fan_in).")
LecunNormal = _preset("LecunNormal", 1.0, "fan_in", "truncated_normal",
                      "LeCun normal: variance 1/fan_in (LeCun et al. 1998; for SELU).")
LecunUniform = _preset("LecunUniform", 1.0, "fan_in", "uniform",
                       "LeCun uniform: U(−l, l), l = √(3/fan_in).")
XavierNormal, XavierUniform = GlorotNormal, GlorotUniform
KaimingNormal, KaimingUniform = HeNormal, HeUniform


@dataclass
class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``: WᵀW = gain²·I (or WWᵀ), tensors flattened to
    (shape[0], ∏shape[1:]). Reference: Saxe, McClelland, Ganguli, ICLR 2014."""

    gain: float = 1.0

    def fill(self, tensor, gen):
        if tensor.dim() < 2:
            raise ValueError(f"Orthogonal needs a tensor of at least 2 dimensions, got shape "
                             f"{tuple(tensor.shape)}")
        rows, cols = tensor.shape[0], tensor.numel() // tensor.shape[0]
        flat = torch.randn(max(rows, cols), min(rows, cols), generator=gen,
                           dtype=torch.float64, device=tensor.device)
        q, r = torch.linalg.qr(flat)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # a uniform (Haar) distribution
        if rows < cols:
            q = q.T
        tensor.copy_((self.gain * q).reshape(tensor.shape))

    def expected_std(self, shape):
        rows, cols = shape[0], math.prod(shape[1:])
        return self.gain * math.sqrt(min(rows, cols) / (rows * cols))


@dataclass
class Identity(Initializer):
    """``gain`` times the identity matrix (2-D tensors; rectangular ones get ones on the
    diagonal)."""

    gain: float = 1.0

    def fill(self, tensor, gen):
        if tensor.dim() != 2:
            raise ValueError(f"Identity needs a 2-D tensor, got shape {tuple(tensor.shape)}")
        tensor.copy_(self.gain * torch.eye(*tensor.shape, dtype=tensor.dtype,
                                           device=tensor.device))

    def expected_std(self, shape):
        n, k = shape[0] * shape[1], min(shape)
        mean = self.gain * k / n
        return math.sqrt(self.gain**2 * k / n - mean**2)

    def expected_mean(self, shape):
        return self.gain * min(shape) / (shape[0] * shape[1])


_REGISTRY = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "normal": RandomNormal, "random_uniform": RandomUniform, "uniform": RandomUniform,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_normal": GlorotNormal, "glorot_uniform": GlorotUniform,
    "xavier_normal": GlorotNormal, "xavier_uniform": GlorotUniform, "he_normal": HeNormal,
    "he_uniform": HeUniform, "kaiming_normal": HeNormal, "kaiming_uniform": HeUniform,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform, "orthogonal": Orthogonal,
    "identity": Identity,
}
#: what ``"name:x"`` sets: ``"normal:0.01"`` is RandomNormal(stddev=0.01).
_SHORTHAND = {"normal": "stddev", "random_normal": "stddev", "truncated_normal": "stddev",
              "constant": "value", "uniform": "maxval", "random_uniform": "maxval",
              "orthogonal": "gain", "identity": "gain", "glorot_normal": "gain",
              "glorot_uniform": "gain", "xavier_normal": "gain", "xavier_uniform": "gain",
              "he_normal": "gain", "he_uniform": "gain", "kaiming_normal": "gain",
              "kaiming_uniform": "gain", "lecun_normal": "gain", "lecun_uniform": "gain"}


def names() -> list[str]:
    return list(_REGISTRY)


def get(spec: str | Initializer, **kwargs) -> Initializer:
    """An initializer by string id: ``get("he_normal")``, ``get("normal:0.01")`` (a number after
    the colon sets the main parameter: std, value, limit or gain), or an instance unchanged."""
    if isinstance(spec, Initializer):
        return spec
    name, _, number = spec.strip().lower().partition(":")
    if name not in _REGISTRY:
        raise ValueError(unknown("initializer", spec, _REGISTRY))
    if number:
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"initializer {spec!r}: {number!r} is not a number") from None
        if name not in _SHORTHAND:
            raise ValueError(f"initializer {name!r} takes no number after ':'")
        key = _SHORTHAND[name]
        if key in ("stddev", "gain", "maxval") and not value >= 0:  # a spread or a scale
            raise ValueError(f"initializer {spec!r}: its {key} {number} must be >= 0")
        kwargs.setdefault(key, value)
        if key == "maxval":
            kwargs.setdefault("minval", -value)
    return _REGISTRY[name](**kwargs)
