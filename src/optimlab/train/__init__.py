"""Training: the Trainer loop with callbacks, checkpoints and exact resume, and the
meta-algorithms (coordinate descent, dictionary learning, ...)."""

from . import distributed
from .checkpoint import latest, load_latest, save_atomic
from .continuation import Continuation
from .coordinate import BlockCoordinateDescent, DictionaryLearning, objective, sparse_code
from .curriculum import CurriculumSampler, pacing, score_by_confidence, score_by_loss
from .pretraining import greedy_pretrain
from .trainer import Callback, EarlyStopping, History, Trainer, verdict

__all__ = ["distributed", "Trainer", "History", "Callback", "EarlyStopping", "verdict",
           "save_atomic", "load_latest", "latest", "BlockCoordinateDescent", "DictionaryLearning",
           "sparse_code", "objective", "Continuation", "CurriculumSampler", "pacing",
           "score_by_loss", "score_by_confidence", "greedy_pretrain"]
