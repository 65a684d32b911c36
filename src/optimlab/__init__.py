"""optimlab: every deep-learning optimizer, verified against its reference, and a lab to
compare them on real problems."""

from . import optim
from .optim import (
    ADOPT,
    ASGD,
    LARS,
    LBFGS,
    SOAP,
    AdaBelief,
    Adafactor,
    AdEMAMix,
    Lamb,
    Lion,
    Muon,
    Optimizer,
    Prodigy,
    RAdam,
    Rprop,
    ScheduleFreeAdamW,
    ScheduleFreeSGD,
    Yogi,
)

__version__ = "0.1.0"
__all__ = ["optim", "Optimizer", "RAdam", "Rprop", "ASGD", "LBFGS", "ScheduleFreeAdamW",
           "ScheduleFreeSGD", "Prodigy", "Lion", "AdaBelief", "Yogi", "ADOPT", "AdEMAMix",
           "SOAP", "Lamb", "LARS", "Muon", "Adafactor", "__version__"]
