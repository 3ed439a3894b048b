"""While a window is open, reference cycles are collected in the GUI thread only."""

from __future__ import annotations

import gc
import threading
import weakref

from lithotse_desktop.gui.window import MainWindow

CYCLES = 1000


class Node:
    partner: Node


def make_cycles(freed_in: list[threading.Thread]) -> None:
    """Garbage made by a worker, with enough allocations to pass the youngest threshold."""
    for _ in range(CYCLES):
        a, b = Node(), Node()
        a.partner, b.partner = b, a
        weakref.finalize(a, lambda: freed_in.append(threading.current_thread()))


def test_cycles_a_worker_leaves_are_collected_in_the_gui_thread(qtbot, window):
    assert not gc.isenabled()
    freed_in: list[threading.Thread] = []
    worker = threading.Thread(target=make_cycles, args=(freed_in,))
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: len(freed_in) > CYCLES // 2, timeout=10000)  # the timer's collections
    gc.collect()  # the last few, fewer than a threshold, wait for more garbage in the app
    assert len(freed_in) == CYCLES
    assert set(freed_in) == {threading.main_thread()}


def test_closing_the_last_window_gives_collection_back(qtbot, workspace, test_plugins):
    assert gc.isenabled()
    first, second = MainWindow(workspace), MainWindow(workspace)
    qtbot.addWidget(first)
    qtbot.addWidget(second)
    assert not gc.isenabled()
    first.close()
    assert not gc.isenabled(), "the other window still needs it"
    second.close()
    assert gc.isenabled()
    first.close()
    assert gc.isenabled(), "closing twice releases once"
