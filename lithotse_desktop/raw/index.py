"""A local SQLite index of manifests: a cache only, rebuilt from the store at any time."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable

from ..errors import NotFound
from ..storage import Store
from .manifest import Manifest

SCHEMA = """
CREATE TABLE IF NOT EXISTS landings (
    key TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    landed_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS landings_stream ON landings(source, stream, landed_at, seq);
"""


class RawIndex:
    def __init__(self, path: Path, store: Store) -> None:
        self.path = Path(path)
        self.store = store
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, manifest: Manifest) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO landings VALUES (?,?,?,?,?,?,?,?)",
                (manifest.key, manifest.id, manifest.source, manifest.stream, manifest.sha256,
                 manifest.landed_at, manifest.seq, manifest.dumps().decode()))

    def refresh(self, *, rebuild: bool = False) -> int:
        """Add manifests present in the store but not yet indexed; returns how many were added."""
        if rebuild:
            with self.db:
                self.db.execute("DELETE FROM landings")
        known = {row[0] for row in self.db.execute("SELECT key FROM landings")}
        added = 0
        for info in self.store.list("manifests/"):
            if info.key in known or not info.key.endswith(".json"):
                continue
            self.add(Manifest.loads(self.store.get_bytes(info.key)))
            added += 1
        return added

    def _rows(self, sql: str, args: Iterable = ()) -> list[Manifest]:
        return [Manifest.loads(row[0]) for row in self.db.execute(sql, tuple(args))]

    def landings(self, source: str | None = None, stream: str | None = None) -> list[Manifest]:
        where, args = [], []
        if source:
            where.append("source = ?")
            args.append(source)
        if stream:
            where.append("stream = ?")
            args.append(stream)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._rows(f"SELECT body FROM landings {clause} ORDER BY landed_at, seq", args)

    def get(self, ident: str) -> Manifest:
        rows = self._rows("SELECT body FROM landings WHERE id = ? OR id LIKE ? OR sha256 LIKE ? "
                          "ORDER BY landed_at", (ident, ident + "%", ident + "%"))
        if not rows:
            raise NotFound(f"no landing with id or sha256 {ident!r}")
        exact = [m for m in rows if m.id == ident]
        if exact:
            return exact[0]
        ids = {m.id for m in rows}
        if len(ids) > 1:
            raise NotFound(f"{ident!r} matches {len(ids)} landings; give more characters")
        return rows[0]

    def cursors(self, source: str) -> dict[str, object]:
        """The incremental state per stream: the cursor of the newest committed landing."""
        state: dict[str, object] = {}
        for row in self.db.execute("SELECT stream, body FROM landings WHERE source = ? "
                                   "ORDER BY landed_at, seq", (source,)):
            cursor = json.loads(row[1]).get("cursor")
            if cursor is not None:
                state[row[0]] = cursor
        return state
