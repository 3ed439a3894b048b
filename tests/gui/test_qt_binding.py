"""The Qt binding keeps Python's reference counts: a release that does not is not installable.

PySide6 6.12.0 took a reference from None at each call of a Python slot by a timer or a queued
signal, and from True or False at each ``emit`` from Python; the app died within minutes of use
(in the cycle collector, once None itself was freed), and the GUI tests at random."""

from __future__ import annotations

import subprocess
import sys

CALLS = 2000

PROBE = f"""
import sys
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

app = QCoreApplication([])


class Sender(QObject):
    bare = Signal()
    carrying = Signal(object)


calls = []
timer = QTimer()
timer.setInterval(0)
timer.timeout.connect(lambda: calls.append(1))
none_before = sys.getrefcount(None)
timer.start()
while len(calls) < {CALLS}:
    app.processEvents()
timer.stop()
none_lost = none_before - sys.getrefcount(None)

sender = Sender()
sender.bare.connect(lambda: None)
sender.carrying.connect(lambda value: None)
bools_before = sys.getrefcount(True) + sys.getrefcount(False)
for _ in range({CALLS}):
    sender.bare.emit()
    sender.carrying.emit(1)
bools_lost = bools_before - sys.getrefcount(True) - sys.getrefcount(False)
print(none_lost, bools_lost)
"""


def test_slots_and_emits_leave_none_and_the_booleans_their_references():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    none_lost, bools_lost = map(int, done.stdout.split())
    assert none_lost < CALLS // 10, f"{none_lost} references to None lost over {CALLS} timer calls"
    assert bools_lost < CALLS // 10, f"{bools_lost} references to True/False lost over {2 * CALLS} emits"
