"""Sweeps in a database: a sweep SIGKILLed mid-run and re-run completes exactly the planned
runs; two workers share one sweep with none lost or duplicated.

No assertion depends on how fast the machine is: waits end on events (a run held, runs
completed, a process exiting), with time limits only against a hang, far beyond what a loaded
machine needs; a run redone because a live worker's heartbeat came late is allowed (the store's
module docstring). The sweep is small (8 runs of 300 steps on the noisy quadratic) and its
grace short (GRACE_ARGS), so that a killed run is taken over within seconds.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from optimlab.cli import main
from optimlab.lab.store import Store

LRS = [0.3, 0.03]
SEEDS = 2
#: three heartbeats (the store sends one every 2 s): a dead worker's run is redone 6 s after
#: its last one, and a live one whose heartbeat is that late has its run redone (allowed)
GRACE_ARGS = ["--grace", "6"]
ARGS = ["compare", "--problems", "noisy_quadratic", "--optimizers", "sgd,adam", "--lrs",
        ",".join(map(str, LRS)), "--seeds", str(SEEDS), "--quiet", *GRACE_ARGS]
PLANNED = 2 * len(LRS) + 2 * SEEDS  # tuning runs (seed 0) + the seeds of each optimizer's best
HANG = 1800  # seconds: a sweep command taking longer has hung (it takes seconds)
HELD = Path(__file__).with_name("held_sweep.py")
#: the sweep commands' environment: one intra-op thread (see the one_thread fixture)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*extra):
    return [sys.executable, "-m", "optimlab.cli", *ARGS, *extra]


def _held(after: int, *extra) -> subprocess.Popen:
    """The sweep command in a process that holds its run after ``after`` completed ones."""
    return subprocess.Popen([sys.executable, str(HELD), str(after), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=ENV)


def _until_held(proc: subprocess.Popen) -> None:
    """Wait until ``proc`` (:func:`_held`) is inside its held run."""
    deadline, out = time.time() + HANG, b""
    while time.time() < deadline and b"HELD" not in out:
        if select.select([proc.stdout], [], [], 1.0)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
    assert b"HELD" in out, f"the sweep never held a run (exit code {proc.poll()})"


def _completed(url):
    return [k for s in _studies(url) for k in s.keys(TrialState.COMPLETE)]


def _studies(url):
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(url)]
    return [Store(url, name) for name in names]


def _running(url):
    return [t for s in _studies(url) for t in s._trials(TrialState.RUNNING)]


def _state(url, trial_id):
    return next(t.state for s in _studies(url) for t in s._trials() if t._trial_id == trial_id)


def test_killed_sweep_resumes_without_redoing_or_losing_runs(tmp_path, one_thread):
    url = f"sqlite:///{tmp_path}/runs.db"
    proc = _held(2, "--storage", url, "--report", "none")
    try:
        _until_held(proc)
        (killed,) = _running(url)  # killed mid-sweep, inside its third run
        assert len(_completed(url)) == 2
        assert killed.user_attrs["worker"].endswith(f":{proc.pid}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # the same command again, here: it finishes the sweep, the killed run included once its
    # heartbeat is stale
    assert main([*ARGS, "--storage", url, "--report", "none"]) == 0
    keys = _completed(url)
    assert len(keys) == PLANNED and max(Counter(keys).values()) == 1
    assert _state(url, killed._trial_id) == TrialState.FAIL


def test_two_workers_share_one_sweep(tmp_path):
    url = f"sqlite:///{tmp_path}/runs.db"
    result = subprocess.run(_cli("--storage", url, "--workers", "2", "--report", "none"),
                            stdout=subprocess.DEVNULL, timeout=HANG, env=ENV)
    assert result.returncode == 0
    keys = _completed(url)
    assert len(keys) == PLANNED and max(Counter(keys).values()) == 1


def test_heartbeat_and_grace_are_checked(tmp_path):
    url = f"sqlite:///{tmp_path}/runs.db"
    with pytest.raises(ValueError, match=r"grace=3 must be an integer >= 4 \(seconds, two "):
        Store(url, "sweep", grace=3)
    with pytest.raises(ValueError, match=r"heartbeat=0 must be an integer >= 1"):
        Store(url, "sweep", heartbeat=0)
    with pytest.raises(ValueError, match=r"grace=10.5 must be an integer >= 4"):
        Store(url, "sweep", grace=10.5)
