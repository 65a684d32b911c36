"""Trainable tasks and the tuning / seeds / profile protocol."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter

import pytest

from optimlab import data
from optimlab.lab import tasks
from optimlab.lab.problems import Run
from optimlab.lab.protocol import (
    Summary,
    mark_ties,
    performance_profile,
    profile_breakpoints,
    sweep,
)
from optimlab.lab.tasks import get_task, run_task


@pytest.mark.parametrize("name", ["noisy_quadratic", "moons", "digits_mlp"])
def test_every_light_task_trains_and_reaches_its_target_with_adam(name):
    result = run_task(name, "adam", 0.01, seed=0)
    assert not result.diverged and len(result.curve) >= 10
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"] * 1.5
    assert result.best <= get_task(name).target
    assert result.steps_to_target is not None and result.seconds_to_target > 0


def test_runs_are_reproducible_and_divergence_is_detected():
    a, b = run_task("moons", "sgd", 0.1, seed=1), run_task("moons", "sgd", 0.1, seed=1)
    assert a.curve == b.curve
    assert run_task("moons", "sgd", 0.1, seed=2).curve != a.curve
    exploding = run_task("noisy_quadratic", "sgd", 100.0)
    assert exploding.diverged and math.isinf(exploding.final)


def test_sweep_keeps_the_best_learning_rate_per_optimizer_on_a_surface():
    seen = []
    results = sweep(["rosenbrock"], ["sgd", "adam"], steps=200, lrs=[1.0, 1e-3],
                    on_run=seen.append)
    assert len(seen) == 4 and len(results) == 2
    sgd = next(r for r in results if r.optimizer == "sgd")
    assert sgd.lr == 1e-3 and not sgd.runs[0].diverged  # lr = 1 diverges on Rosenbrock
    for r in results:
        runs = [s for s in seen if s.optimizer == r.optimizer]
        assert r.runs[0].final == min(s.final for s in runs)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps=0"), ({"steps": -5}, "steps=-5"), ({"lrs": [0.1, -1.0]}, "lrs"),
])
def test_bad_budget_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep(["beale"], ["adam"], **kwargs)


def test_sweep_tunes_then_reruns_the_best_with_seeds():
    seen = []
    summaries = sweep(["noisy_quadratic"], ["sgd", "adam"], [100.0, 0.1, 0.001], seeds=3,
                      on_run=seen.append)
    assert len(seen) == 2 * (3 + 3)  # 3 tuning runs (seed 0) + 3 reported seeds each
    for s in summaries:
        assert s.lr != 100.0
        assert [r.seed for r in s.runs] == [1, 2, 3] and {r.lr for r in s.runs} == {s.lr}
        tuned = next(r for r in seen if r.optimizer == s.optimizer and r.lr == s.lr)
        assert tuned.seed == 0 and s.sensitivity[s.lr] == tuned.final  # tuned on seed 0
        assert s.sensitivity[s.lr] == min(s.sensitivity.values())
        assert s.std >= 0 and s.best <= s.mean
        low, high = s.ci95
        assert low <= s.mean <= high and isinstance(s.tied_with_best, bool)
    best = min(summaries, key=lambda s: s.mean)
    assert best.tied_with_best is True and best.p_vs_best == 1.0
    sgd = next(s for s in summaries if s.optimizer == "sgd")
    assert math.isinf(sgd.sensitivity[100.0])  # diverged during tuning
    with pytest.raises(ValueError, match="seeds=0"):
        sweep(["moons"], ["sgd"], [0.1], seeds=0)
    with pytest.raises(ValueError, match="unknown task 'mnst'"):
        sweep(["mnst"], ["sgd"], [0.1])


def _summary(task, optimizer, steps):
    runs = [Run(task, optimizer, 0.1, 0, steps_to_target=steps)]
    return Summary(task, optimizer, 0.1, {0.1: 0.0}, runs)


def test_summary_statistics_and_ties_by_task():
    def summary(task, optimizer, finals, seconds):
        runs = [Run(task, optimizer, 0.1, seed, final=f, seconds_to_target=t,
                          steps_to_target=None if t is None else 10)
                for seed, (f, t) in enumerate(zip(finals, seconds, strict=True), 1)]
        return Summary(task, optimizer, 0.1, {0.1: finals[0]}, runs)

    rows = [summary("t1", "a", [1.0, 1.1, 0.9, 1.0, 1.05], [2.0, 3.0, 1.0, None, 4.0]),
            summary("t1", "b", [1.02, 1.12, 0.92, 1.0, 1.03], [None] * 5),
            summary("t1", "c", [5.0, 5.1, 4.9, 5.0, 5.05], [1.0] * 5),
            summary("t2", "a", [3.0, 3.0], [None, None]),  # another task: its own best
            summary("t2", "b", [2.0, 2.1], [1.0, None])]
    mark_ties(rows)
    assert [r.tied_with_best for r in rows] == [True, True, False, False, True]
    assert rows[0].p_vs_best == 1.0 and rows[2].p_vs_best < 0.05
    assert rows[0].seconds_to_target == 3.0  # median of 2, 3, 1, ∞, 4
    assert rows[1].seconds_to_target is None and rows[4].seconds_to_target is None
    d = rows[2].as_dict()
    assert d["ci95"] == list(rows[2].ci95) and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    assert d["tied_with_best"] is False and d["seconds_to_target"] == 1.0
    assert d["tuning_seed"] == 0 and d["seeds"] == [1, 2, 3, 4, 5]


def test_performance_profile_by_hand():
    summaries = [_summary("t1", "a", 10), _summary("t1", "b", 30),
                 _summary("t2", "a", None), _summary("t2", "b", 5)]
    profile = performance_profile(summaries, taus=(1, 2, 4))
    # a: t1 ratio 1, t2 never → [0.5, 0.5, 0.5]; b: t1 ratio 3, t2 ratio 1 → [0.5, 0.5, 1]
    assert profile == {"a": [0.5, 0.5, 0.5], "b": [0.5, 0.5, 1.0]}
    # b steps at its ratio 3, between the grid's 2 and 4
    assert profile_breakpoints(summaries, (1, 2, 4)) == [1, 2, 3.0, 4]


def test_performance_profile_leaves_out_a_task_an_optimizer_does_not_apply_to():
    """A not-applicable row is left out of the summaries: that task is not one of the
    optimizer's, so its share counts the tasks it ran on (1 of 1), not 1 of 2."""
    summaries = [_summary("t1", "a", 10), _summary("t1", "muon", 20), _summary("t2", "a", 5)]
    assert performance_profile(summaries, taus=(1, 2)) == {"a": [1.0, 1.0], "muon": [0.0, 1.0]}


