"""The one message for a name that is not among the allowed ones (an optimizer, a task, an
initializer, ...): the name asked for, the allowed name it most likely meant (a typo), and every
allowed name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["unknown"]


def unknown(what: str, name: object, allowed: Iterable[str], also: str = "") -> str:
    """``unknown optimizer 'adamm': did you mean 'adam'? choose one of sgd, ...`` (``also``
    appended to the list: ``" (or 'all')"``)."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(name).lower(), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {name!r}: {hint}choose one of {', '.join(allowed)}{also}"
