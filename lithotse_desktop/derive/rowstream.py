"""Row-level derivatives computed and written in batches, never held whole in memory.

A view or a ``sql`` derivative can be as large as its input, so its result goes from DuckDB to a
zstd Parquet file batch by batch (pseudonymized and de-identified on the way) and the file is
then moved into the store under its sha256, as every part is. A view also reads its stream only
once and parses each resource once: as the landed records arrive, each record's identity and
version (key, ``versionId``, ``lastUpdated``, landing, position) and the JSON values the view
reads from the resource's root (``sof.compile_view_hoisted``; for a file DuckDB reads itself,
from the same ``json_extract`` that gives the key and version) go to one table; the newest
version of each record is chosen over it afterwards, and the view's rows are computed from it
as they are written, those of older versions left out. A view that needs more of a resource
than the values at a few paths has its rows computed over the resource text as the records
arrive, into a second table. The tables hold a few small columns per record, not the
resources, and DuckDB spills them to the workspace's temp folder beyond ``[limits] memory``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .. import engine
from ..deferred import pyarrow_compute as pc
from ..errors import ConfigError, LithotseError, NotFound, without_values
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
    native_object,
    read_failed,
    repeated_dedupe,
    side_cursor,
    stream_key,
)
from .kinds.view import has_type_column, hoisted_rows, rows_query
from .sof.compile import HoistedView

T = TypeVar("T")

ROW_ID = "__lithotse_record"
"""The landed record a view row came from (a number in reading order, so within one landing,
which is one object, it orders rows as their position does)."""
LANDING = "__lithotse_landing"
"""The landing a record is read for, as its rank among the stream's landings (newest largest)."""
VERSIONS = "__record_versions"
"""A view over :data:`READ`: each version read with its record number (:data:`ROW_ID`)."""
READ = "__record_versions_read"
"""The versions as read, in reading order: a record's number is its row's position here (the
table's ``rowid``) after the records a previous version read, so no window numbers them while
they are read and DuckDB reads an object on every thread, keeping the order."""
TYPED = "__lithotse_typed"
"""Whether a record read for a hoisted view is of the view's resource type, kept instead of the
type's name when the key does not hold it (a byte rather than a string per record: the table
holding every record's values stays smaller, and spills less)."""
NEWEST = "__newest_records"
ROWS = "__view_rows"
BATCH_ROWS = 65_536
"""Rows per batch handed from DuckDB to the Parquet writer (and per row group)."""
VERSION_COLUMNS = ("versionId", "lastUpdated")
CHUNK_RECORDS = 1 << 18
"""Record numbers per part of a view: part ``n`` holds the rows of records ``n * CHUNK_RECORDS``
up to the next part's first, so an update rewrites only the parts of the records it replaces and
the last one, where its new records go (full and incremental builds give the same parts)."""
KEY_HASH = "__key_hash"
"""A 64-bit hash of a record's key, stored beside it in a record index (and an aggregate's kept
input): an update looks for the records its new versions replace among these numbers, a scan
far cheaper than of the keys themselves, then compares the keys of the files found exactly."""
HASHED_BY = f"duckdb {duckdb.__version__}"
"""What made the :data:`KEY_HASH` values of an index (its stats say so): DuckDB's ``hash`` is
only the same within one version, so an index hashed by another is built again whole, once."""


def key_hash(key: list[str]) -> str:
    """SQL of :data:`KEY_HASH` of a row's key columns."""
    return f"hash({', '.join(DUCKDB.quote(k) for k in key)})"


def chunk_label(number: int) -> str:
    """A view part's partition label: ``all`` for the first (as a one-part version has), then
    ``all-000001``…, in record order when sorted."""
    return "all" if number == 0 else f"all-{number:06d}"


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
class PriorChunk:
    """One part of the previous version with its share of the record index."""

    number: int
    part: dict
    """Its partition entry (key, rows, bytes), kept as it is when nothing in it changes."""
    row_ids: str
    records: str | None


@dataclass
class Prior:
    """What an incremental view build takes from the previous version: its parts with the
    record index beside them (see :data:`INDEX`), the rows it read and the landings it ranked."""

    chunks: list[PriorChunk]
    read: int
    landings: list[str]
    objects: set[str]

    @property
    def keyed(self) -> bool:
        return all(c.records for c in self.chunks)


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
    """Record numbers of the versions that are not the newest, in order: their rows are left out."""
    scanned: str | None = None
    """A full build's versions in record order, with :data:`NUMERIC_VERSIONS` of their own: the
    record index is this scan without ``dropped`` (and with ``mixed``); an incremental build
    has chosen the newest versions in :data:`NEWEST` instead."""
    mixed: pa.Array | None = None
    """Record numbers, in order, of newest versions whose version id is a number while another
    version's of the same record is not: :data:`NUMERIC_VERSIONS` is false for them."""
    kept: Callable[[], Iterator[tuple[pa.RecordBatch, pa.Array]]] | None = None
    """For an incremental build: the previous version's rows still newest in the parts that are
    written again, with their record numbers, written before the new ones (already pseudonymized
    and de-identified)."""
    reused: list[PriorChunk] | None = None
    """For an incremental build: the previous version's parts kept as they are."""
    first_new: int = 0
    """The first part number written (parts before it not in ``rewritten`` are reused)."""
    rewritten: set[int] | None = None
    """Part numbers before ``first_new`` that are written again (a record in them was replaced)."""
    rows_in: Callable[[str], str] | None = None
    """For a full build: the rows' SQL over the versions meeting a condition (on :data:`ROW_ID`),
    so each part is computed by a query of its own and parts are written side by side."""
    cursors: list[duckdb.DuckDBPyConnection] = field(default_factory=list)
    """Connections to the build's database writing those parts, one per thread DuckDB may use,
    made before the build's connection is locked down (see :func:`side_cursor`)."""

    def close(self) -> None:
        for cursor in self.cursors:
            cursor.close()
        self.cursors = []


