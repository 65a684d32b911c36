"""Data: preprocessing transformers fitted on training data, datasets that work offline, and
loaders for full-batch, mini-batch and stochastic training."""

from .datasets import (
    DATASETS,
    Split,
    Splits,
    digits,
    loader,
    mnist,
    moons,
    noisy_quadratic,
    teacher_student,
    torchvision_dataset,
)
from .preprocessing import PCA, Center, MinMax, Standardize, Transformer, Whiten
from .text import Corpus, NegativeSampler, default_text, skipgram_pairs, text_corpus

__all__ = [
    "Transformer", "Center", "Standardize", "MinMax", "PCA", "Whiten", "Split", "Splits",
    "digits", "mnist", "moons", "noisy_quadratic", "teacher_student", "torchvision_dataset",
    "loader", "DATASETS", "Corpus", "text_corpus", "default_text", "skipgram_pairs",
    "NegativeSampler",
]
