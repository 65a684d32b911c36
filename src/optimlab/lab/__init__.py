"""The lab: problems to optimize and the protocol that compares optimizers on them."""

from .compare import Result, compare
from .problems import SURFACES, Surface

__all__ = ["Surface", "SURFACES", "compare", "Result"]
