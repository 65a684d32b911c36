import json
import re

import pytest

from optimlab.cli import main


def test_compare_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["compare", "--problems", "rosenbrock,beale", "--optimizers", "adam,nesterov",
                 "--steps", "50", "--lrs", "0.01,0.001", "--json", str(out),
                 "--report", str(tmp_path / "page")])
    assert code == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert "rosenbrock" in page and "<table>" in page
    text = capsys.readouterr().out
    assert "rosenbrock" in text and "beale" in text and "nesterov" in text
    rows = json.loads(out.read_text())["surfaces"]
    assert {(r["problem"], r["optimizer"]) for r in rows} == {
        ("rosenbrock", "adam"), ("rosenbrock", "nesterov"), ("beale", "adam"),
        ("beale", "nesterov")}


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "--optimizers", "adam,nadamm"],
     "unknown optimizer 'nadamm': did you mean 'nadam'? choose one of sgd"),
    (["compare", "--problems", "moon"],
     "unknown problem 'moon': did you mean 'moons'? choose one of rosenbrock"),
    (["compare", "--problems", "xyz"], "unknown problem 'xyz': choose one of rosenbrock"),
    (["compare", "--steps", "-3"], "-3 must be > 0"),
    (["compare", "--lrs", "0.1,x"], "not a comma-separated list"),
    (["compare", "--grace", "3"], "3 must be >= 4 (two heartbeats)"),
    (["run", "--grace", "x"], "'x' is not an integer"),
    (["train", "--task", "digits"],
     "unknown task 'digits': did you mean 'digits_mlp'? choose one of noisy_quadratic"),
    (["train", "--strategy", "dp"], "invalid choice: 'dp'"),
    (["train", "--json", "/proc/optimlab.json"], "--json /proc/optimlab.json: cannot write"),
    (["compare", "--lrs", "inf"], "learning rates must be finite and > 0"),
    (["init-report", "--init", "normal:-1"], "its stddev -1 must be >= 0"),
])
def test_bad_input_is_one_line_and_exit_2(argv, fragment, capsys):
    """A one-line error after the usage of the command given (not the top-level one)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.startswith(f"usage: optimlab {argv[0]} ")


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "nadamax" in out and "rosenbrock" in out and "char_transformer" in out


def test_init_report_writes_table_and_figure(tmp_path, capsys):
    code = main(["init-report", "--depth", "4", "--width", "64", "--activation", "tanh",
                 "--init", "normal:0.01", "--batch", "128", "--out", str(tmp_path)])
    assert code == 0
    assert "activations and gradients per layer" in capsys.readouterr().out
    assert (tmp_path / "activations.png").read_bytes()[:4] == b"\x89PNG"
    assert "vanishing" in (tmp_path / "layers.csv").read_text()


def test_init_report_rejects_unknown_initializer(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["init-report", "--init", "normal:abc"])
    assert exit_info.value.code == 2
    assert "not a number" in capsys.readouterr().err


def test_compare_on_tasks_with_seeds_and_profile(tmp_path, capsys, one_thread):
    out = tmp_path / "tasks.json"
    code = main(["compare", "--problems", "moons,digits_mlp", "--optimizers", "sgd,adam",
                 "--storage", f"sqlite:///{tmp_path}/runs.db",
                 "--lrs", "0.1,0.01", "--seeds", "2", "--json", str(out),
                 "--report", str(tmp_path / "page")])
    assert code == 0
    text = capsys.readouterr().out
    assert "digits_mlp" in text and "performance profile" in text
    tasks = json.loads(out.read_text())["tasks"]
    assert len(tasks) == 4 and all(len(t["runs"]) == 2 for t in tasks)


def test_compare_of_surfaces_uses_the_storage_it_is_given(tmp_path, capsys):
    """Surfaces alone run in memory by default, but a --storage given is used: a second run of
    the same command finds every run stored."""
    import sqlite3

    args = ["compare", "--problems", "rosenbrock", "--optimizers", "adam", "--seeds", "1",
            "--lrs", "0.01,0.1", "--storage", f"sqlite:///{tmp_path}/runs.db",
            "--report", "none"]
    def complete() -> int:
        with sqlite3.connect(tmp_path / "runs.db") as db:
            return db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]

    assert main(args) == 0
    assert complete() == 2
    assert main(args) == 0
    assert complete() == 2  # nothing was run again


def test_compare_rows_carry_confidence_intervals_ties_and_seconds_to_target(tmp_path, capsys,
                                                                           one_thread):
    out = tmp_path / "out.json"
    assert main(["compare", "--problems", "noisy_quadratic", "--optimizers", "adamw,sgd,adam",
                 "--lrs", "0.01,0.1,1", "--storage", "none", "--json", str(out),
                 "--report", str(tmp_path / "page")]) == 0  # the default: 5 seeds
    assert "95 % CI" in capsys.readouterr().out
    rows = json.loads(out.read_text())["tasks"]
    assert len(rows) == 3
    for row in rows:
        assert row["seeds"] == [1, 2, 3, 4, 5] and row["tuning_seed"] == 0
        low, high = row["ci95"]
        assert low <= row["mean"] <= high and isinstance(row["tied_with_best"], bool)
        reached = [r["seconds_to_target"] for r in row["runs"] if r["seconds_to_target"]]
        assert row["seconds_to_target"] is None or 0 < row["seconds_to_target"] <= max(reached)
    best = min(rows, key=lambda r: r["mean"])
    assert best["tied_with_best"] is True and best["p_vs_best"] == 1.0
    page = (tmp_path / "page" / "index.html").read_text()
    assert "Tied with the best:" in page and "95 % CI" in page


def test_unreachable_storage_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--problems", "moons", "--storage",
              "postgresql://nobody@127.0.0.1:1/none"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot open storage 'postgresql://nobody@127.0.0.1:1/none'" in err


def _train(tmp_path, *argv):
    """``optimlab train`` in a new process (torchrun needs a real command line)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "optimlab.cli", "train", "--quiet", *argv],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_train_with_two_processes_resumes_in_one(tmp_path, monkeypatch):
    """torchrun with 2 gloo processes writes checkpoints once (rank 0); one process (this one)
    resumes them, and ends where one process training all along ends (float32: to rounding)."""
    _train(tmp_path, "--epochs", "2", "--nproc-per-node", "2", "--checkpoint-dir", "ckpt",
           "--json", "two.json")
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["processes"] == 2 and two["strategy"] == "ddp"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "ckpt-0000000040.pt", "ckpt-0000000080.pt"]  # 2 epochs of ⌈1257 / 32⌉ = 40 batches
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quiet", "--epochs", "3", "--checkpoint-dir", "ckpt", "--resume",
                 "--json", "resumed.json"]) == 0
    assert main(["train", "--quiet", "--epochs", "3", "--json", "alone.json"]) == 0
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    alone = json.loads((tmp_path / "alone.json").read_text())
    assert resumed["processes"] == 1
    assert resumed["history"][:2] == two["history"]
    for got, want in zip(resumed["history"], alone["history"], strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-5)


