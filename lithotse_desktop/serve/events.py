"""Change notifications: which version of each derivative is current, as it changes.

Versions are published by whichever process builds (``lithotse import``, ``lithotse derive
build``, the desktop app), usually not the server's, so the server finds out by polling the
L2 catalog's ``CURRENT`` pointers: every 0.2 s when the derived tier is a local folder (a
directory listing and one small file per derivative), and for a remote store (S3) the L3
cache's pointers every 0.2 s (one local query; a build on this machine updates them) plus
L2 itself every ``[cache] revalidate_seconds``. Polling runs only while someone listens.

``GET /api/v1/events`` streams them as Server-Sent Events (see :func:`sse_stream`). SSE rather
than long polling: one open response carries every change the moment it is seen, with no
request per change and no window between polls in which a change could fall. Every event
carries the whole ``{name: version}`` map, so a client that reconnects cannot miss a version
and needs no ``Last-Event-ID`` bookkeeping. The add-in reads the stream with ``fetch`` (not
``EventSource``, which cannot send headers), so the token stays in the ``Authorization``
header, out of URLs and logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator

from ..cache import cache_for
from ..derive.catalog import Catalog, current_key
from ..storage.local import LocalStore
from ..workspace import Workspace

log = logging.getLogger("lithotse.serve")

TICK = 0.2
KEEPALIVE = 15.0
RETRY_MS = 2000


class VersionWatch:
    """The current version of every derivative of one workspace, polled while anyone listens."""

    def __init__(self, ws: Workspace, *, tick: float = TICK) -> None:
        self.ws = ws
        self.tick = tick
        self.closed = False
        self._versions: dict[str, str] = {}
        self._sequence = 0
        self._polled = False
        self._listeners = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        self._last_full = 0.0

    # --- what listeners see ---------------------------------------------------------
    def snapshot(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self._sequence, dict(self._versions)

    def subscribe(self) -> None:
        """Count one more listener, polling once first so it starts from the current state."""
        with self._lock:
            self._listeners += 1
            first = not self._polled
        if first:
            self.poll()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lithotse-version-watch", daemon=True)
                self._thread.start()

    def unsubscribe(self) -> None:
        with self._lock:
            self._listeners = max(0, self._listeners - 1)

    def close(self) -> None:
        """End the polling and every open stream (the server is shutting down)."""
        self.closed = True
        self._wake.set()

    # --- polling ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self.closed:
            with self._lock:
                if self._listeners == 0:
                    self._thread = None
                    return
            self.poll()
            self._wake.wait(self.tick)

    def _l2_versions(self) -> dict[str, str]:
        catalog = Catalog(self.ws)
        out: dict[str, str] = {}
        for name in catalog.names():
            try:
                pointer = json.loads(catalog.store.get_bytes(current_key(name)))
            except (FileNotFoundError, KeyError):
                continue
            out[name] = str(pointer["version"])
        return out

    def _fresh(self, known: dict[str, str]) -> dict[str, str]:
        """The versions now: L2 itself when it is cheap to read or due, else L2 for the names
        whose L3 pointer moved."""
        cache = cache_for(self.ws)
        now = time.monotonic()
        if isinstance(Catalog(self.ws).store, LocalStore) or now - self._last_full >= cache.revalidate:
            self._last_full = now
            return self._l2_versions()
        cached = dict(cache.backend.entries())
        moved = {n for n in set(cached) | set(known) if cached.get(n) != known.get(n)}
        if not moved:
            return known
        return self._l2_versions()

    def poll(self) -> None:
        """Read the current versions once and announce any change."""
        with self._lock:
            known = dict(self._versions)
        try:
            fresh = self._fresh(known)
        except Exception as exc:  # a store that does not answer: keep announcing what was last seen
            if not self._warned:
                log.warning("cannot read derivative versions for change notifications: %s", exc)
                self._warned = True
            return
        self._warned = False
        if fresh != known:
            cache = cache_for(self.ws)
            for name in set(fresh) | set(known):
                if fresh.get(name) != known.get(name):
                    cache.expire(name)
        with self._lock:
            if fresh != self._versions or not self._polled:
                self._versions = fresh
                self._sequence += 1
            self._polled = True


def _event(sequence: int, versions: dict[str, str]) -> str:
    data = json.dumps({"sequence": sequence, "versions": versions}, sort_keys=True, separators=(",", ":"))
    return f"id: {sequence}\nevent: versions\ndata: {data}\n\n"


async def sse_stream(watch: VersionWatch, *, keepalive: float = KEEPALIVE) -> AsyncIterator[str]:
    """``versions`` events: one at once with the current map, then one per change; a comment
    line every ``keepalive`` seconds so proxies and clients see the connection is alive."""
    await asyncio.to_thread(watch.subscribe)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        seen = -1
        quiet_since = time.monotonic()
        while not watch.closed:
            sequence, versions = watch.snapshot()
            if sequence != seen:
                seen = sequence
                quiet_since = time.monotonic()
                yield _event(sequence, versions)
            elif time.monotonic() - quiet_since >= keepalive:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.05)
    finally:
        watch.unsubscribe()

