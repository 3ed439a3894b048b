"""Jobs run off the GUI thread, but what Qt owns of them goes in the GUI thread."""

from __future__ import annotations

import gc
import threading

import pytest

from lithotse_desktop.errors import Cancelled
from lithotse_desktop.gui import jobs


def answer() -> int:
    return 42


def refuse() -> None:
    raise ValueError("no")


def give_up() -> None:
    raise Cancelled()


def allocate() -> None:
    """What a worker's build leaves the collector: cycles, past the youngest threshold."""
    for _ in range(2_000):
        a: list = []
        b = [a]
        a.append(b)


@pytest.mark.parametrize(("fn", "signal"), [(answer, "finished"), (refuse, "failed"), (give_up, "cancelled")])
def test_a_done_jobs_signals_are_deleted_in_the_gui_thread_whoever_allocates(qtbot, window, fn, signal):
    """A worker making garbage, as a build does, used to set off the collector in its own thread,
    which deleted the signals of jobs done earlier there."""
    said: list[str] = []
    deleted_in: list[threading.Thread] = []
    job = jobs.Job(fn, with_progress=False)
    getattr(job.signals, signal).connect(lambda *_: said.append(signal))
    job.signals.destroyed.connect(lambda *_: deleted_in.append(threading.current_thread()))
    jobs.start(job)
    qtbot.waitUntil(lambda: said == [signal], timeout=5000)
    del job
    old = gc.get_threshold()
    gc.set_threshold(old[0], 1, 1)  # the job may sit in the oldest generation: due soon
    try:
        for _ in range(5):
            worker = threading.Thread(target=allocate)
            worker.start()
            worker.join()
            qtbot.wait(50)
    finally:
        gc.set_threshold(*old)
    assert deleted_in in ([], [threading.main_thread()])
    gc.collect()  # what the window's timer does once enough is due
    assert deleted_in == [threading.main_thread()]