def test_train_takes_every_optimizer_and_refuses_to_mix_runs(tmp_path, monkeypatch, capsys):
    """Muon trains in its combined form (AdamW for the biases and the head) and L-BFGS with a
    closure; a second run into the same checkpoint directory, or a resume with another
    optimizer, is a one-line error (exit 2), not a mix of two runs."""
    monkeypatch.chdir(tmp_path)
    for name in ("muon", "lbfgs"):
        assert main(["train", "--quiet", "--epochs", "1", "--optimizer", name,
                     "--json", f"out/{name}.json"]) == 0
        assert json.loads((tmp_path / "out" / f"{name}.json").read_text())["history"]
    assert main(["train", "--quiet", "--epochs", "1", "--checkpoint-dir", "ck"]) == 0
    for argv, fragment in ((["--checkpoint-dir", "ck"], "holds checkpoints of an earlier run"),
                           (["--checkpoint-dir", "ck", "--resume", "--optimizer", "sgd"],
                            "another run: optimizer 'adam' (now 'sgd')")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--quiet", "--epochs", "2", *argv])
        assert exit_info.value.code == 2
        assert fragment in capsys.readouterr().err


def test_run_animates_the_optimizers_asked_for(tmp_path, monkeypatch):
    """``run --optimizers adam,sgd`` animates those two; without the option, the suite's six."""
    from optimlab.lab import suite

    calls = []
    monkeypatch.setattr(suite, "suite", lambda out, **kwargs: calls.append(kwargs) or out)
    for argv in (["--optimizers", "adam,sgd"], []):
        assert main(["run", "--quiet", "--out", str(tmp_path), *argv]) == 0
    assert calls[0]["animate"] == ["adam", "sgd"] and "animate" not in calls[1]


def test_train_logs_from_rank_0_only(tmp_path):
    done = _train(tmp_path, "--epochs", "1", "--nproc-per-node", "2", "--strategy", "fsdp")
    out = done.stdout + done.stderr
    assert out.count("uses reference: the parameters are sharded DTensors") == 1


def test_one_seed_shows_no_spread_and_no_interval():
    """With ``--seeds 1`` a task's row has no "± 0" and no zero-width interval: one seed has
    neither a spread nor a confidence interval."""
    from rich.console import Console

    from optimlab.cli import _task_table
    from optimlab.lab.problems import Run
    from optimlab.lab.protocol import Summary

    one = Summary("moons", "adam", 0.1, {0.1: 0.25}, [Run("moons", "adam", 0.1, 1, final=0.25)])
    console = Console(record=True, width=200)
    console.print(_task_table("moons", [one]))
    row = next(line for line in console.export_text().splitlines() if "adam" in line)
    assert "0.25" in row and "±" not in row and "[0.25, 0.25]" not in row


def test_progress_ends_at_its_total_when_runs_are_reused(tmp_path, capsys):
    """A sweep whose runs all come from its storage (a re-run of a finished command) ends its
    progress at done/total, not at 0/total."""
    argv = ["compare", "--problems", "rosenbrock", "--optimizers", "adam", "--lrs", "0.01",
            "--seeds", "1", "--steps", "10", "--report", "none",
            "--storage", f"sqlite:///{tmp_path}/runs.db"]
    for _ in range(2):
        assert main(argv) == 0
        done, total = re.search(r"━ (\d+)/(\d+) ", capsys.readouterr().out).groups()
        assert done == total != "0"
