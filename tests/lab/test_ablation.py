"""The "upgrade the network" ablation."""

from optimlab.cli import main
from optimlab.lab.ablation import UPGRADES, ablate


def test_ablation_rows_and_the_big_gains(capsys, tmp_path):
    rows = ablate(seeds=1, epochs=3)
    assert [r.upgrade for r in rows] == list(UPGRADES)
    by_name = {r.upgrade: r.mean for r in rows}
    assert by_name["baseline"] > 0.3  # sigmoid, N(0, 1), plain SGD, raw pixels
    assert by_name["+ ReLU"] < by_name["+ standardized inputs"]
    assert by_name["+ early stopping"] < 0.1
    assert main(["ablate", "--seeds", "1", "--epochs", "2", "--report", str(tmp_path)]) == 0
    assert "Upgrading the network" in (tmp_path / "index.html").read_text()
    assert "+ batch norm" in capsys.readouterr().out


def test_ablation_table_rows_and_report_section(tmp_path):
    from optimlab.lab.ablation import Row, changes
    from optimlab.lab.report import Report, write

    rows = [Row("baseline", [0.5, 0.4]), Row("+ ReLU", [0.1, 0.1])]
    assert [c[3] for c in changes(rows)] == ["", "-0.3500"]
    page = open(write(Report(ablation=rows), str(tmp_path)), encoding="utf-8").read()
    assert "Upgrading the network" in page and "-0.3500" in page
