"""Progress and cancellation for long jobs, shared by the CLI, the GUI and tests.

Long jobs are plain functions that accept a :class:`Progress`; they report with
``update`` and call ``check`` at safe points, where a cancel request raises
:class:`~lithotse_desktop.errors.Cancelled` before anything is committed. Run under
:meth:`Progress.running`, a job's DuckDB queries are interrupted by its cancel too (see
:mod:`.interrupts`), except within a commit (:meth:`Progress.shielded`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import interrupts
from .errors import Cancelled

REINTERRUPT_SECONDS = 0.05
"""How often a cancelled job's queries are interrupted again until it ends (see
:meth:`Progress._keep_interrupting`)."""


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
    _watched: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    """Connections whose query a cancel interrupts (see :meth:`running`)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: int = 0
    """Jobs running with this progress (:meth:`running`)."""
    _ended: threading.Event = field(default_factory=threading.Event)
    """Set when no job runs with it any more: the end of :meth:`_keep_interrupting`."""
    _interrupting: threading.Thread | None = None

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
        """Ask the job to stop: its next check raises, and the queries it runs now, or starts
        before that check, are interrupted (unless it is committing: it stops after)."""
        self._cancel.set()  # first: a second Ctrl-C's handler, run inside this one, then leaves at once
        with self._lock:
            self._interrupt_watched()
            if self._running and self._interrupting is None:
                self._interrupting = threading.Thread(target=self._keep_interrupting, name="lithotse-cancel",
                                                      daemon=True)
                self._interrupting.start()

    def _interrupt_watched(self) -> None:
        """Interrupt the query each watched connection runs, unless the job is committing. Under
        the lock."""
        if self._shielded:
            return
        for con in list(self._watched):
            with contextlib.suppress(Exception):  # closed since: nothing runs on it
                con.interrupt()

    def _keep_interrupting(self) -> None:
        """After a cancel, until the job ends: DuckDB forgets an interrupt when its next query
        begins, so a cancel that came while the job was between queries (in Python, or between
        its last check and the query) let that query run to its end, seconds over 5M rows; every
        :data:`REINTERRUPT_SECONDS` the watched connections are interrupted again."""
        while not self._ended.wait(REINTERRUPT_SECONDS):
            with self._lock:
                self._interrupt_watched()

    def watch(self, con: Any) -> None:
        """Interrupt what ``con`` runs when this job is cancelled (held weakly)."""
        with self._lock:
            self._watched.add(con)

    @contextlib.contextmanager
    def running(self) -> Iterator[Progress]:
        """The job's stretch in this context: every connection opened in it is watched."""
        with self._lock:
            self._running += 1
            self._ended.clear()
        try:
            with interrupts.watching(self.watch):
                yield self
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._ended.set()
                    self._interrupting = None

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set() and not self._shielded:
            raise Cancelled()

    @contextlib.contextmanager
    def shielded(self) -> Iterator[Progress]:
        """A stretch that must run to its end once begun (a commit): a cancel asked before it
        stops the job before it begins; one asked within it waits for the next check after it
        (the commit's work is then done, and said so, not reported as cancelled)."""
        with self._lock:
            self.check()
            self._shielded += 1
        try:
            yield self
        finally:
            with self._lock:
                self._shielded -= 1


T = TypeVar("T")


def run_job(job: Callable[[Progress], T], progress: Progress) -> T:
    """``job(progress)`` as the job runners (the CLI's, the app's) run it: its queries are
    interrupted by its cancel, and a failure that interrupt caused is the cancel."""
    with progress.running():
        try:
            return job(progress)
        except Cancelled:
            raise
        except Exception as exc:
            if progress.cancelled and interrupts.interrupted(exc):
                raise Cancelled() from exc
            raise
