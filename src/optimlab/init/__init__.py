"""Initialization: initializers by class or string id, whole-model rules, LSUV, diagnostics."""

from .apply import apply, lsuv
from .diagnostics import Diagnosis, LayerStats, diagnose
from .initializers import (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    Initializer,
    KaimingNormal,
    KaimingUniform,
    LecunNormal,
    LecunUniform,
    Ones,
    Orthogonal,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
    Zeros,
    fans,
    gain,
    get,
    names,
)

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "GlorotNormal", "GlorotUniform", "XavierNormal",
    "XavierUniform", "HeNormal", "HeUniform", "KaimingNormal", "KaimingUniform", "LecunNormal",
    "LecunUniform", "Orthogonal", "Identity", "fans", "gain", "get", "names", "apply", "lsuv",
    "diagnose", "Diagnosis", "LayerStats",
]
