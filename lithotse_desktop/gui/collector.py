"""Python's cycle collector, run in the GUI thread only while a window is open.

Python collects reference cycles in whichever thread happens to allocate past a threshold, and
the desktop's workers allocate a lot (builds, previews, audits). Widgets, models and job signals
caught in a cycle (a lambda holding its dialog, say) would then be deleted in a worker thread,
which Qt forbids for objects living in the GUI thread: the GUI thread may be painting them or
delivering their queued signals at that moment. So while a window is open, automatic collection
is off and a timer in the GUI thread collects the generations whose thresholds were passed.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 250


class _Holds:
    """How many collectors hold automatic collection off, and whether it was on before the first."""

    count = 0
    was_enabled = True


class _Hold:
    """One collector's hold, released once: by ``stop`` or when Qt deletes the collector."""

    def __init__(self) -> None:
        if _Holds.count == 0:
            _Holds.was_enabled = gc.isenabled()
        _Holds.count += 1
        gc.disable()
        self.held = True

    def release(self, *_args: object) -> None:
        if not self.held:
            return
        self.held = False
        _Holds.count -= 1
        if _Holds.count == 0:
            collect_due()
            if _Holds.was_enabled:
                gc.enable()


class GuiThreadCollector(QObject):
    """Owned by a window: collects while it is open, gives collection back when it closes."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        hold = self._hold = _Hold()
        self.destroyed.connect(lambda *_: hold.release())
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(collect_due)
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self._hold.release()


def collect_due() -> int:
    """Collect the oldest generation whose count passed its threshold, as Python would have."""
    counts = gc.get_count()
    thresholds = gc.get_threshold()
    due = [g for g in range(3) if thresholds[g] and counts[g] > thresholds[g]]
    return gc.collect(due[-1]) if due else 0
