"""Optimizers: torch.optim-compatible, built from a small algebra of gradient transformations.

``optimlab.optim.Adam(params)`` is a drop-in for ``torch.optim.Adam(params)``;
``flavor="keras"`` reproduces Keras 3; :mod:`optimlab.optim.transforms` builds new ones.
"""

from . import transforms
from .adafactor import Adafactor
from .ftrl import Ftrl
from .lbfgs import LBFGS
from .linesearch import ArmijoLineSearch, ExactLineSearch
from .modern import ADOPT, AdaBelief, AdEMAMix, Lion, Yogi
from .muon import Muon, muon_param_groups
from .optimizer import ENGINES, FLAVORS, NONFINITE_POLICIES, Optimizer
from .prodigy import Prodigy
from .schedulefree import ScheduleFreeAdamW, ScheduleFreeSGD
from .soap import SOAP
from .stepping import needs_closure
from .transforms import chain
from .trust import LARS, Lamb
from .zoo import (
    ASGD,
    REGISTRY,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    NAdam,
    Nadam,
    Nadamax,
    RAdam,
    RMSprop,
    Rprop,
    get,
    names,
)

__all__ = [
    "needs_closure",
    "Optimizer", "transforms", "chain", "get", "names", "REGISTRY", "FLAVORS", "ENGINES",
    "NONFINITE_POLICIES", "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Adamax",
    "NAdam", "Nadam", "Nadamax", "Ftrl", "ArmijoLineSearch", "ExactLineSearch",
    "RAdam", "Rprop", "ASGD", "LBFGS", "ScheduleFreeAdamW", "ScheduleFreeSGD", "Prodigy",
    "Lion", "AdaBelief", "Yogi", "ADOPT", "AdEMAMix", "SOAP", "Lamb", "LARS", "Muon",
    "muon_param_groups", "Adafactor",
]
