"""The classic comparisons: the verdict logic, and claims re-run end to end."""

import dataclasses

import pytest

from optimlab.cli import main
from optimlab.lab import classics, tasks
from optimlab.lab.classics import CLAIMS, Claim, verdict
from optimlab.lab.problems import Run
from optimlab.lab.protocol import Summary, mark_ties


def _summaries(task, scores):
    return [Summary(task, name, 0.1, {0.1: v}, [Run(task, name, 0.1, 0, final=v)])
            for name, v in scores.items()]


def test_verdicts_by_hand():
    mnist = CLAIMS[0]
    assert verdict(mnist, _summaries("mnist_cnn", {"sgd": 0.2, "adam": 0.1})).startswith(
        "agrees")
    assert verdict(mnist, _summaries("mnist_cnn", {"momentum": 0.05, "adam": 0.1})).startswith(
        "disagrees")
    lstm = CLAIMS[2]
    assert verdict(lstm, _summaries("char_lstm", {"momentum": 2.0, "adam": 1.95})).startswith(
        "agrees")
    assert verdict(lstm, _summaries("char_lstm", {"momentum": 2.5, "adam": 1.9})).startswith(
        "disagrees")


def test_lstm_claim_end_to_end(capsys, monkeypatch, tmp_path):
    """The command runs a claim's sweep and writes its verdict (either way: 60 of the task's
    300 steps are enough to produce one) to the terminal and the report."""
    small = Claim("char_lstm", "on an LSTM language model, plain momentum is competitive",
                  ("momentum", "adam"), (0.01, 0.5), "momentum competitive")
    monkeypatch.setattr(classics, "CLAIMS", (small,))
    monkeypatch.setitem(tasks.TASKS, "char_lstm",
                        dataclasses.replace(tasks.TASKS["char_lstm"], steps=60))
    assert main(["classics", "--tasks", "char_lstm", "--seeds", "1", "--report",
                 str(tmp_path)]) == 0
    assert "classic comparisons" in (tmp_path / "index.html").read_text()
    out = capsys.readouterr().out
    assert "what we observe" in out and ("agrees" in out or "disagrees" in out)


def _claim(kind):
    return next(c for c in CLAIMS if c.kind == kind)


def _seeded(task, name, lr, finals, seconds=None, grid=(1e-4, 1e-3, 1e-2)):
    runs = [Run(task, name, lr, seed, final=v, steps_to_target=None if seconds is None
                else 100, seconds_to_target=seconds) for seed, v in enumerate(finals, 1)]
    return Summary(task, name, lr, {g: 1.0 for g in grid}, runs)


def test_muon_claim_compares_seconds_to_target():
    muon = _claim("faster to target")
    fast = [_seeded("char_transformer", "muon", 0.02, [3.0, 3.1], 20.0),
            _seeded("char_transformer", "adamw", 1e-3, [3.0, 3.1], 30.0)]
    said = verdict(muon, fast)
    assert said.startswith("agrees") and "20 s" in said and "30 s" in said
    slow = [_seeded("char_transformer", "muon", 0.02, [3.6, 3.7], None),
            _seeded("char_transformer", "adamw", 1e-3, [3.0, 3.1], 30.0)]
    assert verdict(muon, slow).startswith("disagrees")
    assert "muon never reached it" in verdict(muon, slow)
    refused = [Summary("char_transformer", "muon", 0.02, {0.02: float("inf")},
                       [Run("char_transformer", "muon", 0.02, 1,
                            not_applicable="needs matrices")]), fast[1]]
    assert verdict(muon, refused).startswith("not tested: muon does not apply")


def test_schedule_free_claim_matches_within_tolerance_or_noise():
    claim = _claim("matches")
    close = [_seeded("digits_mlp", "schedulefree_adamw", 3e-3, [0.050, 0.052]),
             _seeded("digits_mlp", "adamw+cosine", 1e-3, [0.051, 0.050])]
    assert verdict(claim, close).startswith("agrees")
    apart = [_seeded("digits_mlp", "schedulefree_adamw", 3e-3, [0.090, 0.091, 0.092]),
             _seeded("digits_mlp", "adamw+cosine", 1e-3, [0.050, 0.051, 0.052])]
    said = verdict(claim, apart)
    assert said.startswith("disagrees") and "0.091" in said and "Welch p" in said


def test_lion_claim_checks_the_ratio_of_tuned_learning_rates():
    claim = _claim("lr ratio")
    grid = classics.DIGITS_LRS
    good = [_seeded("digits_mlp", "lion", grid[1], [0.05], grid=grid),
            _seeded("digits_mlp", "adamw", grid[3], [0.05], grid=grid)]
    said = verdict(claim, good)
    assert said.startswith("agrees") and "10×" in said and "bound" not in said
    same = [_seeded("digits_mlp", "lion", grid[0], [0.05], grid=grid),
            _seeded("digits_mlp", "adamw", grid[0], [0.05], grid=grid)]
    said = verdict(claim, same)
    assert said.startswith("disagrees") and "1× lion's" in said and "is a bound" in said


def test_dominance_claim_over_tasks():
    claim = _claim("no dominance")

    def rows(winner):
        out = []
        for task in ("moons", "digits_mlp"):
            for name in ("adam", "sgd"):
                good = name == winner or (winner is None and (name == "adam") == (task == "moons"))
                out.append(_seeded(task, name, 0.01, [0.1, 0.11] if good else [0.5, 0.51]))
        mark_ties(out)
        return out

    said = verdict(claim, rows(None))
    assert said.startswith("agrees") and "adam best or tied on 1 of 2" in said
    said = verdict(claim, rows("adam"))
    assert said.startswith("disagrees") and "adam best or tied on every task" in said
    assert verdict(claim, rows("adam")[:2]).startswith("not tested")


def test_a_claim_needing_a_missing_optimizer_is_skipped_with_the_reason():
    claim = Claim("moons", "a future optimizer wins", ("not_an_optimizer", "adam"), (0.1,),
                  "faster to target")
    (judged, said, summaries), = classics.run([claim], seeds=1)
    assert said.startswith("skipped: not_an_optimizer not in the registry") and not summaries


@pytest.mark.parametrize("seeds", [1])
def test_schedule_free_and_dominance_claims_end_to_end(seeds):
    sf = Claim("moons", "Schedule-Free AdamW matches AdamW with a cosine schedule",
               ("schedulefree_adamw", "adamw+cosine"), (0.1,), "matches")
    rest = Claim("noisy_quadratic", "across tasks, no optimizer dominates once tuned",
                 ("adamw+cosine",), (0.1,), "no dominance")
    results = classics.run([sf, rest], seeds=seeds)
    (_, said, summaries), (_, overall, _) = results
    assert {s.optimizer for s in summaries} == {"schedulefree_adamw", "adamw+cosine"}
    assert all(len(s.runs) == seeds and len(s.sensitivity) == 1 for s in summaries)
    assert said.split(":")[0] in ("agrees", "disagrees") and "schedulefree_adamw" in said
    assert overall.split(":")[0] in ("agrees", "disagrees") and "over 2 tasks" in overall