INDEX = "record_index"
"""A view version's stats entry naming its record index in the restricted store, part by part
(``chunks``: ``number``, ``label``, ``row_ids``, ``records``): the newest version of each record
(key, version, landing rank, record number, whether all its version ids are numbers) and the
record number of each published row, so the next build can add new objects to it instead of
reading every object again."""


def prior_of(catalog: Any, previous: Any, resolved: StreamInput) -> Prior | None:
    """The previous version as the start of an incremental build, or None when it cannot be one:
    no record index, an object it read gone or landed again, or a landing that ranks before one
    it read (each would change rows it kept)."""
    index = (previous.stats or {}).get(INDEX) if previous is not None else None
    if not isinstance(index, dict) or not isinstance(index.get("chunks"), list) \
            or index.get("chunk_records") != CHUNK_RECORDS:
        return None  # none, or made before views were written in parts of this size: build whole once
    chunks = []
    for entry in index["chunks"]:
        part = (previous.partitions or {}).get(entry.get("label"))
        if not part or entry.get("label") != chunk_label(entry.get("number", -1)):
            return None
        chunks.append(PriorChunk(entry["number"], part, entry["row_ids"], entry.get("records")))
    if [c.number for c in chunks] != list(range(len(chunks))) or not chunks:
        return None
    old = {tuple(x) for x in previous.inputs.get("input", {}).get("objects", [])}
    new = {tuple(x) for x in (list(t) for t in resolved.identities)}
    if not old <= new:
        return None
    shas = {x[0] for x in old}
    if any(x[0] in shas for x in new - old):
        return None
    landings = _landing_ranks(resolved)
    if landings[:len(index["landings"])] != index["landings"]:
        return None
    if not all(_stored(catalog, key) for c in chunks for key in (c.records, c.row_ids) if key):
        return None
    if any(c.records for c in chunks) and index.get("key_hash") != HASHED_BY:
        return None  # keys hashed by another DuckDB, or not at all: build whole once
    return Prior(chunks, int(index["read"]), index["landings"], shas)


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
    hoisted = hoisted_rows(spec, ROW_ID)
    if hoisted is not None:
        hoisted = hoisted.as_text() or hoisted
    paths = tuple(hoisted.paths) if hoisted is not None else ()
    # a hoisted view reads only a record's identity and version from the connector's columns
    needed = None if hoisted is None else [*(resolved.key or ["id"]), "resourceType", *VERSION_COLUMNS]
    pending = _landed_batches(ws, resolved, progress, checks, skip=prior.objects if prior else set(),
                              hoisted=paths, needed=needed, text=hoisted is not None and hoisted.text)
    first = first_read(pending, resolved, incremental=prior is not None)
    schema = first[1].schema
    columns = list(schema.names)
    if "resource" not in columns or not has_type_column(schema):
        hoisted = None
    key = stream_key(resolved, columns)
    missing = [k for k in key if k not in columns]
    if missing:
        raise ConfigError(f"{resolved.source}/{resolved.stream}: key column(s) {missing} are not in the data")
    if prior is not None and bool(key) != prior.keyed:
        raise NotIncremental("the record identity changed")
    kept = [*key, *(c for c in VERSION_COLUMNS if c in columns and c not in key), LANDING, ROW_ID]
    picked = ", ".join(q(c) for c in kept)
    stored = ", ".join(q(c) for c in kept if c != ROW_ID)
    resource = DUCKDB.text_literal(spec["view"]["resource"])
    typed = "resourceType" not in kept
    staged = stored if hoisted is None else stored + (f', "resourceType" = {resource} AS {q(TYPED)}' if typed else "")
    landings = _landing_ranks(resolved)
    ranks = {landing: i for i, landing in enumerate(landings)}
    where = f"{resolved.source}/{resolved.stream}"
    seen = first_number = prior.read if prior is not None else 0
    created = False
    threads = int((con.execute("SELECT current_setting('threads')").fetchone() or [1])[0])
    for read, item in chain([first], pending):
        progress.check()
        # a view computed over the resource text numbers the records of a file DuckDB reads
        # itself with a streaming window, in file order on one thread; the values of a hoisted
        # view are numbered by their place in the table, so every thread reads
        numbered = hoisted is None and isinstance(item, NativeObject)
        con.execute(f"SET threads = {1 if numbered else threads}")
        if isinstance(item, NativeObject):
            relation = _numbered(item, ranks, seen if numbered else None)
        else:
            numbers = pa.array(range(seen, seen + item.num_rows), pa.int64())
            rank = pc.index_in(item.column("_landing_id"), value_set=pa.array(landings, pa.string()))
            con.register("__batch", item.append_column(LANDING, rank).append_column(ROW_ID, numbers))
            relation = "__batch"
        try:
            if hoisted is not None:
                # one parse of each resource: its identity, version and the view's values go to
                # one table, from which the rows are computed as they are written
                source = _with_values(item, relation, hoisted, spec["view"]["resource"])
                select = f"SELECT {staged}{_hoisted_values(item, hoisted)} FROM {source}"
                counted = con.execute(f"INSERT INTO {READ} BY NAME {select}" if created
                                      else f"CREATE TABLE {READ} AS {select}").fetchone()
                created = True
            else:
                view_sql, params = rows_query(spec, schema, relation, ROW_ID)
                if not created:
                    counted = con.execute(f"CREATE TABLE {READ} AS SELECT {stored} FROM {relation}").fetchone()
                    con.execute(f"CREATE TABLE {ROWS} AS {view_sql}", params or None)
                    created = True
                else:
                    counted = con.execute(f"INSERT INTO {READ} BY NAME SELECT {stored} FROM {relation}"
                                          ).fetchone()
                    con.execute(f"INSERT INTO {ROWS} {view_sql}", params or None)
            seen += counted[0] if counted else 0
        except duckdb.Error as exc:
            raise read_failed(checks, f"derivative {spec['name']}: {where}, {read.reader.original_name}",
                              exc) from None
        finally:
            if not isinstance(item, NativeObject):
                con.unregister("__batch")
    con.execute(f"SET threads = {threads}")  # for choosing the newest versions
    con.execute(f"CREATE VIEW {VERSIONS} AS SELECT *, CAST(rowid + {int(first_number)} AS BIGINT) AS {q(ROW_ID)} "
                f"FROM {READ}")
    if hoisted is not None:
        over = hoisted
        typed_versions = (f"SELECT *, CASE WHEN {q(TYPED)} THEN {resource} END AS \"resourceType\" "
                          f"FROM {VERSIONS}" if typed else f"SELECT * FROM {VERSIONS}")

        def rows_in(condition: str) -> str:
            return over.over(f"{typed_versions} WHERE {condition}")

        rows, row_params = hoisted.over(typed_versions), list(hoisted.params)
    else:
        def rows_in(condition: str) -> str:
            return f"SELECT * FROM {ROWS} WHERE {condition}"

        rows, row_params = f"SELECT * FROM {ROWS}", []
    load = ViewLoad(pa.schema([f for f in schema if f.name not in PROVENANCE]), rows, row_params, seen,
                    landings, bool(key))
    if prior is None and threads > 1:
        load.rows_in = rows_in
    if key:
        try:
            if prior is None:
                # only the records read more than once are ranked; the rows and the record index
                # are written by plain scans in record order, leaving the older versions out (a
                # join here would not keep the order)
                numeric = [NUMERIC_VERSIONS] if "versionId" in kept else []
                versions = f"(SELECT {picked} FROM {VERSIONS})"
                keys_sql, rows_sql, ranked = repeated_dedupe(
                    versions, key, kept, (LANDING, ROW_ID), kept=kept + numeric, keys_table="__repeated_keys",
                    rows_table="__repeated")
                con.execute(f"CREATE TEMP TABLE __repeated_keys AS {keys_sql}")
                con.execute(f"CREATE TEMP TABLE __repeated AS {rows_sql}")
                con.execute(f"CREATE TEMP TABLE __winners AS {ranked}")
                row = q(ROW_ID)
                losers = f"SELECT {row} FROM __repeated ANTI JOIN __winners USING ({row}) ORDER BY {row}"
                load.dropped = _combined(con.sql(losers).to_arrow_table().column(0))
                own = ""
                if numeric:
                    is_number = DUCKDB.version_number(q("versionId"))[0]
                    mixed = f"SELECT {row} FROM __winners WHERE {is_number} AND NOT {NUMERIC_VERSIONS} ORDER BY {row}"
                    load.mixed = _combined(con.sql(mixed).to_arrow_table().column(0))
                    own = f", {is_number} AS {NUMERIC_VERSIONS}"
                load.scanned = f"SELECT {picked}{own}, {key_hash(key)} AS {KEY_HASH} FROM {VERSIONS}"
                drop_relations(con, "__repeated_keys", "__repeated", "__winners")
            else:
                load.dropped = _newest_with(con, catalog, prior, key, kept, ws)
        except duckdb.Error as exc:
            raise LithotseError(f"derivative {spec['name']}: {where}: {without_values(exc)}") from None
        if hoisted is None and prior is not None:
            drop_relations(con, VERSIONS, READ)
    if prior is not None:
        _plan_chunks(con, load, prior, bool(key))
        load.kept = _kept_rows(catalog, prior, load.rewritten or set(), _superseded(con, bool(key)), ws)
    # the rows and the record index are written from scans that must come in record order: a
    # streamed scan on two threads hands batches over out of order (seen at 5M Encounters); a
    # full build's parts are written side by side instead, each scanned on one thread
    con.execute("SET threads = 1")
    if load.rows_in is not None:
        load.cursors = [side_cursor(con) for _ in range(threads)]
    return load


