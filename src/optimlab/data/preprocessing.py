"""Preprocessing fitted on training data and applied to any split: tensors in, tensors out.

Zero-centering, standardization, min-max scaling, PCA (a number of components or a fraction of
variance kept), PCA and ZCA whitening; each with ``fit`` / ``transform`` / ``fit_transform`` /
``inverse_transform``, checked against scikit-learn. Statistics are taken over the first
dimension (examples); every other dimension is a feature.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Transformer", "Center", "Standardize", "MinMax", "PCA", "Whiten"]


class Transformer:
    """Base: ``fit`` learns statistics from training data, ``transform`` applies them."""

    fitted = False

    def fit(self, x: Tensor) -> Transformer:
        x = self._check(x, fitting=True)
        self._fit(x.reshape(x.shape[0], -1))
        self.shape_ = tuple(x.shape[1:])
        self.fitted = True
        return self

    def transform(self, x: Tensor) -> Tensor:
        x = self._check(x)
        return self._transform(x.reshape(x.shape[0], -1)).reshape(self._out_shape(x))

    def fit_transform(self, x: Tensor) -> Tensor:
        return self.fit(x).transform(x)

    def inverse_transform(self, z: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} must be fitted before inverse_transform")
        return self._inverse(z.reshape(z.shape[0], -1)).reshape(z.shape[0], *self.shape_)

    def _out_shape(self, x: Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def _check(self, x: Tensor, fitting: bool = False) -> Tensor:
        if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 2:
            raise ValueError(f"{type(self).__name__} takes a floating tensor of shape "
                             f"(examples, features...), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if fitting and x.shape[0] < 2:
            raise ValueError(f"{type(self).__name__}.fit needs at least 2 examples, got "
                             f"{x.shape[0]}")
        if not fitting:
            if not self.fitted:
                raise RuntimeError(f"{type(self).__name__} must be fitted before transform")
            if tuple(x.shape[1:]) != self.shape_:
                raise ValueError(f"{type(self).__name__} was fitted on features of shape "
                                 f"{self.shape_}, got {tuple(x.shape[1:])}")
        return x

    def _fit(self, x: Tensor) -> None:
        raise NotImplementedError

    def _transform(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _inverse(self, z: Tensor) -> Tensor:
        raise NotImplementedError


class Center(Transformer):
    """x − mean (zero-centering)."""

    def _fit(self, x):
        self.mean_ = x.mean(0)

    def _transform(self, x):
        return x - self.mean_

    def _inverse(self, z):
        return z + self.mean_


class Standardize(Transformer):
    """(x − mean) / std, the population std (as scikit-learn's StandardScaler); a constant
    feature is only centered."""

    def _fit(self, x):
        self.mean_ = x.mean(0)
        std = x.std(0, unbiased=False)
        self.scale_ = torch.where(std > torch.finfo(x.dtype).eps * 10, std, torch.ones_like(std))

    def _transform(self, x):
        return (x - self.mean_) / self.scale_

    def _inverse(self, z):
        return z * self.scale_ + self.mean_


class MinMax(Transformer):
    """Scale each feature to ``feature_range`` (as scikit-learn's MinMaxScaler)."""

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0)):
        low, high = feature_range
        if not low < high:
            raise ValueError(f"feature_range={feature_range!r} must have low < high")
        self.feature_range = (float(low), float(high))

    def _fit(self, x):
        low, high = self.feature_range
        self.data_min_, self.data_max_ = x.min(0).values, x.max(0).values
        spread = self.data_max_ - self.data_min_
        spread = torch.where(spread > 0, spread, torch.ones_like(spread))
        self.scale_ = (high - low) / spread
        self.min_ = low - self.data_min_ * self.scale_

    def _transform(self, x):
        return x * self.scale_ + self.min_

    def _inverse(self, z):
        return (z - self.min_) / self.scale_


class PCA(Transformer):
    """Projection on the principal components.

    Args:
        n_components: an int (how many components), a float in (0, 1) (the fewest components
            keeping at least that fraction of the variance), or None (all).

    Components are signed as scikit-learn's (the largest |entry| of each positive), so the
    projections agree with ``sklearn.decomposition.PCA``.
    """

    def __init__(self, n_components: int | float | None = None):
        if n_components is not None:
            valid = (isinstance(n_components, int) and not isinstance(n_components, bool)
                     and n_components >= 1) or (isinstance(n_components, float)
                                                and 0 < n_components < 1)
            if not valid:
                raise ValueError(f"n_components={n_components!r} must be an int >= 1, a float "
                                 f"in (0, 1) or None")
        self.n_components = n_components

    def _fit(self, x):
        n, d = x.shape
        self.mean_ = x.mean(0)
        _, s, vt = torch.linalg.svd(x - self.mean_, full_matrices=False)
        rows = torch.arange(vt.shape[0])
        signs = torch.sign(vt[rows, vt.abs().argmax(1)])
        vt = vt * signs[:, None]
        variance = s**2 / (n - 1)
        ratio = variance / variance.sum()
        k = self.n_components
        if k is None:
            k = min(n, d)
        elif isinstance(k, float):
            k = int(torch.searchsorted(torch.cumsum(ratio, 0), torch.tensor(
                k, dtype=ratio.dtype), right=True).item()) + 1
        if k > min(n, d):
            raise ValueError(f"n_components={k} exceeds min(examples, features) = {min(n, d)}")
        self.components_ = vt[:k]
        self.explained_variance_ = variance[:k]
        self.explained_variance_ratio_ = ratio[:k]
        self.n_components_ = k

    def _transform(self, x):
        return (x - self.mean_) @ self.components_.T

    def _out_shape(self, x):
        return (x.shape[0], self.n_components_)

    def _inverse(self, z):
        return z @ self.components_ + self.mean_


class Whiten(PCA):
    r"""Decorrelate and scale to unit variance: the training data's covariance becomes I.

    PCA whitening: :math:`z = (x - \mu) V \Lambda^{-1/2}`; ZCA whitening rotates back,
    :math:`z = (x - \mu) V \Lambda^{-1/2} V^\top`, the whitened data closest to the input
    (Bell & Sejnowski 1997). ``eps`` is added to the eigenvalues Λ (covariance with n − 1).
    """

    METHODS = ("pca", "zca")

    def __init__(self, method: str = "zca", eps: float = 0.0,
                 n_components: int | float | None = None):
        if method not in self.METHODS:
            raise ValueError(f"method={method!r} is not one of {', '.join(self.METHODS)}")
        if not eps >= 0:
            raise ValueError(f"eps={eps!r} must be >= 0")
        if method == "zca" and n_components is not None:
            raise ValueError("ZCA whitening keeps every component: n_components must be None")
        super().__init__(n_components)
        self.method, self.eps = method, eps

    def _fit(self, x):
        super()._fit(x)
        scale = torch.sqrt(self.explained_variance_ + self.eps)
        if (scale == 0).any():
            raise ValueError("a component has zero variance: set eps > 0 or keep fewer "
                             "components")
        self.scale_ = scale

    def _transform(self, x):
        z = super()._transform(x) / self.scale_
        return z @ self.components_ if self.method == "zca" else z

    def _out_shape(self, x):
        return tuple(x.shape) if self.method == "zca" else (x.shape[0], self.n_components_)

    def _inverse(self, z):
        if self.method == "zca":
            z = z @ self.components_.T
        return super()._inverse(z * self.scale_)
