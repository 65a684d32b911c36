"""Every dataset loads with no network, with its documented shapes, reproducibly."""

from __future__ import annotations

import socket

import pytest
import torch

from optimlab import data

EXPECTED = {  # name: (examples in all splits, feature shape, classes or None)
    "digits": (1797, (1, 8, 8), 10),
    "mnist": (5000, (1, 28, 28), 10),
    "moons": (1000, (2,), 2),
    "noisy_quadratic": (2000, (100,), None),
    "teacher_student": (2000, (20,), None),
}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_loads_offline_with_documented_shapes(name, no_network):
    splits = data.DATASETS[name](seed=0)
    total, shape, classes = EXPECTED[name]
    assert len(splits.train) + len(splits.val) + len(splits.test) == total
    for part in (splits.train, splits.val, splits.test):
        assert tuple(part.x.shape[1:]) == shape and len(part.x) == len(part.y) > 0
    if classes:
        labels = torch.cat([splits.train.y, splits.val.y, splits.test.y])
        assert set(labels.tolist()) == set(range(classes))
    assert len(splits.train) > len(splits.test)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_same_seed_same_split(name):
    a, b, c = (data.DATASETS[name](seed=s) for s in (1, 1, 2))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)


def test_mnist_is_real_images():
    splits = data.mnist()
    x = splits.train.x
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert 0.05 < (x > 0.5).float().mean() < 0.3  # ink on a white page, not noise


def test_noisy_quadratic_curvature():
    splits = data.noisy_quadratic(dim=10, n=20000)
    h = splits.info["curvature"]
    var = splits.train.x.var(0)
    torch.testing.assert_close(var * h, torch.ones(10), rtol=0.1, atol=0)


@pytest.mark.parametrize("mode, size", [("full", 1257), ("mini-batch", 32), ("stochastic", 1)])
def test_loaders(mode, size):
    train = data.digits().train
    batches = list(data.loader(train, mode, batch_size=32, seed=0))
    assert len(batches[0][0]) == size
    assert sum(len(b[0]) for b in batches) == len(train)
    again = list(data.loader(train, mode, batch_size=32, seed=0))
    assert torch.equal(batches[0][1], again[0][1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="val \\+ test"):
        data.digits(val=0.5, test=0.5)
    with pytest.raises(ValueError, match="mode='batch'"):
        data.loader(data.moons().train, "batch")
    with pytest.raises(ValueError, match="batch_size=0"):
        data.loader(data.moons().train, batch_size=0)


def test_torchvision_datasets_say_what_they_need():
    with pytest.raises(ValueError, match="unknown torchvision dataset 'svhn'"):
        data.torchvision_dataset("svhn")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match="needs torchvision"):
            data.torchvision_dataset("cifar10")
