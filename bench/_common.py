"""Helpers shared by the benchmarks: timing, medians, a throwaway workspace."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def median_time(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def scratch_workspace(prefix: str):
    """A workspace in a temp folder whose secrets (the HMAC key) stay in that folder too."""
    from lithotse_desktop.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("LITHOTSE_SECRETS_STORE", "file")
    os.environ.setdefault("LITHOTSE_SECRETS_DIR", str(tmp / "secrets"))
    return tmp, Workspace.create(tmp / "ws")
