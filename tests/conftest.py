"""Test-session settings shared by every test module."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    """Keep pytest-xdist's ``--dist loadgroup`` working: the tests marked
    ``xdist_group(name)`` run on one worker (a module fixture such as test_distributed's
    torchrun launch then runs once, not once per worker). pytest-xdist marks them by appending
    ``@name`` to their node ids through ``item._nodeid``, which pytest 9 no longer reads (node
    ids live in ``item._id``); without it every test is scheduled on its own."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest < 9: pytest-xdist's own suffix works
        return
    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        if names and item.nodeid.rfind("@") <= item.nodeid.rfind("]"):  # not yet suffixed
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (``OMP_NUM_THREADS=1`` does it for a subprocess): the
    lab's small tasks run their tiny operations ~10× slower with two threads per process on a
    shared 2-core machine (each waits for a descheduled peer); what the tests check does not
    depend on it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
