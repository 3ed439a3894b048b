"""API reads in the audit trail: gathered per derivative and version, written as one record a while.

A cell lookup must stay fast (milliseconds), so reads are not written one by one: they are
counted in memory, and an ``api-read`` audit record with the counts is appended every
``[serve] audit_seconds`` (60 by default) by a background thread, and once more when the
server stops. A failed write is logged and its counts kept for the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from .. import audit
from ..workspace import Workspace

log = logging.getLogger("lithotse.serve")
DEFAULT_SECONDS = 60.0


class ReadLog:
    def __init__(self, ws: Workspace, interval: float | None = None) -> None:
        self.ws = ws
        configured = (ws.config.get("serve") or {}).get("audit_seconds")
        self.interval = float(interval if interval is not None else configured or DEFAULT_SECONDS)
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._last = time.monotonic()

    def note(self, derivative: str, version: str | None, what: str) -> None:
        """One read: ``what`` is ``table``, ``value`` or ``refused`` (a row-level derivative asked for)."""
        with self._lock:
            self._counts[(derivative, version or "", what)] += 1
            due = time.monotonic() - self._last >= self.interval
        if due and not self._writing.locked():
            threading.Thread(target=self.flush, name="lithotse-audit-reads", daemon=True).start()

    def flush(self) -> dict | None:
        """Write what was counted since the last record; None when there was nothing."""
        with self._writing:
            with self._lock:
                counts, self._counts = self._counts, Counter()
                self._last = time.monotonic()
            if not counts:
                return None
            reads: dict[tuple[str, str], dict[str, int]] = {}
            for (derivative, version, what), n in counts.items():
                reads.setdefault((derivative, version), {})[what] = n
            rows = [{"derivative": d, "version": v or None, **n} for (d, v), n in sorted(reads.items())]
            try:
                return audit.record(self.ws, "api-read", reads=rows, requests=sum(counts.values()))
            except Exception as exc:  # the API keeps answering; the counts wait for the next record
                log.warning("could not write the audit record of API reads: %s", exc)
                with self._lock:
                    self._counts.update(counts)
                return None

    def close(self) -> None:
        self.flush()
