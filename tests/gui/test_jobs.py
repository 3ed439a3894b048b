"""A job's result reaches its slots even when nothing but its slots holds the job."""

from __future__ import annotations

import gc

import pytest

from lithotse_desktop.errors import Cancelled
from lithotse_desktop.gui import jobs


def answer() -> int:
    return 42


def refuse() -> None:
    raise ValueError("no")


def give_up() -> None:
    raise Cancelled()


def start_unheld(fn, signal: str, said: list[str]) -> None:
    """As a form starts its sample load: the job is connected, started, and not kept."""
    job = jobs.Job(fn, with_progress=False)
    getattr(job.signals, signal).connect(lambda *_: said.append(signal))
    jobs.start(job)


@pytest.mark.parametrize(("fn", "signal"), [(answer, "finished"), (refuse, "failed"), (give_up, "cancelled")])
def test_a_job_nobody_holds_delivers_its_end_whenever_the_collector_runs(qtbot, fn, signal):
    """The aggregate form's sample never arrived in the demo's screenshots: the collector ran
    between the job's end and the delivery of its signal, and deleted the signal with the job."""
    said: list[str] = []
    start_unheld(fn, signal, said)
    assert jobs.wait_for_jobs(10000)
    gc.collect()
    qtbot.waitUntil(lambda: said == [signal], timeout=5000)


def test_the_last_report_of_a_quick_burst_reaches_the_strip(qtbot):
    """A build reports "building year_emergencies" and, milliseconds later, "deciding which
    cells to hide", then nothing for the minutes the decision takes: the throttle dropped the
    second, and the app showed the first all along. A report within the interval is held and
    sent by the GUI thread's timer; what the job reports after its end is never sent."""
    import threading

    told: list[str] = []
    release = threading.Event()

    def build(progress) -> str:
        progress.update("building year_emergencies on duckdb")
        progress.update("deciding which cells to hide in month_0, month_1, month_2 and 17 more")
        release.wait(10)
        return "built"

    job = jobs.Job(build, interval=0.2)
    job.signals.progress.connect(lambda state: told.append(state.message))
    job.signals.finished.connect(lambda result: told.append(result))
    jobs.start(job)
    try:
        qtbot.waitUntil(lambda: told[-1:] == ["deciding which cells to hide in month_0, month_1, month_2 and 17 more"],
                        timeout=5000)
    finally:
        release.set()
    qtbot.waitUntil(lambda: told[-1:] == ["built"], timeout=5000)
    assert told == ["building year_emergencies on duckdb",
                    "deciding which cells to hide in month_0, month_1, month_2 and 17 more", "built"]
