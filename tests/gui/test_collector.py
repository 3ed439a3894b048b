"""While a window is open, Python's cycle collector runs in the GUI thread only.

A collection set off in a pool thread deleted whatever Qt objects it found in cycles there (the
signals of finished jobs, closed dialogs' models), outside the thread they live in."""

from __future__ import annotations

import gc
import threading
import weakref

from lithotse_desktop.gui import jobs
from lithotse_desktop.gui.window import MainWindow

CYCLES = 1000


class Node:
    partner: Node


def make_cycles(freed_in: list[threading.Thread]) -> int:
    """Garbage as a job makes it, well past the youngest threshold."""
    for _ in range(CYCLES):
        a, b = Node(), Node()
        a.partner, b.partner = b, a
        weakref.finalize(a, lambda: freed_in.append(threading.current_thread()))
    return CYCLES


def test_a_job_making_garbage_never_sets_off_the_collector_in_its_thread(qtbot, window):
    assert not gc.isenabled()
    collecting_in: list[threading.Thread] = []
    freed_in: list[threading.Thread] = []

    def note(phase: str, _info: dict) -> None:
        if phase == "start":
            collecting_in.append(threading.current_thread())

    gc.callbacks.append(note)
    try:
        done: list[int] = []
        for _ in range(3):
            job = jobs.Job(make_cycles, freed_in, with_progress=False)
            job.signals.finished.connect(done.append)
            jobs.start(job)
        qtbot.waitUntil(lambda: len(done) == 3, timeout=10000)
        qtbot.waitUntil(lambda: len(freed_in) > CYCLES, timeout=10000)  # the window's timer collects
    finally:
        gc.callbacks.remove(note)
    gc.collect()  # the last few, fewer than a threshold, wait for more garbage in the app
    assert collecting_in and set(collecting_in) == {threading.main_thread()}
    assert len(freed_in) == 3 * CYCLES and set(freed_in) == {threading.main_thread()}


def test_closing_the_last_window_gives_collection_back(qtbot, workspace, test_plugins):
    from lithotse_desktop.gui.collector import _Holds

    held, enabled = _Holds.count, gc.isenabled()  # whatever earlier tests left
    first, second = MainWindow(workspace), MainWindow(workspace)
    qtbot.addWidget(first)
    qtbot.addWidget(second)
    assert _Holds.count == held + 2 and not gc.isenabled()
    first.close()
    assert _Holds.count == held + 1 and not gc.isenabled(), "the other window still needs it"
    second.close()
    assert _Holds.count == held and gc.isenabled() == enabled
    first.close()
    assert _Holds.count == held, "closing twice releases once"
