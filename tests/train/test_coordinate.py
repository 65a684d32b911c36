"""Dictionary learning against scikit-learn, and block coordinate descent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_sparse_coded_signal
from sklearn.decomposition import DictionaryLearning as SklearnDictionaryLearning

from optimlab.optim import SGD
from optimlab.train import BlockCoordinateDescent, DictionaryLearning


@pytest.mark.parametrize("code_method", ["cd", "ista"])
def test_dictionary_learning_reaches_sklearns_objective_monotonically(code_method):
    x, _, _ = make_sparse_coded_signal(n_samples=100, n_components=15, n_features=20,
                                       n_nonzero_coefs=3, random_state=0)
    rng = np.random.RandomState(1)
    w0 = rng.randn(15, 20)
    w0 /= np.linalg.norm(w0, axis=1, keepdims=True)
    h0 = np.zeros((100, 15))
    alpha = 0.5
    reference = SklearnDictionaryLearning(
        n_components=15, alpha=alpha, fit_algorithm="cd", transform_algorithm="lasso_cd",
        dict_init=w0.copy(), code_init=h0.copy(), max_iter=100, tol=1e-8, random_state=0).fit(x)
    ours = DictionaryLearning(alpha=alpha, max_iter=100, code_method=code_method)
    codes, dictionary = ours.fit(torch.tensor(x), torch.tensor(w0), torch.tensor(h0))
    final = ours.objectives[-1]
    assert final <= 1.05 * reference.error_[-1]
    steps = np.diff(ours.objectives)
    assert (steps <= 1e-12 * np.abs(ours.objectives[:-1])).all()  # never increases
    assert torch.all(torch.linalg.vector_norm(dictionary, dim=1) <= 1 + 1e-12)
    assert (codes == 0).float().mean() > 0.5  # sparse codes


def _least_squares(seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(50, generator=gen, dtype=torch.float64)
    return a, b, torch.linalg.lstsq(a, b.unsqueeze(1)).solution.squeeze(1)


def test_exact_block_solvers_reach_the_least_squares_solution():
    a, b, solution = _least_squares()
    u = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)

    def solve_u():
        u.copy_(torch.linalg.lstsq(a[:, :3], (b - a[:, 3:] @ v).unsqueeze(1)).solution[:, 0])

    def solve_v():
        v.copy_(torch.linalg.lstsq(a[:, 3:], (b - a[:, :3] @ u).unsqueeze(1)).solution[:, 0])

    bcd = BlockCoordinateDescent({"u": [u], "v": [v]}, solvers={"u": solve_u, "v": solve_v})
    for _ in range(200):
        bcd.sweep(lambda: None)
    torch.testing.assert_close(torch.cat([u, v]), solution, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("order", ["cyclic", "random"])
def test_inner_optimizer_per_block(order):
    a, b, solution = _least_squares()
    u = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def closure():
        for p in (u, v):
            p.grad = None
        loss = ((a @ torch.cat([u, v]) - b) ** 2).mean()
        loss.backward()
        return loss

    bcd = BlockCoordinateDescent({"u": [u], "v": [v]}, lambda ps: SGD(ps, lr=0.2),
                                 order=order, inner_steps=5, seed=0)
    for _ in range(400):
        bcd.sweep(closure)
    torch.testing.assert_close(torch.cat([u, v]).detach(), solution, rtol=1e-5, atol=1e-6)
    assert set(bcd.visits[:2]) == {"u", "v"}
    if order == "cyclic":
        assert bcd.visits[:4] == ["u", "v", "u", "v"]
    with pytest.raises(ValueError, match="order='zigzag'"):
        BlockCoordinateDescent({"u": [u]}, lambda ps: SGD(ps, lr=0.1), order="zigzag")
