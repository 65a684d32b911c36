"""The HTML report renders in headless Chromium with no broken image and real content."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from optimlab.lab.suite import suite

#: under pytest-xdist, on one worker: one suite run (a module fixture) serves every test here
pytestmark = pytest.mark.xdist_group("report")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    index = suite(str(out), optimizers=["sgd", "adam"], surfaces=("beale",),
                  tasks=("moons", "noisy_quadratic"), lrs=(0.01, 0.1), surface_steps=50,
                  seeds=2, storage=f"sqlite:///{out}/runs.db", animate=("sgd", "adam"),
                  ablation_seeds=0)
    return out, index


def test_report_files(report):
    out, index = report
    page = open(index, encoding="utf-8").read()
    for heading in ("2-D surfaces", "leaderboards", "Performance profile",
                    "Properties, measured", "Animations"):
        assert heading in page
    assert page.count("data:image/gif;base64,") == 2 and "src=\"http" not in page
    data = json.loads((out / "runs.json").read_text())
    assert len(data["tasks"]) == 4 and all(len(t["runs"]) == 2 for t in data["tasks"])
    assert (out / "runs.csv").read_text().count("\n") == 1 + 2 + 8  # header, surfaces, tasks


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run "
                                             "installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    out, index = report
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=10000", "--dump-dom", f"file://{index}"],
                         capture_output=True, text=True, timeout=120).stdout
    broken = re.search(r'data-broken-images="(\d+)"', dom)
    images = re.search(r'data-images="(\d+)"', dom)
    assert broken and images, "the page's load check did not run"
    assert broken.group(1) == "0" and int(images.group(1)) >= 6
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                    "--window-size=1200,2000", f"--screenshot={shot}", f"file://{index}"],
                   capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    assert len(image.getcolors(maxcolors=1_000_000)) > 100  # text, tables and plots, not blank


def test_runs_csv_has_a_row_per_run_made(tmp_path):
    """An optimizer that does not apply to a problem (Muon on a 2-D surface's vector) made no
    run: runs.csv has no row for it (runs.json keeps its summary and the reason)."""
    from optimlab.lab.protocol import sweep
    from optimlab.lab.report import Report, write

    summaries = sweep(["beale"], ["sgd", "muon"], [0.01], seeds=1, steps=20)
    assert [s.optimizer for s in summaries if s.not_applicable] == ["muon"]
    write(Report(summaries=summaries), str(tmp_path))
    with open(tmp_path / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {row["optimizer"] for row in rows} == {"sgd"}
    exported = json.loads((tmp_path / "runs.json").read_text())
    assert "muon" in json.dumps(exported)
