"""Animations and the learning-rate figure are written and show what they claim."""

from __future__ import annotations

import torch
from PIL import Image

from optimlab.cli import main
from optimlab.lab.animate import learning_rate_figure, saddle, trajectory


def test_trajectory_and_saddle_escape():
    path = trajectory(saddle, (1.0, 1e-3), "adam", 0.05, 200)
    assert path.shape[1] == 2 and abs(path[-1, 1]) > 1.0  # escaped along y
    assert abs(path[-1, 0]) < 0.1  # and descended along x
    stuck = trajectory(saddle, (1.0, 1e-8), "sgd", 0.001, 200)
    assert abs(stuck[-1, 1]) < 1e-7


def test_learning_rate_figure_and_cli_animations(tmp_path, capsys):
    png = learning_rate_figure(str(tmp_path / "lr.png"))
    assert Image.open(png).size[0] > 500
    code = main(["animate", "--problem", "beale", "--optimizers", "sgd,adam", "--steps", "40",
                 "--out", str(tmp_path)])
    assert code == 0
    for name in ("beale.gif", "saddle.gif"):
        gif = Image.open(tmp_path / name)
        assert gif.n_frames > 10
        gif.seek(gif.n_frames - 1)
        assert len(gif.convert("RGB").getcolors(maxcolors=100_000)) > 20  # drawn, not blank
    assert "learning_rates.png" in capsys.readouterr().out
    assert (tmp_path / "index.html").read_text().count("data:image/gif;base64,") == 2


def test_good_learning_rate_converges_and_large_diverges():
    a = 2.0
    good = trajectory(lambda t: 0.5 * a * t[0] ** 2, (2.5,), "sgd", 1 / a, 5)
    large = trajectory(lambda t: 0.5 * a * t[0] ** 2, (2.5,), "sgd", 2.1 / a, 20)
    assert good[-1].abs() < 1e-12 and large[-1].abs() > torch.tensor(2.5) * 5


def test_the_note_of_optimizers_left_out_is_one_clause_each():
    """An animation's footnote names each optimizer left out with the first clause of its
    reason (one line at the figure's width; Muon's reason goes on about param groups)."""
    from optimlab.lab.animate import _applicable

    kept, note = _applicable(["adam", "muon"], [1.0, 2.0])
    assert kept == ["adam"]
    assert note.startswith("not applicable to a vector of 2 numbers: muon (Muon only supports")
    assert "param group" not in note and len(note) < 160