def _plan_chunks(con: duckdb.DuckDBPyConnection, load: ViewLoad, prior: Prior, keyed: bool) -> None:
    """Which parts an incremental build writes: those a replaced record was in, and every one
    from the part the first new record goes to; the others are the previous version's."""
    load.first_new = prior.read // CHUNK_RECORDS
    rewritten: set[int] = set()
    if keyed:
        found = con.execute(f"SELECT DISTINCT {DUCKDB.quote(ROW_ID)} // {CHUNK_RECORDS} FROM __superseded").fetchall()
        rewritten = {int(r[0]) for r in found if int(r[0]) < load.first_new}
    load.rewritten = rewritten
    load.reused = [c for c in prior.chunks if c.number < load.first_new and c.number not in rewritten]


def _superseded(con: duckdb.DuckDBPyConnection, keyed: bool) -> pa.Array:
    """Record numbers of the previous version's records replaced by new versions."""
    if not keyed:
        return pa.nulls(0, pa.int64())
    gone = _combined(con.sql(f"SELECT {DUCKDB.quote(ROW_ID)} FROM __superseded").to_arrow_table().column(0))
    con.execute("DROP TABLE __superseded")
    return gone


def parquet_list(paths: list[Any]) -> str:
    """Files for ``read_parquet``, as a DuckDB list literal."""
    return "[" + ", ".join(DUCKDB.text_literal(str(p)) for p in paths) + "]"


def same_key(key: list[str]) -> str:
    """Join condition of an old row ``o`` and a new one ``n`` holding the same record."""
    return " AND ".join(f"o.{DUCKDB.quote(k)} IS NOT DISTINCT FROM n.{DUCKDB.quote(k)}" for k in key)


Narrowing = tuple[str, Callable[[list[Any]], str]]
"""Where the old versions of records lie: an expression over ``old``'s rows giving the file they
are in, and the relation of the rows of the files found (see :func:`newest_over`)."""


