"""Trainable tasks and the tuning / seeds / profile protocol."""

from __future__ import annotations

import math

import pytest

from optimlab.lab.protocol import Summary, performance_profile, sweep
from optimlab.lab.tasks import RunResult, get_task, run_task


@pytest.mark.parametrize("name", ["noisy_quadratic", "moons", "digits_mlp"])
def test_every_light_task_trains_and_reaches_its_target_with_adam(name):
    result = run_task(name, "adam", 0.01, seed=0)
    assert not result.diverged and len(result.curve) >= 10
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"] * 1.5
    assert result.best_test <= get_task(name).target
    assert result.steps_to_target is not None and result.seconds_to_target > 0


def test_runs_are_reproducible_and_divergence_is_detected():
    a, b = run_task("moons", "sgd", 0.1, seed=1), run_task("moons", "sgd", 0.1, seed=1)
    assert a.curve == b.curve
    assert run_task("moons", "sgd", 0.1, seed=2).curve != a.curve
    exploding = run_task("noisy_quadratic", "sgd", 100.0)
    assert exploding.diverged and math.isinf(exploding.final_test)


def test_sweep_tunes_then_reruns_the_best_with_seeds():
    seen = []
    summaries = sweep(["noisy_quadratic"], ["sgd", "adam"], [100.0, 0.1, 0.001], seeds=3,
                      on_run=seen.append)
    assert len(seen) == 2 * (3 + 2)  # 3 tuning runs + 2 extra seeds each
    for s in summaries:
        assert s.lr != 100.0
        assert [r.seed for r in s.runs] == [0, 1, 2] and {r.lr for r in s.runs} == {s.lr}
        assert s.sensitivity[s.lr] == min(s.sensitivity.values())
        assert s.std >= 0 and s.best <= s.mean
    sgd = next(s for s in summaries if s.optimizer == "sgd")
    assert math.isinf(sgd.sensitivity[100.0])  # diverged during tuning
    with pytest.raises(ValueError, match="seeds=0"):
        sweep(["moons"], ["sgd"], [0.1], seeds=0)
    with pytest.raises(ValueError, match="unknown task 'mnst'"):
        sweep(["mnst"], ["sgd"], [0.1])


def _summary(task, optimizer, steps):
    runs = [RunResult(task, optimizer, 0.1, 0, steps_to_target=steps)]
    return Summary(task, optimizer, 0.1, {0.1: 0.0}, runs)


def test_performance_profile_by_hand():
    summaries = [_summary("t1", "a", 10), _summary("t1", "b", 30),
                 _summary("t2", "a", None), _summary("t2", "b", 5)]
    profile = performance_profile(summaries, taus=(1, 2, 4))
    # a: t1 ratio 1, t2 never → [0.5, 0.5, 0.5]; b: t1 ratio 3, t2 ratio 1 → [0.5, 0.5, 1]
    assert profile == {"a": [0.5, 0.5, 0.5], "b": [0.5, 0.5, 1.0]}


def test_the_heavier_tasks_learn():
    """MNIST CNN, character LSTM and word2vec: the test metric improves well past its start."""
    for name, optimizer, lr in (("char_lstm", "adam", 0.01), ("word2vec", "adagrad", 0.1)):
        result = run_task(name, optimizer, lr)
        assert not result.diverged
        assert result.final_test < result.curve[0]["test"]
        assert result.steps_to_target is not None  # the task's target is reached


def test_tpe_tuner_spends_the_same_budget_within_the_range():
    (summary,) = sweep(["moons"], ["sgd"], [0.001, 1.0, 0.1], seeds=1, tuner="tpe")
    assert len(summary.sensitivity) == 3
    assert all(0.001 <= lr <= 1.0 for lr in summary.sensitivity)
    with pytest.raises(ValueError, match="tuner='bayes'"):
        sweep(["moons"], ["sgd"], [0.1], tuner="bayes")
