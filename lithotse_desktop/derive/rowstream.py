"""Row-level derivatives computed and written in batches, never held whole in memory.

A view or a ``sql`` derivative can be as large as its input, so its result goes from DuckDB to a
zstd Parquet file batch by batch (pseudonymized and de-identified on the way) and the file is
then moved into the store under its sha256, as every part is. A view also reads its stream only
once and parses each resource once: as the batches of landed records arrive, each record's
identity and version (key, ``versionId``, ``lastUpdated``, landing, position) goes to one table
and the view's rows, tagged with the record they came from, to another; the newest version of
each record is chosen over the first table afterwards and only its rows are written. Both tables
hold a few small columns per record, not the resources, and DuckDB spills them to the
workspace's temp folder beyond ``[limits] memory``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import engine
from ..errors import ConfigError, LithotseError, NotFound
from ..progress import Progress
from ..raw.reader import PROVENANCE, StoredObject, read_object
from ..raw.sources import make_connector
from ..raw.verify import IntegrityChecks
from ..storage import Store
from ..workspace import Workspace
from .compile import DUCKDB, dedupe_sql
from .inputs import (
    NATIVE,
    NUMERIC_VERSIONS,
    NativeObject,
    StreamInput,
    dedupe_query,
    native_object,
    read_failed,
    stream_key,
)
from .kinds.view import rows_query

T = TypeVar("T")

ROW_ID = "__lithotse_record"
"""The landed record a view row came from (a number in reading order, so within one landing,
which is one object, it orders rows as their position does)."""
LANDING = "__lithotse_landing"
"""The landing a record is read for, as its rank among the stream's landings (newest largest)."""
VERSIONS = "__record_versions"
NEWEST = "__newest_records"
ROWS = "__view_rows"
BATCH_ROWS = 65_536
"""Rows per batch handed from DuckDB to the Parquet writer (and per row group)."""
VERSION_COLUMNS = ("versionId", "lastUpdated")


@dataclass
class StagedPart:
    """A part written to a local file, not yet in the store."""

    path: Path
    sha256: str
    rows: int
    bytes: int


def staging_dir(ws: Workspace) -> Path:
    """This process's folder for parts being written (folders of processes that are gone are
    removed first, as the spill folders are)."""
    root = ws.local_dir / "build-staging"
    engine.clean_stale(root)
    path = root / str(os.getpid())
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Prior:
    """What an incremental view build takes from the previous version: its published part,
    the record index beside it (see :data:`INDEX`), the rows it read and the landings it ranked."""

    part: str
    records: str | None
    row_ids: str
    read: int
    landings: list[str]
    objects: set[str]


class NotIncremental(Exception):
    """The new objects cannot be added to the previous version exactly; a full build is needed."""


@dataclass
class ViewLoad:
    """A view's stream read (see :func:`load_view`): the input's columns, the SQL of the view's
    rows of the newest versions (with their record number, :data:`ROW_ID`), and what the
    version's record index will hold."""

    schema: pa.Schema
    sql: str
    params: list[Any]
    read: int
    landings: list[str]
    records: bool
    dropped: pa.Array | None = None
    """Record numbers of the versions that are not the newest: their rows are left out."""
    kept: Callable[[], Iterator[tuple[pa.RecordBatch, pa.Array]]] | None = None
    """For an incremental build: the previous version's rows still newest, with their record
    numbers, written before the new ones (already pseudonymized and de-identified)."""


INDEX = "record_index"
"""A view version's stats entry naming its record index in the restricted store: the newest
version of each record (key, version, landing rank, record number, whether all its version ids
are numbers) and the record number of each published row, so the next build can add new
objects to it instead of reading every object again."""


