"""Running a job as the CLI and the app do, and cancelling it while it works."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from lithotse_desktop.errors import Cancelled
from lithotse_desktop.progress import Progress, run_job


def cancelled_while(job: Callable[[Progress], Any], progress: Progress, started: threading.Event) -> Cancelled:
    """Run ``job`` on a thread through :func:`run_job`, cancel it a moment after ``started`` is
    set (inside the query that follows), and return the cancel it ended in; fails where the job
    runs on for a minute after the cancel, or ends otherwise."""
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = run_job(job, progress)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert started.wait(60), outcome
    time.sleep(0.3)
    progress.cancel()
    thread.join(60)
    assert not thread.is_alive(), "the job ran on after the cancel"
    assert isinstance(outcome.get("error"), Cancelled), outcome
    return outcome["error"]
