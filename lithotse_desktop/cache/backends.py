"""L3 cache backends: where published derivative tables sit for fast cell lookups.

A backend stores, per derivative, entries keyed by version (Arrow IPC bytes plus a small
JSON description) and a pointer naming the current version. The pointer and its entry
change together in one transaction, so a reader gets a whole version or nothing, and a
publish removes every other entry of the same derivative (and nothing else).

The default backend is one SQLite file in WAL mode under the workspace's machine-local
folder: many processes (desktop app, ``lithotse serve``, Excel's Python) read while a build
writes, each reader seeing a consistent snapshot. Every backend, the embedded one included
(see :mod:`.builtin`), comes through the ``lithotse_register_cache_backends`` hook.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from ..plugins import get_plugin_manager

ANY = object()
"""``expect`` for :meth:`CacheBackend.publish`: replace whatever version is current."""


class CacheBackend(Protocol):
    """What the lookup layer needs from a cache store; every method is safe across processes."""

    def pointer(self, name: str) -> str | None:
        """The current cached version of ``name``, or None."""

    def load(self, name: str) -> tuple[str, dict, bytes] | None:
        """``(version, meta, data)`` of the current entry, read atomically, or None."""

    def publish(self, name: str, version: str, meta: dict, data: bytes, *, expect: Any = ANY) -> bool:
        """Store an entry and make it current, dropping the name's other entries.

        ``expect`` is ANY (always), None (only if nothing is cached for the name) or a
        version string (only if that version is still current); returns whether it wrote.
        """

    def drop(self, name: str) -> None:
        """Forget every entry of one derivative."""

    def entries(self) -> list[tuple[str, str]]:
        """Every cached ``(name, version)``."""

    def close(self) -> None:
        """Release connections."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    name TEXT NOT NULL, version TEXT NOT NULL, meta TEXT NOT NULL, data BLOB NOT NULL,
    stored_at REAL NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS pointers (name TEXT PRIMARY KEY, version TEXT NOT NULL);
"""


class EmbeddedCache:
    """SQLite (WAL) file under the workspace's local folder; one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._retry(self._setup)

    @classmethod
    def from_workspace(cls, ws: Any, options: dict) -> EmbeddedCache:
        path = options.get("path")
        if path:
            path = Path(path).expanduser()
            if not path.is_absolute():
                path = ws.root / path
        return cls(path or ws.local_dir / "cache" / "l3.sqlite")

    def _connect(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA synchronous = NORMAL")
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    @staticmethod
    def _retry(func: Any, *args: Any) -> Any:
        """Retry on 'database is locked' beyond the busy timeout (WAL setup races)."""
        for attempt in range(50):
            try:
                return func(*args)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)
        return None

    def _setup(self) -> None:
        con = self._connect()
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def pointer(self, name: str) -> str | None:
        row = self._connect().execute("SELECT version FROM pointers WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def load(self, name: str) -> tuple[str, dict, bytes] | None:
        row = self._connect().execute(
            "SELECT e.version, e.meta, e.data FROM pointers p JOIN entries e "
            "ON e.name = p.name AND e.version = p.version WHERE p.name = ?", (name,)).fetchone()
        if row is None:
            return None
        return row[0], json.loads(row[1]), bytes(row[2])

    def publish(self, name: str, version: str, meta: dict, data: bytes, *, expect: Any = ANY) -> bool:
        return self._retry(self._publish, name, version, meta, data, expect)

    def _publish(self, name: str, version: str, meta: dict, data: bytes, expect: Any) -> bool:
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            if expect is not ANY:
                row = con.execute("SELECT version FROM pointers WHERE name = ?", (name,)).fetchone()
                if (row[0] if row else None) != expect:
                    con.execute("ROLLBACK")
                    return False
            con.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                        (name, version, json.dumps(meta, sort_keys=True), data, time.time()))
            con.execute("INSERT OR REPLACE INTO pointers VALUES (?, ?)", (name, version))
            con.execute("DELETE FROM entries WHERE name = ? AND version <> ?", (name, version))
            con.execute("COMMIT")
            return True
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def drop(self, name: str) -> None:
        def run() -> None:
            con = self._connect()
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM pointers WHERE name = ?", (name,))
            con.execute("DELETE FROM entries WHERE name = ?", (name,))
            con.execute("COMMIT")
        self._retry(run)

    def entries(self) -> list[tuple[str, str]]:
        rows = self._connect().execute("SELECT name, version FROM entries ORDER BY name, version")
        return [(r[0], r[1]) for r in rows]

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                try:
                    con.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()


def embedded_factory(ws: Any, options: dict) -> EmbeddedCache:
    return EmbeddedCache.from_workspace(ws, options)


def backend_factories() -> dict[str, Any]:
    """Every backend the plugins register, the built-in ``embedded`` one included."""
    return get_plugin_manager().cache_backends()


def cache_config(ws: Any) -> dict:
    """The workspace's ``[cache]`` table (backend name, its options, revalidation interval)."""
    config = dict(ws.config.get("cache") or {})
    config.setdefault("backend", "embedded")
    return config


def create_backend(ws: Any) -> CacheBackend:
    config = cache_config(ws)
    name = config["backend"]
    factories = backend_factories()
    if name not in factories:
        raise ConfigError(f"[cache] backend = {name!r}: no such cache backend; available: "
                          f"{', '.join(sorted(factories))} (a Redis backend comes with the "
                          "lithotse-redis plugin)")
    options = {k: v for k, v in config.items() if k not in ("backend", "revalidate_seconds", "max_bytes")}
    return factories[name](ws, options)
