"""Training: the Trainer loop with callbacks, checkpoints and exact resume, and the
meta-algorithms (coordinate descent, dictionary learning, ...)."""

from .checkpoint import latest, load_latest, save_atomic
from .coordinate import BlockCoordinateDescent, DictionaryLearning, objective, sparse_code
from .trainer import Callback, EarlyStopping, History, Trainer, verdict

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "verdict", "save_atomic",
           "load_latest", "latest", "BlockCoordinateDescent", "DictionaryLearning",
           "sparse_code", "objective"]