def test_the_heavier_tasks_learn():
    """MNIST CNN, character LSTM and word2vec: the test metric improves well past its start."""
    for name, optimizer, lr in (("char_lstm", "adam", 0.01), ("word2vec", "adagrad", 0.1)):
        result = run_task(name, optimizer, lr)
        assert not result.diverged
        assert result.final < result.curve[0]["test"]
        assert result.steps_to_target is not None  # the task's target is reached


def test_the_transformer_learns_well_below_the_unigram_entropy():
    """char_transformer's model and data made small (one block of width 64, windows of 32
    characters: 65,000 parameters) and trained 800 steps with Adam at lr 3e-3: the validation
    bits per character end more than 1 bit below the entropy of the corpus's characters
    (≈ 4.75), past the bigram model's 4.08, so the attention uses more than the previous
    character (seeds 0, 1, 2 end at 3.47, 3.45, 3.50; without the block: 4.07)."""
    corpus = data.text_corpus(level="char")
    p = corpus.counts.double() / corpus.counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log2()).sum())  # bits per character, ≈ 4.75
    full = get_task("char_transformer")
    assert full.metric == "bpc" and full.label == "validation bits per character"
    small = functools.partial(tasks._char_transformer, d_model=64, layers=1, context=32)
    task = dataclasses.replace(full, build=small, steps=800)
    result = run_task(task, "adam", 3e-3)
    assert not result.diverged and len(result.curve) == 20
    assert result.final < entropy - 1.0, (result.final, entropy)
    model, train, _ = full.build(0)  # the task itself: the sizes its description names
    assert len(model.lm.blocks) == 3 and model.lm.embedding.embedding_dim == 128
    assert train.x.shape[1] == model.lm.context == 64


