"""Data: preprocessing transformers fitted on training data, on tensors."""

from .preprocessing import PCA, Center, MinMax, Standardize, Transformer, Whiten

__all__ = ["Transformer", "Center", "Standardize", "MinMax", "PCA", "Whiten"]
