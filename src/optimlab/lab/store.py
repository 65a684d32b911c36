"""Where a sweep's runs live: an Optuna study in a relational database — an embedded SQLite
file by default, any SQLAlchemy URL (PostgreSQL, ...) to share a sweep between processes or
machines.

A coordinator *plans* runs by enqueueing them as waiting trials (each a key and its settings);
any number of workers pop them with Optuna's atomic ``ask`` and store each result with the
trial. Workers send heartbeats: a trial whose worker died (SIGKILL included) is failed after the
grace period and re-enqueued by Optuna's ``RetryHeartbeatStaleTrialCallback``, so re-running the
same command finishes the sweep with every planned run done exactly once.

The timings (:data:`HEARTBEAT`, :data:`GRACE`) are generous: a live worker's heartbeat may come
late — a loaded machine delays its thread, another process holds the database's lock, and
SQLite's timestamps have one-second resolution — and must not pass for a dead worker's. Should
one still do so, nothing is lost or done twice: the late worker's result is dropped (Optuna
refuses to complete a failed trial) and the re-enqueued copy is run once.

Several commands, on one machine or several, may share a sweep (``--storage postgresql://…``):
each plans under the database's own lock (a PostgreSQL advisory lock; an exclusive lock on a
file beside an SQLite database), so a run is enqueued once however many plan it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Store", "run_key", "study_name", "HEARTBEAT", "GRACE"]

#: seconds between a worker's heartbeats.
HEARTBEAT = 2
#: seconds without a heartbeat after which a running trial is its dead worker's: 15 heartbeats,
#: so that only a worker stalled for half a minute is mistaken for a dead one (and even then
#: nothing is lost, see the module's docstring); a sweep re-run after a crash waits this long
#: for the crashed run. A shorter grace (``grace=``, ``--grace``) takes over a dead worker's
#: run sooner; at least two heartbeats.
GRACE = 30


@functools.cache
def quiet_optuna():
    """Optuna, its logging (process-wide) set once to errors only: it warns of a failed trial
    with the error's traceback, and every error of a run reaches the caller anyway (the studies
    catch none); an interrupt (Ctrl-C) printed the KeyboardInterrupt's traceback before the
    command's own message. Also silences its informational line per finished trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def _storage_class():
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    class Storage(RDBStorage):
        """Optuna's RDBStorage, whose ``ask`` records the trial's first heartbeat at once: a
        worker killed between taking a trial and its heartbeat thread's first beat would
        otherwise leave a running trial that no heartbeat check ever fails."""

        def set_trial_state_values(self, trial_id, state, values=None):
            changed = super().set_trial_state_values(trial_id, state, values)
            if changed and state == TrialState.RUNNING and self.heartbeat_interval:
                self.record_heartbeat(trial_id)
            return changed

    return Storage


def study_name(kind: str, *config) -> str:
    """A sweep's name from its settings: the same command resumes the same study."""
    digest = hashlib.sha1(json.dumps(config).encode()).hexdigest()[:12]
    return f"{kind}-{digest}"


def run_key(run: dict[str, Any]) -> str:
    """A planned run's key in its sweep: problem, optimizer, learning rate, seed, flavor."""
    return f"{run['problem']}|{run['optimizer']}|{run['lr']!r}|{run['seed']}|{run['flavor']}"


