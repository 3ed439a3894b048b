"""Cancelling a job: its checks, its commits, and the DuckDB queries it runs."""

from __future__ import annotations

import threading
import time

import pytest

from lithotse_desktop import engine
from lithotse_desktop.errors import Cancelled
from lithotse_desktop.progress import Progress, run_job
from tests.support.jobs import cancelled_while

ENDLESS = "SELECT count(*) FROM range(1000000000000) t(i) WHERE hash(i) % 7 = 1"
"""Hours of work for DuckDB: a query only an interrupt ends within a test's time."""


def test_a_cancel_interrupts_the_query_its_job_runs_and_no_other(tmp_path):
    limits = engine.Limits(10**9, tmp_path / "tmp")
    started = threading.Event()

    def job(progress: Progress) -> int:
        con = engine.connect(limits)
        started.set()
        return con.sql(ENDLESS).fetchall()[0][0]

    bystander = engine.connect(limits)  # opened outside the job: its query, running meanwhile, is not the job's
    answers: list = []
    beside = threading.Thread(target=lambda: started.wait(60) and answers.append(
        bystander.sql("SELECT count(*) FROM range(200000000) t(i) WHERE i % 7 = 1").fetchall()))
    beside.start()
    cancel = cancelled_while(job, Progress(), started)
    beside.join(60)
    assert cancel.committed == []
    assert answers == [[(28571429,)]]


def test_a_cancel_asked_before_a_commit_stops_the_job_before_it():
    progress = Progress()
    progress.cancel()
    ran = []
    with pytest.raises(Cancelled), progress.shielded():
        ran.append("commit")
    assert ran == []


def test_a_cancel_within_a_commit_lets_it_finish_and_interrupts_none_of_its_queries(tmp_path):
    """A commit's work is done once begun and is not reported as cancelled (the import's audit
    record follows it); the next check stops the job."""
    limits = engine.Limits(10**9, tmp_path / "tmp")
    progress = Progress()
    with progress.running(), progress.shielded():
        con = engine.connect(limits)
        canceller = threading.Timer(0.1, progress.cancel)  # while the query below runs (about a second)
        canceller.start()
        started = time.monotonic()
        assert con.sql("SELECT count(*) FROM range(200000000) t(i) WHERE i % 7 = 1").fetchall() == [(28571429,)]
        canceller.join()
        assert time.monotonic() - started > 0.1, "the query ended before the cancel: nothing was tried"
    assert progress.cancelled
    with pytest.raises(Cancelled):
        progress.check()


def test_a_query_begun_after_the_cancel_is_interrupted_too(tmp_path):
    """A cancel that comes while the job is between queries (in Python, or between its last check
    and its next query) let that query run to its end, seconds over 5M rows: DuckDB forgets an
    interrupt when a query begins. Until the job ends, its queries are interrupted again."""
    limits = engine.Limits(10**9, tmp_path / "tmp")
    progress = Progress()

    def job(progress: Progress) -> int:
        con = engine.connect(limits)
        progress.check()
        progress.cancel()  # the cancel arrives just after the check, before the query below begins
        return con.sql(ENDLESS).fetchall()[0][0]

    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=_outcome(job, progress)), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the query begun after the cancel ran on"
    assert isinstance(outcome["result"], Cancelled), outcome


def _outcome(job, progress: Progress):
    try:
        return run_job(job, progress)
    except Exception as exc:
        return exc
