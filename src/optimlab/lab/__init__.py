"""The lab: problems to optimize and the protocol that compares optimizers on them."""

from .problems import SURFACES, Run, Surface
from .protocol import Summary, sweep
from .tasks import TASKS, Task

__all__ = ["Surface", "SURFACES", "Task", "TASKS", "Run", "Summary", "sweep"]