def prior_of(catalog: Any, previous: Any, resolved: StreamInput) -> Prior | None:
    """The previous version as the start of an incremental build, or None when it cannot be one:
    no record index, an object it read gone or landed again, or a landing that ranks before one
    it read (each would change rows it kept)."""
    index = (previous.stats or {}).get(INDEX) if previous is not None else None
    part = (previous.partitions or {}).get("all") if previous is not None else None
    if not isinstance(index, dict) or not part:
        return None
    old = {tuple(x) for x in previous.inputs.get("input", {}).get("objects", [])}
    new = {tuple(x) for x in (list(t) for t in resolved.identities)}
    if not old <= new:
        return None
    shas = {x[0] for x in old}
    if any(x[0] in shas for x in new - old):
        return None
    landings = list(_landing_ranks(resolved).to_pylist())
    if landings[:len(index["landings"])] != index["landings"]:
        return None
    if not all(_stored(catalog, key) for key in (index.get("records"), index["row_ids"]) if key):
        return None
    return Prior(part["key"], index.get("records"), index["row_ids"], int(index["read"]), index["landings"], shas)


def _stored(catalog: Any, key: str) -> bool:
    """Whether a record index file is still there (a change of the derivative's class clears
    the area it was written beside)."""
    return catalog.store_of("restricted").stat(key) is not None


def load_view(con: duckdb.DuckDBPyConnection, ws: Workspace, spec: dict, resolved: StreamInput,
              progress: Progress, checks: IntegrityChecks, prior: Prior | None = None,
              catalog: Any = None) -> ViewLoad:
    """Read the view's stream once into the two small tables (see the module notes) — with a
    ``prior`` version, only the objects it did not read, choosing the newest versions among
    them and its record index — and return what :func:`write_part` writes."""
    q = DUCKDB.quote
    pending = _landed_batches(ws, resolved, progress, checks, skip=prior.objects if prior else set())
    first = first_read(pending, resolved, incremental=prior is not None)
    schema = first[1].schema
    columns = list(schema.names)
    key = stream_key(resolved, columns)
    missing = [k for k in key if k not in columns]
    if missing:
        raise ConfigError(f"{resolved.source}/{resolved.stream}: key column(s) {missing} are not in the data")
    if prior is not None and bool(key) != bool(prior.records):
        raise NotIncremental("the record identity changed")
    kept = [*key, *(c for c in VERSION_COLUMNS if c in columns and c not in key), LANDING, ROW_ID]
    picked = ", ".join(q(c) for c in kept)
    landings = _landing_ranks(resolved)
    ranks = {landing: i for i, landing in enumerate(landings.to_pylist())}
    where = f"{resolved.source}/{resolved.stream}"
    seen = prior.read if prior is not None else 0
    created = False
    threads = int((con.execute("SELECT current_setting('threads')").fetchone() or [1])[0])
    native = False
    for stored, item in chain([first], pending):
        progress.check()
        # a file DuckDB reads itself is read by one thread: each reading thread holds buffers of
        # the largest line's size, and its rows are numbered in file order (a streaming window)
        # anyway (at 1M Encounters on 2 shared cores: as fast as two threads, 20-50 MB less at the peak)
        native = native or isinstance(item, NativeObject)
        con.execute(f"SET threads = {1 if isinstance(item, NativeObject) else threads}")
        if isinstance(item, NativeObject):
            relation = _numbered(item, ranks, seen)
        else:
            numbers = pa.array(range(seen, seen + item.num_rows), pa.int64())
            rank = pc.index_in(item.column("_landing_id"), value_set=landings)
            con.register("__batch", item.append_column(LANDING, rank).append_column(ROW_ID, numbers))
            relation = "__batch"
        view_sql, params = rows_query(spec, schema, relation, ROW_ID)
        try:
            if not created:
                counted = con.execute(f"CREATE TABLE {VERSIONS} AS SELECT {picked} FROM {relation}").fetchone()
                con.execute(f"CREATE TABLE {ROWS} AS {view_sql}", params or None)
                created = True
            else:
                counted = con.execute(f"INSERT INTO {VERSIONS} BY NAME SELECT {picked} FROM {relation}").fetchone()
                con.execute(f"INSERT INTO {ROWS} {view_sql}", params or None)
            seen += counted[0] if counted else 0
        except duckdb.Error as exc:
            raise read_failed(checks, f"derivative {spec['name']}: {where}, {stored.reader.original_name}",
                              exc) from None
        finally:
            if not isinstance(item, NativeObject):
                con.unregister("__batch")
    # and so is the rest of the build: with a second thread choosing the newest versions and
    # scanning the rows to write, its peak grew with the stream (tests/plugins/fhir/test_view_memory.py:
    # 1.26x from 60k to 300k Encounters under a 256 MB limit; 1.11x with one)
    con.execute(f"SET threads = {1 if native else threads}")
    rows = f"SELECT * FROM {ROWS}"
    load = ViewLoad(pa.schema([f for f in schema if f.name not in PROVENANCE]), rows, [], seen,
                    landings.to_pylist(), bool(key))
    if key:
        try:
            if prior is None:
                # the newest versions first, on their own: the memory choosing them is given back
                # before the rows are written
                numeric = [NUMERIC_VERSIONS] if "versionId" in kept else []
                newest = dedupe_query(VERSIONS, key, kept, landing_order=(LANDING, ROW_ID), kept=kept + numeric)
                con.execute(f"CREATE TABLE {NEWEST} AS {newest}")
            else:
                load.dropped = _newest_with(con, catalog, prior, key, kept, ws)
            # the rows are filtered as they are written, not by a join here, which would not keep
            # their order: a plain scan of the rows table does
            if load.dropped is None:
                load.dropped = con.sql(f"SELECT {q(ROW_ID)} FROM {VERSIONS} ANTI JOIN {NEWEST} USING ({q(ROW_ID)})"
                                       ).to_arrow_table().column(0).combine_chunks()
        except duckdb.Error as exc:
            raise LithotseError(f"derivative {spec['name']}: {where}: {exc}") from None
        con.execute(f"DROP TABLE {VERSIONS}")
    if prior is not None:
        load.kept = _kept_rows(con, catalog, prior, bool(key), ws)
    return load


