"""Queries a cancel interrupts: the DuckDB connections the job running in this context opened.

A job checks for a cancel between steps, but one DuckDB query over a 5M-row input runs for
seconds, and the app's Cancel (or the first Ctrl-C) waited for it. A job's runner makes its
progress the watcher of its context (:meth:`.progress.Progress.running`); every connection the
core opens (:func:`.engine.connect`, a build's side cursors, a connector's through the plugin
API) is handed to it here, and a cancel calls ``interrupt()`` on each, so the query under way
fails at once with DuckDB's interrupt error and the job ends as cancelled. This module sits
below ``engine`` and ``progress``, which may not import each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

_watcher: ContextVar[Callable[[Any], None] | None] = ContextVar("lithotse_interrupts", default=None)

C = TypeVar("C")


def interruptible(con: C) -> C:
    """``con`` (a DuckDB connection or cursor), handed to the job running in this context, whose
    cancel then interrupts the query ``con`` runs; returned as it is."""
    watch = _watcher.get()
    if watch is not None:
        watch(con)
    return con


@contextlib.contextmanager
def watching(watch: Callable[[Any], None]) -> Iterator[None]:
    """Within: every connection made interruptible in this context is handed to ``watch``."""
    token = _watcher.set(watch)
    try:
        yield
    finally:
        _watcher.reset(token)


def interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error behind it, is DuckDB's interrupted query (also where a wrapper
    kept only its text)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "InterruptException" or "INTERRUPT Error" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
