"""Preprocessing against scikit-learn; whitening gives identity covariance."""

from __future__ import annotations

import pytest
import torch
from sklearn import decomposition, preprocessing

from optimlab import data


@pytest.fixture(scope="module")
def x():
    gen = torch.Generator().manual_seed(0)
    mixing = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    return torch.randn(300, 6, generator=gen, dtype=torch.float64) @ mixing * 3 + 5


def as_np(t):
    return t.numpy()


def test_standardize_matches_standard_scaler(x):
    ours = data.Standardize().fit(x[:200])
    ref = preprocessing.StandardScaler().fit(as_np(x[:200]))
    torch.testing.assert_close(ours.transform(x[200:]),
                               torch.from_numpy(ref.transform(as_np(x[200:]))))
    torch.testing.assert_close(ours.inverse_transform(ours.transform(x)), x)


def test_minmax_matches_minmax_scaler(x):
    ours = data.MinMax((-1.0, 1.0)).fit(x[:200])
    ref = preprocessing.MinMaxScaler((-1.0, 1.0)).fit(as_np(x[:200]))
    torch.testing.assert_close(ours.transform(x), torch.from_numpy(ref.transform(as_np(x))))
    torch.testing.assert_close(ours.inverse_transform(ours.transform(x)), x)


def test_center(x):
    c = data.Center().fit(x)
    torch.testing.assert_close(c.transform(x).mean(0), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(c.inverse_transform(c.transform(x)), x)


@pytest.mark.parametrize("n_components", [3, 0.9, None])
def test_pca_matches_sklearn(x, n_components):
    ours = data.PCA(n_components).fit(x[:200])
    ref = decomposition.PCA(n_components, svd_solver="full").fit(as_np(x[:200]))
    assert ours.n_components_ == ref.n_components_
    torch.testing.assert_close(ours.components_, torch.from_numpy(ref.components_))
    torch.testing.assert_close(ours.explained_variance_,
                               torch.from_numpy(ref.explained_variance_))
    torch.testing.assert_close(ours.transform(x[200:]),
                               torch.from_numpy(ref.transform(as_np(x[200:]))))
    torch.testing.assert_close(ours.inverse_transform(ours.transform(x)),
                               torch.from_numpy(ref.inverse_transform(ref.transform(as_np(x)))))


@pytest.mark.parametrize("method", ["pca", "zca"])
def test_whitening_gives_identity_covariance_and_inverts(x, method):
    w = data.Whiten(method).fit(x)
    z = w.transform(x)
    cov = torch.cov(z.T)
    assert (cov - torch.eye(6, dtype=torch.float64)).abs().max() <= 1e-5
    torch.testing.assert_close(w.inverse_transform(z), x)
    if method == "pca":  # PCA whitening = sklearn's PCA(whiten=True)
        ref = decomposition.PCA(whiten=True, svd_solver="full").fit(as_np(x))
        torch.testing.assert_close(z, torch.from_numpy(ref.transform(as_np(x))))
    else:  # ZCA: the whitened data closest to the centered input (a symmetric transform)
        pca_white = data.Whiten("pca").fit(x).transform(x)
        assert ((z - (x - x.mean(0))) ** 2).sum() < ((pca_white - (x - x.mean(0))) ** 2).sum()


def test_images_keep_their_shape_and_errors(x):
    images = torch.randn(50, 1, 4, 4, dtype=torch.float64)
    s = data.Standardize().fit(images)
    assert s.transform(images).shape == (50, 1, 4, 4)
    with pytest.raises(ValueError, match=r"fitted on features of shape \(1, 4, 4\)"):
        s.transform(torch.randn(5, 16, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="must be fitted"):
        data.PCA(2).transform(x)
    with pytest.raises(ValueError, match="n_components=1.5"):
        data.PCA(1.5)
    with pytest.raises(ValueError, match="method='pcb'"):
        data.Whiten("pcb")
