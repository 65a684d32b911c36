"""The classic comparisons: the verdict logic, and one claim re-run end to end."""

from optimlab.cli import main
from optimlab.lab.classics import CLAIMS, Claim, verdict
from optimlab.lab.problems import Run
from optimlab.lab.protocol import Summary


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
    from optimlab.lab import classics

    small = Claim("char_lstm", "on an LSTM language model, plain momentum is competitive",
                  ("momentum", "adam"), (0.01, 0.5), "momentum competitive")
    monkeypatch.setattr(classics, "CLAIMS", (small,))
    assert main(["classics", "--tasks", "char_lstm", "--seeds", "1", "--report",
                 str(tmp_path)]) == 0
    assert "classic comparisons" in (tmp_path / "index.html").read_text()
    out = capsys.readouterr().out
    assert "what we observe" in out and ("agrees" in out or "disagrees" in out)
