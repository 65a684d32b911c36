"""Whether an optimizer applies to a problem, and the lab skipping those that do not: an
optimizer for matrices only has no meaning on a 2-D surface's vector of 2 numbers."""

from __future__ import annotations

import math

import pytest
import torch

from optimlab import optim
from optimlab.lab import construct
from optimlab.lab.animate import animate_surface
from optimlab.lab.properties import measure, table
from optimlab.lab.protocol import sweep
from optimlab.lab.report import Report, write
from optimlab.lab.tasks import run_task


def matrix_only_sgd(params, **kwargs):
    """SGD that refuses parameters that are not matrices, as Muon does."""
    opt = optim.SGD(params, **kwargs)
    for group in opt.param_groups:
        for p in group["params"]:
            if p.ndim != 2:
                raise ValueError(f"matrix_only needs 2-D parameters, got {tuple(p.shape)}")
    return opt


@pytest.fixture
def matrix_only(monkeypatch):
    monkeypatch.setitem(optim.REGISTRY, "matrix_only", matrix_only_sgd)
    return "matrix_only"


def test_not_applicable_says_why_and_leaves_the_tensors_alone(matrix_only):
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert "2-D parameters" in construct.not_applicable(matrix_only, [theta])
    assert construct.not_applicable(matrix_only, [torch.ones(3, 2)]) is None
    assert construct.not_applicable("adam", [theta]) is None
    assert theta.grad is None and theta.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
        construct.not_applicable("nope", [theta])


def test_surfaces_properties_animations_and_report_skip_it(matrix_only, tmp_path):
    results = sweep(["beale"], ["sgd", matrix_only], [1e-3], steps=20)
    skipped = next(s for s in results if s.optimizer == matrix_only)
    assert "2-D parameters" in skipped.not_applicable and math.isinf(skipped.mean)
    assert skipped.tied_with_best is None and skipped.runs[0].not_applicable
    assert next(s for s in results if s.optimizer == "sgd").not_applicable is None
    rows = measure([matrix_only])
    assert rows[0].not_applicable and rows[0].adaptive is None
    assert table(rows).row_count == 1
    gif = animate_surface("beale", ["sgd", matrix_only], str(tmp_path / "beale.gif"), steps=20,
                          frames=5)
    page = open(write(Report(summaries=results, properties=rows, animations=[gif]),
                      str(tmp_path)), encoding="utf-8").read()
    assert page.count("not applicable: matrix_only needs 2-D parameters") == 2
    assert page.count("<figcaption>") == 1


def test_a_task_model_uses_the_combined_form_when_the_registry_has_one(matrix_only,
                                                                        monkeypatch):
    plain = run_task("moons", matrix_only, 0.1)  # nn.Linear's bias is not a matrix
    assert "2-D parameters" in plain.not_applicable and not plain.curve
    monkeypatch.setitem(construct.COMBINED, matrix_only, "matrix_groups")
    monkeypatch.setattr(optim, "matrix_groups",
                        lambda model: [p for p in model.parameters() if p.ndim == 2],
                        raising=False)
    combined = run_task("moons", matrix_only, 0.1)
    assert combined.not_applicable is None and combined.curve and not combined.diverged


def test_muon_is_not_applicable_to_a_vector_and_combined_on_a_model():
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert "Muon only supports 2D parameters" in construct.not_applicable("muon", [theta])
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4),
                                torch.nn.LayerNorm(4), torch.nn.Linear(4, 10))
    assert construct.not_applicable("muon", model) is None
    opt = construct.build("muon", model, lr=0.02)
    algorithm = {id(p): g["algorithm"] for g in opt.param_groups for p in g["params"]}
    assert algorithm.pop(id(model[1].weight)) == "muon"  # the one hidden matrix
    assert set(algorithm.values()) == {"adamw"} and len(algorithm) == 6
    assert all(g["lr"] == 0.02 for g in opt.param_groups)