def newest_over(con: duckdb.DuckDBPyConnection, old: str, new: str, key: list[str], cols: list[str],
                order_last: list[str], versioned: bool, table: str, *, as_view: bool = False,
                narrow: Narrowing | None = None, hashed: bool = False) -> None:
    """Make ``table``: the newest version of each record over ``old`` (the newest version of each
    record before, with :data:`NUMERIC_VERSIONS` when ``versioned``) and ``new`` (new versions),
    and ``__winners``: the newest of the records ``new`` holds. Only those records are chosen
    again; the others are kept as they are. Exactly what choosing over every version gives, since
    a version that lost before still loses — unless a record's version ids stop being all numbers,
    which changes the order (:class:`NotIncremental`). ``as_view``: ``table`` is a view over
    ``old``, ``__new_keys`` and ``__winners`` (which then stay), so ``old`` is not copied.
    ``__hit`` holds the old versions of the records ``new`` holds; with ``narrow``, they are
    looked for among the keys and the file of each old record only, and read whole from the
    files holding them (a scan of every column of ``old`` costs far more than of its keys);
    ``hashed``: ``old`` holds :data:`KEY_HASH` of its keys, made as this process makes it, and the
    files are found by it instead (the rows of the files found are then matched by key, exactly)."""
    q = DUCKDB.quote
    parts = ", ".join(q(k) for k in key)
    on = same_key(key)
    con.execute(f"CREATE TEMP TABLE __new_keys AS SELECT DISTINCT {parts} FROM {new}")
    if narrow is None:
        con.execute(f"CREATE TEMP TABLE __hit AS SELECT o.* FROM {old} o SEMI JOIN __new_keys n ON {on}")
    else:
        where, rows_of = narrow
        if hashed and _same_key_types(con, old, new, key):
            probe = f"(SELECT DISTINCT {key_hash(key)} AS h FROM __new_keys) n ON o.{q(KEY_HASH)} = n.h"
        else:
            probe = f"__new_keys n ON {on}"
        found = _probing_small_side(con, f"SELECT DISTINCT {where} FROM {old} o SEMI JOIN {probe} ORDER BY 1")
        holding = rows_of([r[0] for r in found]) if found else f"(SELECT * FROM {old} LIMIT 0)"
        con.execute(f"CREATE TEMP TABLE __hit AS SELECT o.* FROM {holding} o SEMI JOIN __new_keys n ON {on}")
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
    con.execute(f"CREATE {'VIEW' if as_view else 'TABLE'} {table} AS SELECT {outs} FROM (SELECT o.* FROM {old} o "
                f"ANTI JOIN __new_keys n ON {on}) UNION ALL SELECT {outs} FROM __winners")
    if not as_view:
        con.execute("DROP TABLE __new_keys")


