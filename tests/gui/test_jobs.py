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