class Store:
    """One sweep (an Optuna study) in the database at ``url``.

    Args:
        url: SQLAlchemy URL; ``sqlite:///path.db`` for a file.
        study: the sweep's name (the same command → the same name → resume).
        heartbeat: seconds between a worker's heartbeats (an integer ≥ 1).
        grace: seconds without a heartbeat after which a running trial is failed and its run
            re-enqueued (an integer ≥ 2 × ``heartbeat``).
    """

    def __init__(self, url: str, study: str, *, heartbeat: int = HEARTBEAT,
                 grace: int = GRACE):
        import warnings

        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat < 1:
            raise ValueError(f"heartbeat={heartbeat!r} must be an integer >= 1 (seconds)")
        if isinstance(grace, bool) or not isinstance(grace, int) or grace < 2 * heartbeat:
            raise ValueError(f"grace={grace!r} must be an integer >= {2 * heartbeat} (seconds, "
                             f"two heartbeats of {heartbeat} s)")

        from optuna.storages import RetryHeartbeatStaleTrialCallback

        optuna = quiet_optuna()
        engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        for attempt in range(10):
            try:
                with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self.storage = _storage_class()(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                        grace_period=grace,
                        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                            max_retry=None))
                self.study = optuna.create_study(study_name=study, storage=self.storage,
                                                 load_if_exists=True, direction="minimize")
                break
            except (IntegrityError, ProgrammingError) as error:
                # another process is creating the same schema or study: use theirs
                if attempt == 9:
                    raise ConnectionError(f"cannot open storage {url!r}: {error}") from None
                time.sleep(0.2 * (attempt + 1))
            except Exception as error:
                raise ConnectionError(f"cannot open storage {url!r}: "
                                      f"{type(error).__name__}: {error}") from None
        self.url, self.name, self.heartbeat, self.grace = url, study, heartbeat, grace

    def _trials(self, *states):
        from optuna.trial import TrialState

        wanted = states or tuple(TrialState)
        return [t for t in self.study.get_trials(deepcopy=False, states=wanted)
                if "key" in t.user_attrs]

    def keys(self, *states) -> list[str]:
        return [t.user_attrs["key"] for t in self._trials(*states)]

    def plan(self, runs: list[dict[str, Any]]) -> int:
        """Enqueue the runs whose key is not already waiting, running or complete; returns how
        many were added. Any number of processes may plan the same runs."""
        from optuna.trial import TrialState

        with self._planning():
            present = set(self.keys(TrialState.WAITING, TrialState.RUNNING,
                                    TrialState.COMPLETE))
            added = 0
            for run in runs:
                key = run_key(run)
                if key not in present:
                    self.study.enqueue_trial({}, user_attrs={"key": key,
                                                             "run": json.dumps(run)})
                    present.add(key)
                    added += 1
        return added

    @contextlib.contextmanager
    def _planning(self) -> Iterator[None]:
        """Hold the database's lock for this study while planning: other planners wait."""
        engine = self.storage.engine
        if engine.dialect.name == "postgresql":
            from sqlalchemy import text

            key = int(hashlib.sha1(self.name.encode()).hexdigest()[:15], 16)  # a bigint
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        elif engine.dialect.name == "sqlite" and engine.url.database not in (None, ":memory:"):
            import fcntl

            with open(f"{engine.url.database}.plan-lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        else:  # other databases: plan from one process at a time
            yield

    def work(self, execute: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
        """Pop and execute waiting runs until none is left; returns how many this worker did.
        ``execute(run)`` returns the result dict (its ``final`` is the trial's value).
        Each trial records its worker as ``"host:pid"`` in the ``worker`` user attribute."""
        import optuna
        from optuna.trial import TrialState

        done = [0]
        worker = f"{socket.gethostname()}:{os.getpid()}"
        last: dict[str, Any] = {"trial": None, "executed": False}

        def objective(trial: optuna.Trial) -> float:
            if "run" not in trial.user_attrs:  # the queue was empty: a fresh trial
                trial.study.stop()
                raise optuna.TrialPruned()
            last.update(trial=trial._trial_id, executed=False)
            trial.set_user_attr("worker", worker)
            result = execute(json.loads(trial.user_attrs["run"]))
            last["executed"] = True
            trial.set_user_attr("result", json.dumps(result))
            done[0] += 1
            value = result.get("final", float("inf"))
            return value if value < 1e300 else 1e300

        while True:
            try:
                self.study.optimize(objective, n_trials=None, catch=())
                return done[0]
            except Exception:
                # the run went well but its trial was failed meanwhile, as stale (a heartbeat
                # later than the grace period) and re-enqueued: the copy is the one that counts,
                # and Optuna refuses to store this result; any other error is raised
                if not (last["executed"] and self.storage.get_trial(last["trial"]).state
                        == TrialState.FAIL):
                    raise
                last.update(trial=None, executed=False)

    def results(self) -> dict[str, dict[str, Any]]:
        """key → result of every completed run."""
        from optuna.trial import TrialState

        return {t.user_attrs["key"]: json.loads(t.user_attrs["result"])
                for t in self._trials(TrialState.COMPLETE)}

    def wait_for_stale(self) -> bool:
        """True if some planned run is still running (maybe a dead worker's: Optuna fails and
        re-enqueues it after the grace period); sleeps one heartbeat first."""
        from optuna.trial import TrialState

        running = self._trials(TrialState.RUNNING)
        if running:
            time.sleep(self.heartbeat)
        return bool(running)

    def complete(self, keys: list[str]) -> bool:
        from optuna.trial import TrialState

        return set(keys) <= set(self.keys(TrialState.COMPLETE))