def newest_over(con: duckdb.DuckDBPyConnection, old: str, new: str, key: list[str], cols: list[str],
                order_last: list[str], versioned: bool, table: str) -> None:
    """Make ``table``: the newest version of each record over ``old`` (the newest version of each
    record before, with :data:`NUMERIC_VERSIONS` when ``versioned``) and ``new`` (new versions),
    and ``__winners``: the newest of the records ``new`` holds. Only those records are chosen
    again; the others are kept as they are. Exactly what choosing over every version gives, since
    a version that lost before still loses — unless a record's version ids stop being all numbers,
    which changes the order (:class:`NotIncremental`)."""
    q = DUCKDB.quote
    parts = ", ".join(q(k) for k in key)
    on = " AND ".join(f"o.{q(k)} IS NOT DISTINCT FROM n.{q(k)}" for k in key)
    con.execute(f"CREATE TEMP TABLE __new_keys AS SELECT DISTINCT {parts} FROM {new}")
    con.execute(f"CREATE TEMP TABLE __hit AS SELECT o.* FROM {old} o SEMI JOIN __new_keys n ON {on}")
    columns = ", ".join(q(c) for c in cols)
    if versioned:
        numeric, number = DUCKDB.version_number(q("versionId"))
        flipped = con.execute(
            f"SELECT count(*) FROM __hit o JOIN (SELECT {parts}, bool_and({numeric}) AS f FROM {new} GROUP BY ALL) n "
            f"ON {on} WHERE o.{NUMERIC_VERSIONS} AND NOT n.f").fetchone()
        if flipped and flipped[0]:
            raise NotIncremental("a record's version ids are no longer all numbers")
        both = (f"(SELECT *, bool_and(__f) OVER (PARTITION BY {parts}) AS {NUMERIC_VERSIONS} FROM "
                f"(SELECT {columns}, {NUMERIC_VERSIONS} AS __f FROM __hit "
                f"UNION ALL SELECT {columns}, {numeric} AS __f FROM {new}))")
        order = [f"CASE WHEN {NUMERIC_VERSIONS} THEN {number} END DESC NULLS LAST"]
        out = [*cols, NUMERIC_VERSIONS]
    else:
        both = f"(SELECT {columns} FROM __hit UNION ALL SELECT {columns} FROM {new})"
        order, out = [], list(cols)
    if "lastUpdated" in cols:
        order.append(f"{q('lastUpdated')} DESC NULLS LAST")
    order += [f"{q(c)} DESC" for c in order_last if c in cols]
    outs = ", ".join(q(c) for c in out)
    con.execute(f"CREATE TEMP TABLE __winners AS {dedupe_sql(both, key, order, DUCKDB, columns=out)}")
    con.execute(f"CREATE TABLE {table} AS SELECT {outs} FROM (SELECT o.* FROM {old} o ANTI JOIN __new_keys n "
                f"ON {on}) UNION ALL SELECT {outs} FROM __winners")
    con.execute("DROP TABLE __new_keys")


