"""Running core jobs off the GUI thread and turning their progress into throttled Qt signals.

Core jobs are plain functions taking a :class:`~lithotse_desktop.progress.Progress`; the
callback runs on the worker thread, so it only emits a queued signal, at most every
``interval`` seconds, to keep the event loop free however fast the job reports. A report
within the interval is kept and sent by a timer in the GUI thread: the last of a quick burst
("building year_emergencies", then "deciding which cells to hide" a few milliseconds later) was
dropped, and the strip showed the first for the minutes the decision took.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from ..errors import Cancelled
from ..progress import Progress, ProgressState, run_job


class JobSignals(QObject):
    """Signals of one job; they live in the GUI thread so connected slots run there."""

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object, str)
    cancelled = Signal()


class Job(QRunnable):
    """Runs ``fn(*args, progress=..., **kwargs)`` (or without progress) on a pool thread.

    The pool owns and deletes the runnable when ``run`` returns (auto-delete), so a page may
    drop its reference at any time; pages only touch the Python side (``signals``,
    ``cancel``) afterwards, never the deleted C++ object. :func:`start` holds the Python side
    until its last signal is delivered; then it (a cycle: the job and its progress callback) goes
    with Python's cycle collector, which the window runs in the GUI thread (:mod:`.collector`), so
    ``signals`` is deleted where it lives.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, with_progress: bool = True,
                 interval: float = 0.05, **kwargs: Any) -> None:
        super().__init__()
        self.signals = JobSignals()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._interval = interval
        self._last_emit = 0.0
        self._held: ProgressState | None = None
        """The last report within the interval, not sent yet (see :meth:`send_held`)."""
        self._holding = threading.Lock()
        self._held_timer: QTimer | None = None
        self.progress = Progress(self._report)
        self._with_progress = with_progress
        self.cancelled_with: Cancelled | None = None
        """The cancel the job ended in, with what it had committed before (read on ``cancelled``)."""

    def _report(self, state: ProgressState) -> None:
        now = time.monotonic()
        with self._holding:
            if now - self._last_emit < self._interval:
                self._held = dataclasses.replace(state)
                return
            self._last_emit = now
            self._held = None
        self.signals.progress.emit(dataclasses.replace(state))

    def send_held(self) -> None:
        """Send the report held back by the interval, if any (a timer in the GUI thread calls
        this, see :func:`start`; the job's end drops it, so it never follows the end)."""
        with self._holding:
            held, self._held = self._held, None
            if held is not None:
                self._last_emit = time.monotonic()
        if held is not None:
            self.signals.progress.emit(held)

    def _drop_held(self) -> None:
        with self._holding:
            self._held = None

    def cancel(self) -> None:
        self.progress.cancel()

    @property
    def kept(self) -> str:
        """What the job had committed before it was cancelled ("" for nothing, or not cancelled)."""
        return self.cancelled_with.kept if self.cancelled_with is not None else ""

    def run(self) -> None:
        kwargs = dict(self._kwargs)
        if self._with_progress:
            kwargs["progress"] = self.progress
        try:
            result = run_job(lambda _progress: self._fn(*self._args, **kwargs), self.progress)
        except Cancelled as exc:
            self.cancelled_with = exc
            self._drop_held()
            self.signals.cancelled.emit()
        except Exception as exc:  # shown to the user as a message box, never re-raised
            self._drop_held()
            self.signals.failed.emit(exc, traceback.format_exc())
        else:
            self._drop_held()
            self.signals.finished.emit(result)


def pool() -> QThreadPool:
    return QThreadPool.globalInstance()


_started: set[Job] = set()
"""Jobs held from their start until their last signal has reached every slot. The pool lets go of
a job when ``run`` returns; one nobody else holds (a form's sample load) is then kept only by the
cycle through its signals' slots, and a collection before its queued signal is delivered deleted
its signals and, with them, the queued call: the result was lost."""


def start(job: Job) -> Job:
    _started.add(job)
    held = QTimer()  # in the GUI thread: sends what the interval held back
    held.setInterval(max(1, int(job._interval * 1000)))
    held.timeout.connect(job.send_held)

    def let_go(*_args: object) -> None:  # after the calls this signal queued (a call queued behind them)
        held.stop()
        QTimer.singleShot(0, lambda: _started.discard(job))

    for last in (job.signals.finished, job.signals.failed, job.signals.cancelled):
        last.connect(let_go)
    job._held_timer = held
    held.start()
    pool().start(job)
    return job


def wait_for_jobs(msecs: int = 30000) -> bool:
    """Block until every running job ends (used on quit and by tests)."""
    return pool().waitForDone(msecs)
