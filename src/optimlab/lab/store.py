"""Where a sweep's runs live: an Optuna study in a relational database — an embedded SQLite
file by default, any SQLAlchemy URL (PostgreSQL, ...) to share a sweep between processes or
machines.

A coordinator *plans* runs by enqueueing them as waiting trials (each a key and its settings);
any number of workers pop them with Optuna's atomic ``ask`` and store each result with the
trial. Workers send heartbeats: a trial whose worker died (SIGKILL included) is failed after the
grace period and re-enqueued by Optuna's ``RetryFailedTrialCallback``, so re-running the same
command finishes the sweep with every planned run done exactly once.

Several commands, on one machine or several, may share a sweep (``--storage postgresql://…``):
each plans under the database's own lock (a PostgreSQL advisory lock; an exclusive lock on a
file beside an SQLite database), so a run is enqueued once however many plan it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Store", "run_key", "study_name"]


def study_name(kind: str, *config) -> str:
    """A sweep's name from its settings: the same command resumes the same study."""
    digest = hashlib.sha1(json.dumps(config).encode()).hexdigest()[:12]
    return f"{kind}-{digest}"


def run_key(task: str, optimizer: str, lr: float, seed: int, flavor: str = "torch") -> str:
    return f"{task}|{optimizer}|{lr!r}|{seed}|{flavor}"


class Store:
    """One sweep (an Optuna study) in the database at ``url``.

    Args:
        url: SQLAlchemy URL; ``sqlite:///path.db`` for a file.
        study: the sweep's name (the same command → the same name → resume).
        heartbeat: seconds between a worker's heartbeats; a trial silent for 2× that is stale.
    """

    def __init__(self, url: str, study: str, *, heartbeat: int = 1):
        import warnings

        import optuna
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        for attempt in range(10):
            try:
                with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self.storage = RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                        grace_period=2 * heartbeat,
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
        self.url, self.name, self.heartbeat = url, study, heartbeat

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
                key = run_key(run["task"], run["optimizer"], run["lr"], run["seed"],
                              run.get("flavor", "torch"))
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
        ``execute(run)`` returns the result dict (its ``final_test`` is the trial's value)."""
        import optuna

        done = [0]

        def objective(trial: optuna.Trial) -> float:
            if "run" not in trial.user_attrs:  # the queue was empty: a fresh trial
                trial.study.stop()
                raise optuna.TrialPruned()
            result = execute(json.loads(trial.user_attrs["run"]))
            trial.set_user_attr("result", json.dumps(result))
            done[0] += 1
            value = result.get("final_test", float("inf"))
            return value if value < 1e300 else 1e300

        self.study.optimize(objective, n_trials=None, catch=())
        return done[0]

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