def test_the_transformer_target_beats_a_trigram_model():
    """The target of char_transformer lies below the validation cross-entropy of a trigram
    model of the training characters (add-0.1 smoothing), in bits per character."""
    corpus = data.text_corpus(level="char")
    train, val, k = corpus.train.tolist(), corpus.val.tolist(), 0.1
    triples = Counter(zip(train, train[1:], train[2:], strict=False))
    pairs = Counter(zip(train, train[1:], strict=False))
    bits = -sum(math.log2((triples[(a, b, c)] + k) / (pairs[(a, b)] + k * len(corpus.vocab)))
                for a, b, c in zip(val, val[1:], val[2:], strict=False)) / (len(val) - 2)
    assert get_task("char_transformer").target < bits < 4.0, bits


def test_tpe_tuner_spends_the_same_budget_within_the_range():
    (summary,) = sweep(["moons"], ["sgd"], [0.001, 1.0, 0.1], seeds=1, tuner="tpe")
    assert len(summary.sensitivity) == 3
    assert all(0.001 <= lr <= 1.0 for lr in summary.sensitivity)
    with pytest.raises(ValueError, match="tuner='bayes'"):
        sweep(["moons"], ["sgd"], [0.1], tuner="bayes")


def test_tpe_tuner_explores_the_whole_range():
    """Its first third of the budget spreads over the range, ends included, whatever TPE's
    seed would draw (TPE's own random start-up, seed 0, tried nothing below 5e-3 of 1e-4 ...
    5 in twelve runs)."""
    lrs = [1e-4 * 10 ** (i * 4.7 / 11) for i in range(12)]
    (summary,) = sweep(["beale"], ["sgd"], lrs, seeds=1, steps=20, tuner="tpe")
    tried = sorted(summary.sensitivity)
    assert len(summary.sensitivity) == 12
    assert tried[0] == pytest.approx(min(lrs)) and tried[-1] == pytest.approx(max(lrs))
    thirds = [sum(1 for lr in tried if k / 3 <= math.log(lr / 1e-4) / math.log(max(lrs) / 1e-4)
                  < (k + 1) / 3) for k in range(3)]
    assert all(count >= 1 for count in thirds), thirds



def test_cosine_schedule_is_an_option_and_a_name(monkeypatch):
    seen, cosine = [], tasks.SCHEDULES["cosine"]

    def watched(opt, steps):
        scheduler = cosine(opt, steps)
        step = scheduler.step

        def recording():
            step()
            seen.append(opt.param_groups[0]["lr"])

        scheduler.step = recording
        return scheduler

    monkeypatch.setitem(tasks.SCHEDULES, "cosine", watched)
    named = run_task("noisy_quadratic", "sgd+cosine", 0.5, seed=1)
    steps = get_task("noisy_quadratic").steps
    assert named.optimizer == "sgd+cosine" and len(seen) == steps
    for t, lr in enumerate(seen, 1):
        assert lr == pytest.approx(0.5 * (1 + math.cos(math.pi * t / steps)) / 2, abs=1e-12)
    keyword = run_task("noisy_quadratic", "sgd", 0.5, seed=1, schedule="cosine")
    assert keyword.optimizer == "sgd+cosine" and keyword.curve == named.curve
    assert run_task("noisy_quadratic", "sgd", 0.5, seed=1).curve != named.curve
    with pytest.raises(ValueError, match="schedule='linear' must be one of cosine"):
        run_task("noisy_quadratic", "sgd", 0.5, schedule="linear")


def test_a_summary_with_a_diverged_seed_exports():
    """A row where one seed diverged (final ∞) has an infinite mean and spread and still
    exports (``make run`` once crashed here: ``statistics.stdev`` cannot take ∞); a finite row
    keeps the sample standard deviation."""
    runs = [Run("digits_mlp", "sgd", 0.1, seed, final=v)
            for seed, v in enumerate([0.5, math.inf, 0.7], 1)]
    row = Summary("digits_mlp", "sgd", 0.1, {0.1: 0.5}, runs).as_dict()
    assert row["mean"] == math.inf and row["std"] == math.inf
    assert row["ci95"][1] == math.inf
    finite = Summary("digits_mlp", "sgd", 0.1, {0.1: 0.5}, runs[::2])
    assert finite.std == pytest.approx(math.sqrt(0.02))
