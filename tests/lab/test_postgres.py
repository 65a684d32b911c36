"""Sweeps shared through a real PostgreSQL server (``.ci/run`` starts one with .ci/postgres and
sets OPTIMLAB_TEST_POSTGRES): three independent ``optimlab compare`` commands complete one
sweep with no run lost or duplicated, and one killed mid-run leaves it to the others.

As in test_store.py, nothing here depends on the machine's speed: a run failed because a live
worker's heartbeat came late is allowed, as long as every run completes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections import Counter

import pytest
from optuna.trial import TrialState

from .test_store import ENV, HANG, PLANNED, _cli, _held, _studies, _until_held

URL = os.environ.get("OPTIMLAB_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(
    URL is None, reason='no PostgreSQL server: eval "$(.ci/postgres)" starts one')


@pytest.fixture
def database():
    """A fresh database on the server for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"optimlab_{uuid.uuid4().hex[:12]}"
    server = make_url(URL)

    def admin(sql):
        with psycopg.connect(host=server.host, port=server.port, user=server.username,
                             dbname=server.database, autocommit=True) as connection:
            connection.execute(sql)

    admin(f"CREATE DATABASE {name}")
    yield server.set(database=name).render_as_string(hide_password=False)
    admin(f"DROP DATABASE {name} WITH (FORCE)")


def _trials(url):
    return [t for store in _studies(url) for t in store._trials()]


def _state(url, trial_id):
    return next(t.state for t in _trials(url) if t._trial_id == trial_id)


def _workers(url, count):
    return [subprocess.Popen(_cli("--storage", url, "--report", "none"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
            for _ in range(count)]


def _finish(procs):
    for proc in procs:
        _, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 0, err.decode()[-2000:]


def _done_once(url):
    keys = [t.user_attrs["key"] for t in _trials(url) if t.state == TrialState.COMPLETE]
    assert len(keys) == PLANNED and max(Counter(keys).values()) == 1


def test_three_workers_share_one_sweep(database):
    _finish(_workers(database, 3))
    _done_once(database)
    assert {t.state for t in _trials(database)} <= {TrialState.COMPLETE, TrialState.FAIL}


def test_a_worker_killed_mid_run_leaves_the_sweep_to_the_others(database):
    # three workers, each held inside its first run: one is killed there, the others go on
    procs = [_held(0, "--storage", database, "--report", "none") for _ in range(3)]
    victim, others = procs[0], procs[1:]
    try:
        for proc in procs:
            _until_held(proc)
        running = {t.user_attrs["worker"].rpartition(":")[2]: t for t in _trials(database)
                   if t.state == TrialState.RUNNING}
        assert sorted(running) == sorted(str(proc.pid) for proc in procs)
        killed = running[str(victim.pid)]
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        for proc in others:
            os.kill(proc.pid, signal.SIGUSR1)
        _finish(others)
    _done_once(database)
    # the killed worker's run went stale (failed by its missing heartbeat) and was re-run
    assert _state(database, killed._trial_id) == TrialState.FAIL
