"""A local SQLite index of manifests: a cache only, rebuilt from the stores at any time.

A workspace may read several raw stores (its own plus, say, a team's shared bucket); the index
holds the manifests of all of them and remembers which store each came from, so a reader
fetches the object from there. The manifest JSON itself never names a store: the same
landing can be copied between stores unchanged.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..connectors import fold_cursor
from ..errors import NotFound
from ..storage import Store
from ..workspace import Workspace
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
    body TEXT NOT NULL,
    store TEXT
);
CREATE INDEX IF NOT EXISTS landings_stream ON landings(source, stream, landed_at, seq);
"""

_STORE_ATTR = "_lithotse_store"


def landing_store(manifest: Manifest) -> str | None:
    """The name of the raw store an indexed manifest was found in; None means the raw tier's."""
    return getattr(manifest, _STORE_ATTR, None)


def _with_store(manifest: Manifest, store: str | None) -> Manifest:
    # kept off the dataclass fields so the manifest's JSON (and equality) stay as written
    setattr(manifest, _STORE_ATTR, store)
    return manifest


def _set_up(db: sqlite3.Connection) -> None:
    """WAL mode and the schema. Switching the journal mode does not wait out the busy timeout, so
    two threads or processes opening a new index at once (the desktop app's pages do) may see
    "database is locked" at once: that is retried until ten seconds have passed."""
    deadline = time.monotonic() + 10
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class RawIndex:
    """Manifests of one or more raw stores; ``stores`` lists them by name, the written-to one first.

    A bare Store is indexed without a name (its landings then count as the raw tier's).
    """

    def __init__(self, path: Path, stores: Store | Sequence[tuple[str, Store]]) -> None:
        self.path = Path(path)
        self.stores: list[tuple[str | None, Store]] = (
            [(None, stores)] if isinstance(stores, Store) else list(stores))
        self.store = self.stores[0][1]
        self.db = sqlite3.connect(self.path, timeout=30)
        _set_up(self.db)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(landings)")}
        if "store" not in columns:  # an index made before raw stores were named
            with self.db:
                self.db.execute("ALTER TABLE landings ADD COLUMN store TEXT")

    def close(self) -> None:
        self.db.close()

    def add(self, manifest: Manifest, store: str | None = None) -> None:
        """Index a manifest; ``store`` names the raw store holding it (None: the raw tier's)."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO landings VALUES (?,?,?,?,?,?,?,?,?)",
                (manifest.key, manifest.id, manifest.source, manifest.stream, manifest.sha256,
                 manifest.landed_at, manifest.seq, manifest.dumps().decode(), store))

    def refresh(self, *, rebuild: bool = False) -> int:
        """Add manifests present in the stores but not yet indexed; returns how many were added.

        Stores are read in order, so a landing present in several (after a sync) is read from
        the first, the workspace's own. Rows of stores no longer configured are dropped.
        """
        names = [name for name, _store in self.stores if name is not None]
        with self.db:
            if rebuild:
                self.db.execute("DELETE FROM landings")
            elif None not in [name for name, _store in self.stores]:
                marks = ",".join("?" * len(names))
                self.db.execute(f"DELETE FROM landings WHERE store IS NOT NULL AND store NOT IN ({marks})",
                                names)
        known = {row[0] for row in self.db.execute("SELECT key FROM landings")}
        added = 0
        for name, store in self.stores:
            for info in store.list("manifests/"):
                if info.key in known or not info.key.endswith(".json"):
                    continue
                self.add(Manifest.loads(store.get_bytes(info.key)), name)
                known.add(info.key)
                added += 1
        return added

    def _rows(self, sql: str, args: Iterable = ()) -> list[Manifest]:
        return [_with_store(Manifest.loads(row[0]), row[1])
                for row in self.db.execute(sql, tuple(args))]

    def landings(self, source: str | None = None, stream: str | None = None) -> list[Manifest]:
        """Landings of every raw store, oldest first; see :func:`landing_store` for where each is."""
        where, args = [], []
        if source:
            where.append("source = ?")
            args.append(source)
        if stream:
            where.append("stream = ?")
            args.append(stream)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._rows(f"SELECT body, store FROM landings {clause} ORDER BY landed_at, seq", args)

    def get(self, ident: str) -> Manifest:
        rows = self._rows("SELECT body, store FROM landings WHERE id = ? OR id LIKE ? OR sha256 LIKE ? "
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
        """The incremental state per stream, folded over its committed landings, oldest first.

        A newer cursor replaces an older one, except that ``files`` maps (the files a file
        source has read, see :class:`~lithotse_desktop.connectors.FileTracker`) are merged and
        each file gains the range of the landings that name it (:func:`fold_cursor`), so each
        landing records only its own file, and its range once. Landings of every indexed raw
        store count, so a file a teammate already landed in a shared raw store is not imported again.
        """
        state: dict[str, object] = {}
        for row in self.db.execute("SELECT stream, body FROM landings WHERE source = ? "
                                   "ORDER BY landed_at, seq", (source,)):
            manifest = Manifest.loads(row[1])
            if manifest.cursor is not None:
                state[row[0]] = fold_cursor(state.get(row[0]), manifest.cursor, manifest.date_range)
        return state


def open_index(ws: Workspace, *, rebuild: bool = False) -> RawIndex:
    """The landing index over every raw store of the workspace, refreshed from them."""
    index = RawIndex(ws.local_dir / "raw-index.sqlite", ws.raw_stores())
    try:
        index.refresh(rebuild=rebuild)
    except BaseException:
        index.close()
        raise
    return index
