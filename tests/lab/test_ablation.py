"""The "upgrade the network" ablation."""

from optimlab.cli import main
from optimlab.lab.ablation import UPGRADES, ablate


def test_ablation_rows_and_the_big_gains(capsys):
    rows = ablate(seeds=1, epochs=3)
    assert [r.upgrade for r in rows] == list(UPGRADES)
    by_name = {r.upgrade: r.mean for r in rows}
    assert by_name["baseline"] > 0.3  # sigmoid, N(0, 1), plain SGD, raw pixels
    assert by_name["+ ReLU"] < by_name["+ standardized inputs"]
    assert by_name["+ early stopping"] < 0.1
    assert main(["ablate", "--seeds", "1", "--epochs", "2"]) == 0
    assert "+ batch norm" in capsys.readouterr().out
