"""The report's figures are readable: in headless Chromium every figure has a caption, the
performance profile labels each of 25 optimizers with no label overlapping another, and the
curves' band is a confidence interval (none with one seed)."""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess

import pytest
from PIL import Image

from optimlab.lab.figures import _spread, styles
from optimlab.lab.problems import Run
from optimlab.lab.protocol import Summary
from optimlab.lab.report import Report, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NAMES = [f"opt{i:02d}" for i in range(25)]


def _run(task: str, name: str, seed: int, level: float, reach: int | None) -> Run:
    curve = [{"step": 10 * k, "train_loss": level + 1 / k, "test": level + 1 / k + 0.01 * seed}
             for k in range(1, 11)]
    return Run(task, name, 0.01, seed, curve, curve[-1]["test"], curve[-1]["test"],
               reach, None if reach is None else 0.1 * reach, 1.0)


def _summaries() -> list[Summary]:
    """25 optimizers on two tasks: 3 seeds on the quadratic, 1 on moons; many profiles
    coincide (every fifth optimizer never reaches the targets)."""
    rows = []
    for i, name in enumerate(NAMES):
        reach = None if i % 5 == 4 else 10 * (1 + i % 3)
        rows.append(Summary("noisy_quadratic", name, 0.01, {0.001: 60.0, 0.01: 55.0 + i / 10},
                            [_run("noisy_quadratic", name, s, 50 + i / 10, reach)
                             for s in (1, 2, 3)]))
        rows.append(Summary("moons", name, 0.1, {0.1: 0.2, 1.0: math.inf},
                            [_run("moons", name, 1, 0.1 + i / 100, reach)]))
    return rows


def test_styles_tell_25_optimizers_apart_and_labels_are_spread():
    chosen = styles(NAMES)
    assert len({(s["color"], s["linestyle"]) for s in chosen.values()}) == 25
    placed = _spread([1.0] * 10 + [0.5, 0.52], 0.05, 0.0, 1.0)
    ordered = sorted(placed)
    assert all(b - a >= 0.05 - 1e-12 for a, b in zip(ordered, ordered[1:], strict=False))
    assert max(placed) <= 1.0


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run "
                                             "installs it)")
def test_figures_are_labelled_and_captioned_in_headless_chromium(tmp_path):
    index = write(Report(summaries=_summaries()), str(tmp_path / "report"))
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=10000", "--dump-dom", f"file://{index}"],
                         capture_output=True, text=True, timeout=120).stdout
    assert re.search(r'data-broken-images="0"', dom), "an image did not decode"
    figures = re.findall(r"<figure(.*?)>(.*?)</figure>", dom, flags=re.S)
    assert len(figures) == 3  # two tasks' curves and the profile
    for _, body in figures:
        caption = re.search(r"<figcaption>(.*?)</figcaption>", body, flags=re.S)
        assert caption and len(caption.group(1)) > 100, "a figure without a caption"
    captions = {a: html.unescape(re.sub("<[^>]+>", "", b)) for a, b in figures}
    moons = next(c for c in captions.values() if c.startswith("moons"))
    quadratic = next(c for c in captions.values() if c.startswith("noisy_quadratic"))
    assert "no band" in moons and "1 seed" in moons
    assert "95 % confidence interval" in quadratic and "3 seeds" in quadratic
    assert "(unitless)" in quadratic and "fraction of examples" in moons
    attributes = next(a for a in captions if "data-overlapping-labels" in a)
    labels = html.unescape(re.search(r'data-labels="([^"]*)"', attributes).group(1))
    assert sorted(labels.split("|")) == NAMES
    assert re.search(r'data-overlapping-labels="0"', attributes)
    assert "2 seeds" not in captions[attributes] and "1 to 3 seeds" in captions[attributes]
    shot = tmp_path / "report" / "screenshot.png"  # for a human to look at
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                    "--window-size=1200,3000", f"--screenshot={shot}", f"file://{index}"],
                   capture_output=True, timeout=120)
    assert len(Image.open(shot).convert("RGB").getcolors(maxcolors=1_000_000)) > 100
    print(f"screenshot: {shot}")