def _newest_with(con: duckdb.DuckDBPyConnection, catalog: Any, prior: Prior, key: list[str], kept: list[str],
                 ws: Workspace) -> pa.Array:
    """The newest versions (:data:`NEWEST`) over the previous version's and the new ones (see
    :func:`newest_over`); the old ones replaced go to ``__superseded``; returns the record numbers
    of the new versions that are not the newest."""
    q = DUCKDB.quote
    assert prior.records is not None
    _table_from_part(con, catalog, prior.records, "__old_records", ws)
    old_names = {r[0] for r in con.execute("DESCRIBE __old_records").fetchall()}
    if set(kept) - old_names or ("versionId" in kept) != (NUMERIC_VERSIONS in old_names):
        raise NotIncremental("the previous record index lacks columns")
    newest_over(con, "__old_records", VERSIONS, key, kept, [LANDING, ROW_ID], "versionId" in kept, NEWEST)
    row = q(ROW_ID)
    con.execute(f"CREATE TABLE __superseded AS SELECT {row} FROM __hit ANTI JOIN __winners USING ({row})")
    dropped = con.sql(f"SELECT {row} FROM {VERSIONS} ANTI JOIN __winners USING ({row})").to_arrow_table()
    for table in ("__old_records", "__hit", "__winners"):
        con.execute(f"DROP TABLE {table}")
    return dropped.column(0).combine_chunks()


def _kept_rows(con: duckdb.DuckDBPyConnection, catalog: Any, prior: Prior, keyed: bool,
               ws: Workspace) -> Callable[[], Iterator[tuple[pa.RecordBatch, pa.Array]]]:
    """The previous version's rows whose records are still newest, batch by batch, each with its
    record number (the record index holds them in the order of the rows)."""
    gone = pa.array([], pa.int64())
    if keyed:
        gone = con.sql(f"SELECT {DUCKDB.quote(ROW_ID)} FROM __superseded").to_arrow_table().column(0).combine_chunks()
        con.execute("DROP TABLE __superseded")

    def batches() -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
        numbers = _part_batches(catalog, prior.row_ids, ws)
        pending: list[pa.Array] = []
        for batch in _part_batches(catalog, prior.part, ws):
            while sum(len(a) for a in pending) < batch.num_rows:
                pending.append(next(numbers).column(0))
            joined = pa.concat_arrays(pending) if len(pending) > 1 else pending[0]
            mine = joined.slice(0, batch.num_rows)
            pending = [joined.slice(batch.num_rows)]
            if len(gone):
                keep = pc.invert(pc.is_in(mine, value_set=gone))
                batch, mine = batch.filter(keep), mine.filter(keep)
            yield batch, mine

    return batches


def _part_batches(catalog: Any, key: str, ws: Workspace) -> Iterator[pa.RecordBatch]:
    """A stored Parquet file batch by batch (a remote one fetched to staging first)."""
    store = catalog.store_of("restricted" if key.startswith("restricted/") else "derived")
    path = store.local_path(key)
    fetched = None
    if path is None:
        fetched = path = staging_dir(ws) / f"{uuid.uuid4().hex}.parquet"
        store.fetch_to(key, path)
    try:
        yield from pq.ParquetFile(path).iter_batches(BATCH_ROWS)
    finally:
        if fetched is not None:
            fetched.unlink(missing_ok=True)


