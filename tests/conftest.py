"""Session setup: under pytest-xdist (``make test`` runs one worker per core) each worker's torch
keeps to its share of the cores. Every worker would otherwise start as many intra-op threads as
the machine has cores: on 2 cores, 2 workers × 2 threads, and a parallel kernel's threads wait
at every barrier for one that the other worker has descheduled — the same run of a small LSTM
took 1.5 s with one thread and up to 17 s with two."""

from __future__ import annotations

import os

import torch


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if os.environ.get("PYTEST_XDIST_WORKER") and workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))
