"""The measured property table against the textbook's."""

from __future__ import annotations

import json

import pytest

from optimlab.cli import main
from optimlab.lab.properties import measure

#: under pytest-xdist, on one worker: one measurement (a module fixture) serves every test here
pytestmark = pytest.mark.xdist_group("properties")


@pytest.fixture(scope="module")
def rows():
    return {r.optimizer: r for r in measure(["sgd", "adagrad", "adadelta", "adam"])}


def verdicts(row):
    return row.adaptive, row.consistent_units, row.escapes_saddle


def test_textbook_rows(rows):
    assert verdicts(rows["sgd"]) == (False, False, False)
    assert verdicts(rows["adagrad"]) == (True, False, True)
    assert verdicts(rows["adam"]) == (True, False, True)


def test_adadelta_units_are_set_by_its_epsilon(rows):
    """The textbook (Zeiler 2012) says yes to consistent units: Adadelta's update
    (RMS[Δθ]/RMS[g])·g has the units of RMS[Δθ]. Measured from a fresh state that RMS is seeded
    by ε, a fixed absolute number, so the update moves the same absolute distance in both unit
    systems — 1/100 of what consistent units require. The table reports what it measures."""
    row = rows["adadelta"]
    assert row.adaptive and row.escapes_saddle
    assert not row.consistent_units
    assert 0.005 < row.units_ratio < 0.02
    assert rows["sgd"].units_ratio < 1e-3  # SGD's step shrinks with the square of the units


def test_cli_properties(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["properties", "--optimizers", "sgd,adam", "--json", str(out),
                 "--report", str(tmp_path)]) == 0
    assert "Properties, measured" in (tmp_path / "index.html").read_text()
    assert "escapes saddles" in capsys.readouterr().out
    assert [r["optimizer"] for r in json.loads(out.read_text())] == ["sgd", "adam"]