def _table_from_part(con: duckdb.DuckDBPyConnection, catalog: Any, key: str, table: str, ws: Workspace) -> None:
    batches = _part_batches(catalog, key, ws)
    first = next(batches, None)
    if first is None:
        raise NotIncremental("the previous version kept no records")
    reader = pa.RecordBatchReader.from_batches(first.schema, chain([first], batches))
    con.register("__part", reader)
    try:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM __part")
    finally:
        con.unregister("__part")


def first_read(pending: Iterator[T], resolved: StreamInput, *, incremental: bool) -> T:
    """The first item read from a stream's objects; none is "nothing new" for an incremental
    build (which then builds whole) and "import first" otherwise."""
    first = next(pending, None)
    if first is None:
        if incremental:
            raise NotIncremental("no new records")
        raise NotFound(f"input {resolved.source}/{resolved.stream} has no landed records; "
                       f"import it first (lithotse import {resolved.source})")
    return first


def _landed_batches(ws: Workspace, resolved: StreamInput, progress: Progress, checks: IntegrityChecks,
                    skip: frozenset[str] | set[str] = frozenset()
                    ) -> Iterator[tuple[StoredObject, pa.RecordBatch | NativeObject]]:
    """Every batch of the stream's objects (but those whose sha256 is in ``skip``), one object
    open at a time, with provenance; an object DuckDB reads itself (see
    :func:`.inputs.native_object`) comes whole, as its query."""
    connector = make_connector(ws, resolved.source)
    for stored in resolved.objects(ws):
        if stored.sha256 in skip:
            continue
        name = f"{resolved.source}/{resolved.stream} {stored.reader.original_name}"
        native = native_object(ws, stored, connector, checks)
        if native is not None:
            progress.update(f"reading {name}: {NATIVE}")
            yield stored, native
            continue
        progress.update(f"reading {name}")
        for batch in read_object(ws, stored, connector, checks, provenance=True):
            yield stored, batch


def _numbered(item: NativeObject, ranks: dict[str, int], start: int) -> str:
    """A natively read object's rows with their landing's rank (:data:`LANDING`) and record
    numbers from ``start`` on (:data:`ROW_ID`), in file order, as the batches of the connector
    would be numbered."""
    q = DUCKDB.quote
    spans = {m.id for m in item.stored.landings}
    rank = " ".join(f"WHEN {DUCKDB.text_literal(i)} THEN {ranks[i]}" for i in sorted(spans) if i in ranks)
    return (f"(SELECT *, CAST(CASE _landing_id {rank} END AS INTEGER) AS {q(LANDING)}, "
            f"CAST({int(start)} + row_number() OVER () - 1 AS BIGINT) AS {q(ROW_ID)} FROM ({item.sql}))")


def _landing_ranks(resolved: StreamInput) -> pa.Array:
    """The stream's landing ids from oldest to newest (by landing time, then id), so a record's
    landing is kept as its index here: a small number rather than two strings per record."""
    ordered = sorted(resolved.manifests, key=lambda m: (m.landed_at, m.id))
    return pa.array([m.id for m in ordered], pa.string())


