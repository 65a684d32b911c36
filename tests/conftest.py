"""Session setup: under pytest-xdist (``make test`` runs one worker per core) each worker's torch,
and the processes its tests start, keep to the worker's share of the cores. Every process would
otherwise start as many intra-op threads as the machine has cores: on 2 cores, 2 workers × 2
threads, and a parallel kernel's threads wait at every barrier for one that the other worker
has descheduled — the same run of a small LSTM took 1.5 s with one thread and up to 17 s with
two. A test that sets ``OMP_NUM_THREADS`` for its subprocesses (the scaling benchmark's
configurations) still does; one set for the whole session is left as it is."""

from __future__ import annotations

import os

import torch


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if os.environ.get("PYTEST_XDIST_WORKER") and workers and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the processes the tests start
        torch.set_num_threads(threads)
