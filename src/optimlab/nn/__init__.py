"""Layers: activations by string id, Maxout, batch-norm folding, and model builders."""

from .activations import Activation, Maxout, get, names
from .fold import fold_batchnorm
from .language import LSTMLanguageModel, SkipGram, TransformerLanguageModel
from .models import MLP, SmallCNN

__all__ = ["Activation", "Maxout", "get", "names", "fold_batchnorm", "MLP", "SmallCNN",
           "LSTMLanguageModel", "TransformerLanguageModel", "SkipGram"]