def _probing_small_side(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """Rows of ``sql``, a semi join of the old records (millions) with the new keys (thousands),
    with DuckDB's hash table built over the new keys as written. DuckDB estimates a list of
    Parquet files as its first file's rows times their number, and the first part of a view
    whose oldest records were all replaced is empty: the join then built its table over every
    old record instead, at four to eight times the cost."""
    (before,) = con.execute("SELECT current_setting('disabled_optimizers')").fetchone() or ("",)
    con.execute("SET disabled_optimizers = $names",
                {"names": ",".join(filter(None, [str(before), "build_side_probe_side"]))})
    try:
        return con.execute(sql).fetchall()
    finally:
        con.execute("SET disabled_optimizers = $names", {"names": str(before)})


def _same_key_types(con: duckdb.DuckDBPyConnection, old: str, new: str, key: list[str]) -> bool:
    """Whether ``old`` and ``new`` hold their key columns with the same types (a value hashes
    the same only as the same type: 1 as an INTEGER and as a BIGINT differ) and ``old`` has
    :data:`KEY_HASH`."""
    types = [{r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
             for relation in (old, new)]
    return KEY_HASH in types[0] and all(k in types[0] and types[0][k] == types[1].get(k) for k in key)


def _newest_with(con: duckdb.DuckDBPyConnection, catalog: Any, prior: Prior, key: list[str], kept: list[str],
                 ws: Workspace) -> pa.Array:
    """The newest versions over the previous version's and the new ones (see :func:`newest_over`)
    in :data:`NEWEST`, only for the parts written again (the others keep their record index);
    the old ones replaced go to ``__superseded``; returns the record numbers of the new versions
    that are not the newest."""
    q = DUCKDB.quote
    row = q(ROW_ID)
    _relation_from_parts(con, catalog, [c.records for c in prior.chunks if c.records], "__old_records", ws)
    old_names = {r[0] for r in con.execute("DESCRIBE __old_records").fetchall()}
    if set(kept) - old_names or ("versionId" in kept) != (NUMERIC_VERSIONS in old_names):
        raise NotIncremental("the previous record index lacks columns")
    versioned = "versionId" in kept
    newest_over(con, "__old_records", VERSIONS, key, kept, [LANDING, ROW_ID], versioned, "__newest_all",
                as_view=True, narrow=(f"o.{row} // {CHUNK_RECORDS}",
                                      lambda numbers: _records_of(con, catalog, prior, numbers, ws, "__old_hit")),
                hashed=True)
    con.execute(f"CREATE TABLE __superseded AS SELECT {row} FROM __hit ANTI JOIN __winners USING ({row})")
    dropped = con.sql(f"SELECT {row} FROM {VERSIONS} ANTI JOIN __winners USING ({row}) ORDER BY {row}").to_arrow_table()
    first_new = prior.read // CHUNK_RECORDS
    found = con.execute(f"SELECT DISTINCT {row} // {CHUNK_RECORDS} FROM __superseded").fetchall()
    written = sorted({int(r[0]) for r in found} | {c.number for c in prior.chunks if c.number >= first_new})
    # the parts not written again keep their record index: only the written ones' are read again
    old = _records_of(con, catalog, prior, written, ws, "__old_written")
    outs = ", ".join(q(c) for c in [*kept, *([NUMERIC_VERSIONS] if versioned else [])])
    on = same_key(key)
    listed = ", ".join(str(n) for n in written if n < first_new) or "-1"
    con.execute(f"CREATE TABLE {NEWEST} AS SELECT *, {key_hash(key)} AS {KEY_HASH} FROM ("
                f"SELECT {outs} FROM (SELECT o.* FROM {old} o ANTI JOIN __new_keys n ON {on}) "
                f"UNION ALL SELECT {outs} FROM __winners WHERE {row} >= {first_new * CHUNK_RECORDS} "
                f"OR {row} // {CHUNK_RECORDS} IN ({listed}))")
    drop_relations(con, "__newest_all", "__old_written", "__old_hit", "__old_records", "__hit", "__winners",
                   "__new_keys")
    return _combined(dropped.column(0))


def _records_of(con: duckdb.DuckDBPyConnection, catalog: Any, prior: Prior, numbers: list[int], ws: Workspace,
                name: str) -> str:
    """A relation of the record index of the previous version's parts ``numbers``: the view
    ``name`` over their files, or rows of ``__old_records`` when its files are not where a query
    can read them."""
    store = catalog.store_of("restricted")
    keys = [c.records for c in prior.chunks if c.number in numbers and c.records]
    local = [store.local_path(key) for key in keys]
    if not all(path is not None for path in local):
        listed = ", ".join(str(n) for n in numbers) or "-1"
        return f"(SELECT * FROM __old_records WHERE {DUCKDB.quote(ROW_ID)} // {CHUNK_RECORDS} IN ({listed}))"
    if not local:
        return "(SELECT * FROM __old_records LIMIT 0)"
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({parquet_list(local)})")
    return name


def drop_relations(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop these tables and views, those that exist (views first: they name the tables)."""
    found = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    for name in sorted((n for n in names if n in found), key=lambda n: found[n] != "VIEW"):
        con.execute(f"DROP {'VIEW' if found[name] == 'VIEW' else 'TABLE'} {name}")


def _kept_rows(catalog: Any, prior: Prior, rewritten: set[int], gone: pa.Array,
               ws: Workspace) -> Callable[[], Iterator[tuple[pa.RecordBatch, pa.Array]]]:
    """The previous version's rows still newest in the parts written again (those in
    ``rewritten`` and from the first new record's part on), batch by batch, each with its record
    number (the record index holds them in the order of the rows); ``gone``: the replaced ones."""
    first_new = prior.read // CHUNK_RECORDS
    written = [c for c in prior.chunks if c.number in rewritten or c.number >= first_new]

    def batches() -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
        for chunk in written:
            numbers = _part_batches(catalog, chunk.row_ids, ws)
            pending: list[pa.Array] = []
            for batch in _part_batches(catalog, chunk.part["key"], ws):
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


def _relation_from_parts(con: duckdb.DuckDBPyConnection, catalog: Any, keys: list[str], name: str,
                         ws: Workspace) -> None:
    """``name``: stored Parquet files as one relation, a view over them where they lie (read
    before the connection is locked down), or a table of them fetched from a remote store."""
    if not keys:
        raise NotIncremental("the previous version kept no records")
    store = catalog.store_of("restricted")
    local = [store.local_path(key) for key in keys]
    if all(path is not None for path in local):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({parquet_list(local)})")
        return
    fetched = [staging_dir(ws) / f"{uuid.uuid4().hex}.parquet" for _ in keys]
    try:
        for key, path in zip(keys, fetched, strict=True):
            store.fetch_to(key, path)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet($paths)", {"paths": [str(p) for p in fetched]})
    finally:
        for path in fetched:
            path.unlink(missing_ok=True)


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
                    skip: frozenset[str] | set[str] = frozenset(), hoisted: tuple[str, ...] = (),
                    needed: list[str] | None = None, text: bool = False
                    ) -> Iterator[tuple[StoredObject, pa.RecordBatch | NativeObject]]:
    """Every batch of the stream's objects (but those whose sha256 is in ``skip``), one object
    open at a time, with provenance; an object DuckDB reads itself (see
    :func:`.inputs.native_object`) comes whole, as its query, with the values of the JSONPaths
    ``hoisted`` when it is NDJSON, and only the columns ``needed`` read from it (None: all)."""
    connector = make_connector(ws, resolved.source)
    for stored in resolved.objects(ws):
        if stored.sha256 in skip:
            continue
        name = f"{resolved.source}/{resolved.stream} {stored.reader.original_name}"
        native = native_object(ws, stored, connector, checks, hoisted=hoisted, needed=needed, text=text)
        if native is not None:
            progress.update(f"reading {name}: {NATIVE}")
            yield stored, native
            continue
        progress.update(f"reading {name}")
        for batch in read_object(ws, stored, connector, checks, provenance=True):
            yield stored, batch


def _hoisted_values(item: pa.RecordBatch | NativeObject, hoisted: HoistedView) -> str:
    """The select-list tail giving a record's view values (``hoisted.columns``): read with it from
    a natively read NDJSON object, else taken from ``__lithotse_values`` (see :func:`_with_values`)."""
    if isinstance(item, NativeObject) and item.hoisted:
        return "".join(f", {DUCKDB.quote(c)}" for c in hoisted.columns)
    return "".join(f", __lithotse_values[{n}] AS {DUCKDB.quote(c)}" for n, c in enumerate(hoisted.columns, 1))


def _with_values(item: pa.RecordBatch | NativeObject, relation: str, hoisted: HoistedView,
                 resource_type: str) -> str:
    """``relation`` with ``__lithotse_values``, the list of the view's values extracted from the
    resource text of the records of the view's type (one parse each), where its records are not
    read with them already."""
    if not hoisted.paths or (isinstance(item, NativeObject) and item.hoisted):
        return relation
    listed = ", ".join(DUCKDB.text_literal(p) for p in hoisted.paths)
    extract = "json_extract_string" if hoisted.text else "json_extract"
    return (f"(SELECT *, CASE WHEN \"resourceType\" = {DUCKDB.text_literal(resource_type)} "
            f"THEN {extract}(resource, [{listed}]) END AS __lithotse_values FROM {relation})")


def _numbered(item: NativeObject, ranks: dict[str, int], start: int | None) -> str:
    """A natively read object's rows with their landing's rank (:data:`LANDING`) and, with a
    ``start``, record numbers from it on (:data:`ROW_ID`), in file order, as the batches of the
    connector would be numbered."""
    q = DUCKDB.quote
    spans = {m.id for m in item.stored.landings}
    rank = " ".join(f"WHEN {DUCKDB.text_literal(i)} THEN {ranks[i]}" for i in sorted(spans) if i in ranks)
    number = "" if start is None else f", CAST({int(start)} + row_number() OVER () - 1 AS BIGINT) AS {q(ROW_ID)}"
    return f"(SELECT *, CAST(CASE _landing_id {rank} END AS INTEGER) AS {q(LANDING)}{number} FROM ({item.sql}))"


def _landing_ranks(resolved: StreamInput) -> list[str]:
    """The stream's landing ids from oldest to newest (by landing time, then id), so a record's
    landing is kept as its index here: a small number rather than two strings per record (a
    list, not an Arrow array: pyarrow's first array made from Python objects imports pandas,
    a quarter of a second that a build reading natively does not otherwise spend)."""
    ordered = sorted(resolved.manifests, key=lambda m: (m.landed_at, m.id))
    return [m.id for m in ordered]


DICTIONARY_BYTES = 16 << 10
"""A column chunk's dictionary at most (the rest of the chunk is then written plain): columns of a
few codes keep theirs, while keys and instants, new in every row, stop filling one early (hashing
every value into a dictionary of the writer's default 1 MB was most of a view's writing time, and
left its files larger)."""


_FEW_VALUES = frozenset({"versionId", LANDING, NUMERIC_VERSIONS})
"""Columns of a record index whose values repeat from row to row (see ``_Rows``'s ``index``)."""


class _Rows:
    """A Parquet file written in row groups of exactly :data:`BATCH_ROWS` whatever the batches
    handed to it, so the same rows give the same bytes however they were computed."""

    def __init__(self, path: Path, schema: pa.Schema, *, index: bool = False) -> None:
        self.path, self.rows = path, 0
        options: dict[str, Any] = {}
        if index:
            # a record index's keys, instants, record numbers and hashes are new in every row:
            # no dictionary is tried for them, and record numbers (rising) are stored as deltas
            # (the row numbers' files: 0.10 s to 0.04 s of CPU at 5M Encounters)
            options["use_dictionary"] = [n for n in schema.names if n in _FEW_VALUES]
            # hashes do not compress: zstd would only spend time finding so
            options["compression"] = {n: "none" if n == KEY_HASH else "zstd" for n in schema.names}
            if ROW_ID in schema.names and pa.types.is_int64(schema.field(ROW_ID).type):
                options["column_encoding"] = {ROW_ID: "DELTA_BINARY_PACKED"}
        options.setdefault("compression", "zstd")
        self._writer = pq.ParquetWriter(path, schema, dictionary_pagesize_limit=DICTIONARY_BYTES, **options)
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
        # one chunk per column: the writer's pages follow the chunks, which follow the batches
        # DuckDB's threads happened to hand over
        self._writer.write_table(whole.slice(0, count).combine_chunks(), row_group_size=BATCH_ROWS)
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
class StagedChunk:
    """One part of a row-level result staged, with a view's record index for it."""

    number: int
    part: StagedPart
    row_ids: StagedPart | None = None
    records: StagedPart | None = None


@dataclass
class Written:
    """A row-level result staged: its parts (one for a ``sql`` result; a view's by record
    number, see :data:`CHUNK_RECORDS`), and the previous version's parts it keeps."""

    schema: pa.Schema
    chunks: list[StagedChunk]
    reused: list[PriorChunk]

    def discard(self) -> None:
        for chunk in self.chunks:
            for item in (chunk.part, chunk.row_ids, chunk.records):
                discard(item)


class _Chunks:
    """A view's rows, handed over in record-number order, written to one part per
    :data:`CHUNK_RECORDS` record numbers (with the record number of each row beside it), for
    the part numbers in ``numbers`` only; a part with no rows is written empty."""

    def __init__(self, folder: Path, schema: pa.Schema, numbers: list[int]) -> None:
        self.folder, self.schema, self.numbers = folder, schema, numbers
        self.done: list[StagedChunk] = []
        self._open: tuple[int, _Rows, _Rows] | None = None

    def _start(self, number: int) -> tuple[int, _Rows, _Rows]:
        if number not in self.numbers or (self.done and number <= self.done[-1].number):
            raise LithotseError(f"internal: rows of record part {number} arrived out of order")
        for skipped in self.numbers:  # parts between the last one and this one have no rows
            if (not self.done or skipped > self.done[-1].number) and skipped < number:
                self._begin(skipped)
                self._finish()
        return self._begin(number)

    def _begin(self, number: int) -> tuple[int, _Rows, _Rows]:
        self._open = (number, _Rows(self.folder / f"{uuid.uuid4().hex}.parquet", self.schema),
                      _Rows(self.folder / f"{uuid.uuid4().hex}.parquet", pa.schema([(ROW_ID, pa.int64())]), index=True))
        return self._open

    def _finish(self) -> None:
        assert self._open is not None
        number, out, ids = self._open
        self._open = None
        self.done.append(StagedChunk(number, out.close(), ids.close()))

    def add(self, table: pa.Table, numbers: pa.Array) -> None:
        if not table.num_rows:
            return
        # record numbers arrive in order: each part's rows are a slice, found by binary search
        # (pyarrow's compute functions would import pandas for a Python scalar)
        def at(i: int) -> int:
            return numbers[i].as_py()

        first, last = at(0) // CHUNK_RECORDS, at(len(numbers) - 1) // CHUNK_RECORDS
        for number in range(first, last + 1):
            start, stop = (0, len(numbers)) if first == last else (
                bisect_left(range(len(numbers)), bound, key=at) for bound in (number * CHUNK_RECORDS,
                                                                               (number + 1) * CHUNK_RECORDS))
            piece, ids = table.slice(start, stop - start), numbers.slice(start, stop - start)
            if not piece.num_rows:
                continue
            if self._open is None or self._open[0] != number:
                if self._open is not None:
                    self._finish()
                self._start(number)
            assert self._open is not None
            self._open[1].add(piece)
            self._open[2].add(pa.Table.from_arrays([ids], names=[ROW_ID]))

    def close(self) -> list[StagedChunk]:
        if self._open is not None:
            self._finish()
        for number in self.numbers:
            if not self.done or number > self.done[-1].number:
                self._begin(number)
                self._finish()
        return self.done

    def abort(self) -> None:
        if self._open is not None:
            self._open[1].abort()
            self._open[2].abort()
        for chunk in self.done:
            for item in (chunk.part, chunk.row_ids):
                discard(item)


def write_part(ws: Workspace, con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], what: str,
               transform: Callable[[pa.Table], pa.Table], view: ViewLoad | None = None) -> Written:
    """Run ``sql`` and write its rows, each batch through ``transform``, to zstd Parquet: one
    part, or for a view (``sql`` giving each row's :data:`ROW_ID`) one per
    :data:`CHUNK_RECORDS` record numbers, with the record number of each row and the newest
    versions beside each as the version's record index; an incremental build writes the parts
    that change (the previous version's rows still newest first) and keeps the others. A part's
    schema is ``transform`` of the query's (empty) result, so an empty result has its columns."""
    side = view is not None and view.rows_in is not None and bool(view.cursors) and view.kept is None
    try:
        if side:
            reader = None
            found = con.sql(f"SELECT * FROM ({sql}) LIMIT 0", params=params or None).to_arrow_table().schema
        else:
            reader = con.sql(sql, params=params or None).to_arrow_reader(BATCH_ROWS)
            found = reader.schema
    except duckdb.Error as exc:
        raise LithotseError(f"{what}: {without_values(exc)}") from None
    numbered = view is not None and ROW_ID in found.names
    names = [n for n in found.names if not (numbered and n == ROW_ID)]
    schema = transform(_empty(found).select(names)).schema
    folder = staging_dir(ws)
    if side and numbered:
        assert view is not None
        count = max(1, -(-view.read // CHUNK_RECORDS))
        return Written(schema, _Parts(view, params, names, schema, transform, folder, what).write(count), [])
    assert reader is not None
    if not numbered:
        out = _Rows(folder / f"{uuid.uuid4().hex}.parquet", schema)
        try:
            for batch in reader:
                table = transform(pa.Table.from_batches([batch]))
                out.add(table if table.schema == schema else table.cast(schema))
        except BaseException as exc:
            out.abort()
            if isinstance(exc, duckdb.Error):
                raise LithotseError(f"{what}: {without_values(exc)}") from None
            raise
        return Written(schema, [StagedChunk(0, out.close())], [])
    assert view is not None
    count = max(1, -(-view.read // CHUNK_RECORDS))
    numbers = [n for n in range(count) if n >= view.first_new or n in (view.rewritten or set())]
    chunks = _Chunks(folder, schema, numbers)
    written: Written | None = None
    try:
        if view.kept is not None:
            for batch, ids in view.kept():
                table = pa.Table.from_batches([batch])
                chunks.add(table if table.schema == schema else table.cast(schema), ids)
        try:
            for batch in reader:
                table = pa.Table.from_batches([batch])
                if view.dropped is not None and len(view.dropped):
                    table = _without_dropped(table, view.dropped)
                ids = _combined(table.column(ROW_ID))
                table = transform(table.select(names))
                chunks.add(table if table.schema == schema else table.cast(schema), ids)
        except duckdb.Error as exc:
            raise LithotseError(f"{what}: {without_values(exc)}") from None
        written = Written(schema, chunks.close(), list(view.reused or []))
        if view.records:
            _write_records(con, folder, written.chunks, view)
    except BaseException:
        if written is not None:
            written.discard()
        else:
            chunks.abort()
        raise
    return written


class _Parts:
    """A full build's parts written side by side, each computed by queries of its own (its rows,
    then its share of the record index) on one of ``view.cursors``, a thread each: DuckDB scans
    a part's records in order on one thread while pyarrow encodes and compresses, and neither
    holds the GIL meanwhile, so as many parts are written at once as DuckDB has threads."""

    def __init__(self, view: ViewLoad, params: list[Any], names: list[str], schema: pa.Schema,
                 transform: Callable[[pa.Table], pa.Table], folder: Path, what: str) -> None:
        self.view, self.params, self.names, self.schema = view, params, names, schema
        self.transform, self.folder, self.what = transform, folder, what
        self._lock = threading.Lock()
        """Held to take the next part, and around ``transform``, which reads the pseudonym key
        from the secrets store: one batch at a time, as the other way of writing does."""
        self._failed = threading.Event()
        self._waiting: list[int] = []
        self._done: list[StagedChunk] = []
        self._records: pa.Schema | None = None

    def write(self, count: int) -> list[StagedChunk]:
        view = self.view
        if view.records:
            assert view.scanned is not None
            self._records = view.cursors[0].sql(f"SELECT * FROM ({view.scanned}) LIMIT 0").to_arrow_table().schema
        self._waiting = list(reversed(range(count)))
        with ThreadPoolExecutor(max_workers=len(view.cursors), thread_name_prefix="lithotse-parts") as pool:
            ran = [pool.submit(self._run, cursor) for cursor in view.cursors]
        errors = [e for e in (r.exception() for r in ran) if e is not None]
        if errors:
            for chunk in self._done:
                for item in (chunk.part, chunk.row_ids, chunk.records):
                    discard(item)
            error = next((e for e in errors if not isinstance(e, _Abandoned)), errors[0])
            if isinstance(error, duckdb.Error):
                raise LithotseError(f"{self.what}: {error}") from None
            raise error
        return sorted(self._done, key=lambda c: c.number)

    def _run(self, cursor: duckdb.DuckDBPyConnection) -> None:
        try:
            while not self._failed.is_set():
                with self._lock:
                    if not self._waiting:
                        return
                    number = self._waiting.pop()
                chunk = self._part(cursor, number)
                with self._lock:
                    self._done.append(chunk)
        except BaseException:
            self._failed.set()
            raise

    def _batches(self, cursor: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
                 ) -> Iterator[pa.Table]:
        for batch in cursor.sql(sql, params=params or None).to_arrow_reader(BATCH_ROWS):
            if self._failed.is_set():
                raise _Abandoned()
            table = pa.Table.from_batches([batch])
            if self.view.dropped is not None and len(self.view.dropped):
                table = _without_dropped(table, self.view.dropped)
            yield table

    def _part(self, cursor: duckdb.DuckDBPyConnection, number: int) -> StagedChunk:
        view, row = self.view, DUCKDB.quote(ROW_ID)
        assert view.rows_in is not None
        inside = f"{row} >= {number * CHUNK_RECORDS} AND {row} < {(number + 1) * CHUNK_RECORDS}"
        out = _Rows(self.folder / f"{uuid.uuid4().hex}.parquet", self.schema)
        ids = _Rows(self.folder / f"{uuid.uuid4().hex}.parquet", pa.schema([(ROW_ID, pa.int64())]), index=True)
        try:
            for table in self._batches(cursor, view.rows_in(inside), self.params):
                if not table.num_rows:
                    continue
                numbers = _combined(table.column(ROW_ID))
                with self._lock:
                    table = self.transform(table.select(self.names))
                out.add(table if table.schema == self.schema else table.cast(self.schema))
                ids.add(pa.Table.from_arrays([numbers], names=[ROW_ID]))
            chunk = StagedChunk(number, out.close(), ids.close())
        except BaseException:
            out.abort()
            ids.abort()
            raise
        if self._records is None:
            return chunk
        assert view.scanned is not None
        records = _Rows(self.folder / f"{uuid.uuid4().hex}.parquet", self._records, index=True)
        try:
            for table in self._batches(cursor, f"SELECT * FROM ({view.scanned}) WHERE {inside}"):
                if view.mixed is not None and len(view.mixed):
                    table = _not_numeric(table, view.mixed)
                records.add(table if table.schema == self._records else table.cast(self._records))
            chunk.records = records.close()
        except BaseException:
            records.abort()
            discard(chunk.part)
            discard(chunk.row_ids)
            raise
        return chunk


class _Abandoned(Exception):
    """Another part failed: this one stops."""


def _write_records(con: duckdb.DuckDBPyConnection, folder: Path, staged: list[StagedChunk], view: ViewLoad) -> None:
    """Each written part's share of the newest versions (see ``ViewLoad.scanned``), by record number: one
    scan in record order, cut at the parts' bounds (a query per part would scan them all again)."""
    if not staged:
        return
    newest = view.scanned or f"SELECT * FROM {NEWEST}"
    schema = con.sql(f"SELECT * FROM ({newest}) LIMIT 0").to_arrow_table().schema
    row = DUCKDB.quote(ROW_ID)
    parts = ", ".join(str(chunk.number) for chunk in staged)
    query = f"SELECT * FROM ({newest}) WHERE {row} // {CHUNK_RECORDS} IN ({parts})"
    if view.scanned is None:
        query += f" ORDER BY {row}"
    waiting = list(reversed(staged))
    current: tuple[StagedChunk, _Rows] | None = None

    def advance(number: int | None) -> None:
        """Close the open part and those up to part ``number``, which is opened (all, for None)."""
        nonlocal current
        while True:
            if current is not None:
                current[0].records = current[1].close()
                current = None
            if not waiting:
                return
            chunk = waiting.pop()
            current = (chunk, _Rows(folder / f"{uuid.uuid4().hex}.parquet", schema, index=True))
            if chunk.number == number:
                return

    try:
        for batch in con.sql(query).to_arrow_reader(BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            if view.scanned is not None and view.dropped is not None and len(view.dropped):
                table = _without_dropped(table, view.dropped)
            if view.mixed is not None and len(view.mixed):
                table = _not_numeric(table, view.mixed)
            numbers = table.column(ROW_ID)
            start = 0
            while start < table.num_rows:
                number = numbers[start].as_py() // CHUNK_RECORDS
                if current is None or current[0].number != number:
                    advance(number)
                assert current is not None
                stop = bisect_left(range(table.num_rows), (number + 1) * CHUNK_RECORDS, lo=start,
                                   key=lambda i: numbers[i].as_py())
                current[1].add(table.slice(start, stop - start))
                start = stop
        advance(None)
    except BaseException:
        if current is not None:
            current[1].abort()
        raise


def _empty(schema: pa.Schema) -> pa.Table:
    """An empty table of ``schema``, made without ``Schema.empty_table`` (which imports pandas
    on first use, a quarter of a second of a build's process)."""
    return pa.Table.from_batches([], schema)


def _hits(table: pa.Table, ids: pa.Array) -> pa.Array | None:
    """Which rows of ``table`` (in record-number order) have their record in ``ids`` (in order
    too), None for none: looked up among the ids in the table's range only, so the whole set is
    not hashed again for every batch."""
    numbers = table.column(ROW_ID)
    if not len(numbers):
        return None
    low, high = numbers[0].as_py(), numbers[len(numbers) - 1].as_py()
    start = bisect_left(range(len(ids)), low, key=lambda i: ids[i].as_py())
    stop = bisect_right(range(len(ids)), high, key=lambda i: ids[i].as_py())
    if start == stop:
        return None
    return pc.is_in(numbers, value_set=ids.slice(start, stop - start))


def _without_dropped(table: pa.Table, dropped: pa.Array) -> pa.Table:
    """The rows of ``table`` (in record-number order) whose record is not in ``dropped``."""
    hit = _hits(table, dropped)
    return table if hit is None else table.filter(pc.invert(hit))


def _not_numeric(table: pa.Table, mixed: pa.Array) -> pa.Table:
    """``table`` (newest versions in record-number order) with :data:`NUMERIC_VERSIONS` false for
    the records in ``mixed``."""
    hit = _hits(table, mixed)
    if hit is None:
        return table
    at = table.schema.get_field_index(NUMERIC_VERSIONS)
    return table.set_column(at, NUMERIC_VERSIONS, pc.and_(table.column(at), pc.invert(hit)))


def _combined(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array (without pyarrow's way for no chunks, which imports pandas)."""
    return column.combine_chunks() if column.num_chunks else pa.nulls(0, column.type)


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