class _Rows:
    """A Parquet file written in row groups of exactly :data:`BATCH_ROWS` whatever the batches
    handed to it, so the same rows give the same bytes however they were computed."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.rows = path, 0
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")
        self._pending: list[pa.Table] = []
        self._held = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._held += table.num_rows
        self.rows += table.num_rows
        if self._held >= BATCH_ROWS:
            self._flush(self._held - self._held % BATCH_ROWS)

    def _flush(self, count: int) -> None:
        whole = pa.concat_tables(self._pending)
        self._writer.write_table(whole.slice(0, count), row_group_size=BATCH_ROWS)
        self._pending, self._held = [whole.slice(count)], whole.num_rows - count

    def close(self) -> StagedPart:
        if self._held:
            self._flush(self._held)
        self._writer.close()
        return _staged(self.path, self.rows)

    def abort(self) -> None:
        self._writer.close()
        self.path.unlink(missing_ok=True)


def _staged(path: Path, rows: int) -> StagedPart:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return StagedPart(path, digest.hexdigest(), rows, path.stat().st_size)


@dataclass
class Written:
    """A row-level result staged: its part, and for a view the record index beside it."""

    part: StagedPart
    schema: pa.Schema
    row_ids: StagedPart | None = None
    records: StagedPart | None = None

    def discard(self) -> None:
        for item in (self.part, self.row_ids, self.records):
            discard(item)


def write_part(ws: Workspace, con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], what: str,
               transform: Callable[[pa.Table], pa.Table], view: ViewLoad | None = None) -> Written:
    """Run ``sql`` and write its rows, each batch through ``transform``, to one zstd Parquet
    file; its schema is ``transform`` of the query's (empty) result, so an empty result still
    has its columns. For a view (``sql`` giving each row's :data:`ROW_ID`), the rows the previous
    version keeps come first, and the record numbers of the rows and the newest versions are
    written beside them as the version's record index."""
    try:
        reader = con.sql(sql, params=params or None).to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        raise LithotseError(f"{what}: {exc}") from None
    numbered = view is not None and ROW_ID in reader.schema.names
    names = [n for n in reader.schema.names if not (numbered and n == ROW_ID)]
    schema = transform(reader.schema.empty_table().select(names)).schema
    folder = staging_dir(ws)
    out = _Rows(folder / f"{uuid.uuid4().hex}.parquet", schema)
    ids = _Rows(folder / f"{uuid.uuid4().hex}.parquet", pa.schema([(ROW_ID, pa.int64())])) if numbered else None
    written: Written | None = None
    try:
        if view is not None and view.kept is not None:
            for batch, numbers in view.kept():
                table = pa.Table.from_batches([batch])
                out.add(table if table.schema == schema else table.cast(schema))
                if ids is not None:
                    ids.add(pa.table({ROW_ID: numbers}))
        try:
            for batch in reader:
                table = pa.Table.from_batches([batch])
                if numbered and view is not None and view.dropped is not None and len(view.dropped):
                    table = table.filter(pc.invert(pc.is_in(table.column(ROW_ID), value_set=view.dropped)))
                if ids is not None:
                    ids.add(table.select([ROW_ID]))
                    table = table.select(names)
                table = transform(table)
                out.add(table if table.schema == schema else table.cast(schema))
        except duckdb.Error as exc:
            raise LithotseError(f"{what}: {exc}") from None
        written = Written(out.close(), schema, ids.close() if ids is not None else None)
        if view is not None and view.records:
            records = _Rows(folder / f"{uuid.uuid4().hex}.parquet", con.sql(f"SELECT * FROM {NEWEST} LIMIT 0")
                            .to_arrow_table().schema)
            try:
                for batch in con.sql(f"SELECT * FROM {NEWEST}").to_arrow_reader(BATCH_ROWS):
                    records.add(pa.Table.from_batches([batch]))
            except BaseException:
                records.abort()
                raise
            written.records = records.close()
    except BaseException:
        if written is not None:
            written.discard()
        else:
            out.abort()
            if ids is not None:
                ids.abort()
        raise
    return written


def put_part(store: Store, key: str, part: StagedPart) -> dict:
    """Move a staged part into the store under ``key`` (create-only: the same bytes may be
    there already), and describe it as a version's partitions do."""
    try:
        store.put_file(key, part.path, if_none_match=True, move=True)
    finally:
        part.path.unlink(missing_ok=True)
    return {"key": key, "rows": part.rows, "bytes": part.bytes}


def discard(part: StagedPart | None) -> None:
    if part is not None:
        part.path.unlink(missing_ok=True)
