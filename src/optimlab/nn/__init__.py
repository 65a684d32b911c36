"""Layers: activations by string id, Maxout, batch-norm folding."""

from .activations import Activation, Maxout, get, names
from .fold import fold_batchnorm

__all__ = ["Activation", "Maxout", "get", "names", "fold_batchnorm"]
