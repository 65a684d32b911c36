"""The default quick suite (``optimlab run``, ``make run``): every optimizer on the 2-D
surfaces, the noisy quadratic and digits, the property table, the ablation and the animations,
written as one report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from .properties import measure
from .protocol import sweep
from .report import Report, write
from .store import GRACE

__all__ = ["suite", "SURFACES", "TASKS", "LRS"]

SURFACES = ("rosenbrock", "beale")
TASKS = ("noisy_quadratic", "digits_mlp")
#: 7 learning rates, half a decade apart
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def suite(out: str = "report", *, optimizers: Sequence[str] | None = None,
          surfaces: Sequence[str] = SURFACES, tasks: Sequence[str] = TASKS,
          lrs: Sequence[float] = LRS, surface_steps: int = 500, seeds: int = 2,
          storage: str | None = None, workers: int = 1, grace: int = GRACE,
          animate: Sequence[str] = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "nadam"),
          ablation_seeds: int = 2, ablation_epochs: int = 12,
          on_run: Callable[[object], None] | None = None) -> str:
    """Run the suite and write ``out/index.html`` (with runs.csv and runs.json); returns its
    path. The sweep's runs are stored in ``storage`` (a SQLAlchemy URL; default
    ``out/runs.db``, so an interrupted suite resumes; "none": in memory), shared by ``workers``
    processes; ``grace``: as :func:`~optimlab.lab.protocol.sweep`'s."""
    from ..optim import names
    from .animate import animate_saddle, animate_surface, learning_rate_figure

    start = time.perf_counter()
    os.makedirs(os.path.join(out, "animations"), exist_ok=True)
    # the loops call step() alone; Muon is not applicable on the surfaces and the quadratic
    # (no matrix), combined with AdamW on digits (lab.construct)
    optimizers = list(optimizers or names(closure=False))
    storage = storage or f"sqlite:///{os.path.abspath(os.path.join(out, 'runs.db'))}"
    report = Report()
    report.summaries = sweep([*surfaces, *tasks], optimizers, list(lrs), seeds=seeds,
                             steps=surface_steps, on_run=on_run, storage=storage,
                             workers=workers, grace=grace)
    report.properties = measure(optimizers)
    if ablation_seeds:
        from .ablation import ablate

        report.ablation = ablate(ablation_seeds, ablation_epochs)
    if animate:
        folder = os.path.join(out, "animations")
        report.animations = [
            animate_surface(surfaces[0], list(animate), os.path.join(folder, "surface.gif"),
                            steps=200),
            animate_saddle(list(animate), os.path.join(folder, "saddle.gif"), steps=200),
            learning_rate_figure(os.path.join(folder, "learning_rates.png"))]
    report.seconds = time.perf_counter() - start
    return write(report, out)
