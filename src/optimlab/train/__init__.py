"""Training: the Trainer loop with callbacks, checkpoints and exact resume."""

from .checkpoint import latest, load_latest, save_atomic
from .trainer import Callback, EarlyStopping, History, Trainer, verdict

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "verdict", "save_atomic",
           "load_latest", "latest"]
