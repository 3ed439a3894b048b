"""Progress and cancellation for long jobs, shared by the CLI, the GUI and tests.

Long jobs are plain functions that accept a :class:`Progress`; they report with
``update`` and call ``check`` at safe points, where a cancel request raises
:class:`~lithotse_desktop.errors.Cancelled` before anything is committed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Cancelled


@dataclass
class ProgressState:
    message: str = ""
    done: int = 0
    total: int | None = None
    records: int = 0


@dataclass
class Progress:
    """Thread-safe progress sink with a cancel flag; callbacks run on the worker's thread."""

    callback: Callable[[ProgressState], None] | None = None
    state: ProgressState = field(default_factory=ProgressState)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _shielded: int = 0

    def update(self, message: str | None = None, *, done: int | None = None,
               total: int | None = None, advance: int = 0, records: int = 0) -> None:
        if message is not None:
            self.state.message = message
        if total is not None:
            self.state.total = total
        if done is not None:
            self.state.done = done
        self.state.done += advance
        self.state.records += records
        if self.callback is not None:
            self.callback(self.state)
        self.check()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set() and not self._shielded:
            raise Cancelled()

    @contextlib.contextmanager
    def shielded(self):
        """A stretch that must run to its end once begun (a commit): cancel waits until after it."""
        self._shielded += 1
        try:
            yield self
        finally:
            self._shielded -= 1
        self.check()
