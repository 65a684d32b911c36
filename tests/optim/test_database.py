"""The optimizer database is complete and its test ids say what they test."""

from __future__ import annotations

import functools
import re
from collections import Counter

import pytest

import optimlab.optim as oo

from .database import DATABASE, cases


def _constructor(name: str) -> tuple[type, dict]:
    """A registry entry's class and the preset keywords it adds (``momentum`` → SGD, μ=0.9)."""
    entry = oo.REGISTRY[name]
    if isinstance(entry, functools.partial):
        return entry.func, dict(entry.keywords)
    return entry, {}


def _covers(hp: dict, preset: dict) -> bool:
    """A set exercises a preset: it sets every preset key, flags to the preset's value."""
    return all(key in hp and (hp[key] == value if isinstance(value, bool) else bool(hp[key]))
               for key, value in preset.items())


def test_registry_is_what_the_database_checks():
    assert oo.names() == list(oo.REGISTRY)


@pytest.mark.parametrize("flavor", oo.FLAVORS)
@pytest.mark.parametrize("name", oo.names())
def test_every_registered_optimizer_has_inputs_in_every_flavor(name, flavor):
    cls, preset = _constructor(name)
    entries = [info for info in DATABASE if info.cls is cls and info.flavor == flavor]
    assert entries, (f"registry entry {name!r} ({cls.__name__}) has no {flavor}-flavor entry "
                     f"in tests/optim/database.py")
    sets = [hp for info in entries for hp in info.hyperparameters]
    assert sets, f"{cls.__name__}-{flavor} has no hyper-parameter set"
    assert any(_covers(hp, preset) for hp in sets), (
        f"registry entry {name!r} presets {preset}; no {cls.__name__}-{flavor} set uses them")


def test_one_entry_per_class_and_flavor():
    counts = Counter(info.id for info in DATABASE)
    assert [i for i, n in counts.items() if n > 1] == []


@pytest.mark.parametrize("info", DATABASE, ids=lambda info: info.id)
def test_every_set_has_a_distinct_description(info):
    descriptions = [description for description, _ in info.sets]
    for description in descriptions:
        assert re.fullmatch(r"[a-z][a-z0-9_+.=]*", description), (
            f"{info.id}: description {description!r} must be lower-case words joined by '+' "
            f"(it becomes part of a test id)")
    assert len(set(descriptions)) == len(descriptions), f"{info.id}: {descriptions}"
    values = [repr(sorted(hp.items())) for hp in info.hyperparameters]
    assert len(set(values)) == len(values), f"{info.id}: two sets are the same"


def test_ids_are_unique_and_first_sets_end_in_0():
    ids = [c.id for c in cases()]
    assert len(set(ids)) == len(ids)
    first = [c.id for c in cases() if c.id.endswith("-0")]  # the filter the tests use
    assert first == [info.case_id(0) for info in DATABASE if not info.closure]
