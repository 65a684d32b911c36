"""Test-session settings shared by every test module."""

from __future__ import annotations


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
