"""Loading a derivative's inputs into DuckDB: raw streams (deduplicated) and other derivatives.

A stream input becomes two relations: ``<alias>__landed`` holds every record of every raw
object once (rows inside the ranges its landings asked for, see :mod:`..raw.reader`, with
``_landing_id``/``_landed_at``/``_row``), and ``<alias>`` shows each record once — per the
stream's declared key, or per FHIR resource type and id — keeping the newest version (see
:func:`dedupe_query`). Without a key a record is its object and position: an object landed
twice is still read once, and rows of different objects are different records.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .. import engine
from ..connectors import NATIVE_FORMATS, Connector, RawObject, StreamInfo
from ..errors import ConfigError, LithotseError, NotFound, without_values
from ..interrupts import interruptible
from ..progress import Progress
from ..raw.index import open_index
from ..raw.manifest import Manifest
from ..raw.reader import PROVENANCE, StoredObject, landing_object_store, read_object, stored_objects
from ..raw.sources import connector_class, make_connector
from ..raw.verify import IntegrityChecks
from ..workspace import Workspace
from .catalog import Catalog
from .compile import DUCKDB, Dialect, Span, dedupe_sql, native_object_sql
from .disclosure import derivative_roles, with_declared
from .identifiers import identifying, stream_roles

NUMERIC_VERSIONS = "__numeric_versions"
NATIVE = "DuckDB reads it where it lies"
"""What the progress says of an object DuckDB reads itself (see :func:`native_object`)."""
PROVENANCE_SCHEMA = pa.schema([pa.field("_landing_id", pa.string()), pa.field("_landed_at", pa.string()),
                               pa.field("_row", pa.int64())])
_GLOB = set("*?[]{}")


@dataclass
class StreamInput:
    source: str
    stream: str
    manifests: list[Manifest]
    key: list[str] = field(default_factory=list)
    connector: str = ""
    connector_version: str = ""
    person_key: list[str] | None = None

    @property
    def identities(self) -> list[tuple[str, str | None, str | None]]:
        """The exact raw objects read, with the range each was read for."""
        return sorted({(m.sha256, m.range_from, m.range_to) for m in self.manifests},
                      key=lambda t: tuple(x or "" for x in t))

    def objects(self, ws: Workspace) -> list[StoredObject]:
        """The distinct raw objects, each with every landing of it."""
        return stored_objects(ws, self.manifests)

    def info(self, ws: Workspace, connector: Connector | None = None) -> StreamInfo:
        """The stream as its connector describes it under the source's current settings, from
        the newest landing when there is one, so the source itself need not be reachable."""
        connector = connector or make_connector(ws, self.source)
        if not self.manifests:
            return connector.stream(self.stream)
        newest = self.manifests[-1]
        return connector.landed_stream(self.stream, RawObject(None, newest.stream, newest.original_name,
                                                              newest.media_type, newest.meta, validated=True))

    def read_key(self, ws: Workspace) -> list[str]:
        """The stream's declared key and person key (see :meth:`info`)."""
        info = self.info(ws)
        self.key = list(info.key)
        self.person_key = list(info.person_key) if info.person_key else None
        return self.key

    def identity(self) -> dict[str, Any]:
        """What a version records of this input: reader and the exact objects with their ranges."""
        return {"source": self.source, "stream": self.stream, "connector": self.connector,
                "connector_version": self.connector_version,
                "objects": [list(t) for t in self.identities]}


def resolve_stream(ws: Workspace, source: str, stream: str, *, with_key: bool = True) -> StreamInput:
    """The landings of a stream (from the index), the connector reading it and, unless not
    needed, its declared key."""
    cls = connector_class(ws, source)
    index = open_index(ws)
    try:
        manifests = index.landings(source, stream)
    finally:
        index.close()
    resolved = StreamInput(source, stream, manifests, [], cls.name, cls.version)
    if with_key:
        resolved.read_key(ws)
    return resolved


def input_identity(ws: Workspace, catalog: Catalog, item: dict, resolved: StreamInput | None = None) -> Any:
    """An input's part of a version id: a derivative's current version, or a stream's objects
    (``resolved`` when the caller has the stream already)."""
    if "derivative" in item:
        current = catalog.current(item["derivative"])
        if current is None:
            catalog.spec(item["derivative"])
            raise LithotseError(f"input derivative {item['derivative']!r} has not been built yet")
        return {"derivative": item["derivative"], "version": current.version}
    resolved = resolved or resolve_stream(ws, item["source"], item["stream"], with_key=False)
    return resolved.identity()


def connect(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """A build's connection; its session time zone is UTC, as the connectors' readers' is, so an
    instant without an offset that DuckDB reads itself means what it means to them."""
    con = engine.connect(ws.limits)
    con.execute("SET TimeZone = 'UTC'")
    return con


def side_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Another connection to a build's database, for queries on a thread of its own: in UTC as
    the build's is (each connection has its own time zone, and none can be set once the build's
    is locked down, so it is made before)."""
    cursor = interruptible(con.cursor())  # a cursor is a connection of its own: interrupted on its own
    cursor.execute("SET TimeZone = 'UTC'")
    return cursor


def lock_down(con: duckdb.DuckDBPyConnection, readable: Sequence[str] = ()) -> None:
    """From here on queries cannot touch files, the network or extensions, but for the raw files
    ``readable`` that a relation made before reads itself (never a user's SQL: see
    :meth:`.engines.duckdb.DuckDBSession.lock_down`)."""
    if readable:
        con.execute("SET allowed_paths = $paths", {"paths": list(readable)})
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def dedupe_query(relation: str, key: list[str], columns: list[str],
                 landing_order: tuple[str, ...] = ("_landed_at", "_landing_id", "_row"), *,
                 dialect: Dialect = DUCKDB, kept: list[str] | None = None) -> str:
    """One row per key: the newest version of each record.

    Newest is the largest ``versionId`` when every version id of that record is a number;
    version ids are otherwise opaque (UUIDs, hashes), so the latest ``lastUpdated`` wins,
    then the latest landing, then the later row of the same object (a total order, so
    repeated builds keep the same row); ``landing_order`` names the columns giving those last
    two, largest last.
    """
    q = dialect.quote
    order = []
    if "versionId" in columns:
        numeric, number = dialect.version_number(q("versionId"))
        parts = ", ".join(q(k) for k in key)
        relation = (f"(SELECT *, bool_and({numeric}) OVER (PARTITION BY {parts}) AS {NUMERIC_VERSIONS} "
                    f"FROM {relation})")
        order.append(f"CASE WHEN {NUMERIC_VERSIONS} THEN {number} END DESC NULLS LAST")
    if "lastUpdated" in columns:
        order.append(f"{q('lastUpdated')} DESC NULLS LAST")
    order += [f"{q(c)} DESC" for c in landing_order if c in columns]
    return dedupe_sql(relation, key, order, dialect, columns=kept)


def repeated_dedupe(relation: str, key: list[str], columns: list[str], landing_order: tuple[str, ...], *,
                    kept: list[str], keys_table: str, rows_table: str,
                    dialect: Dialect = DUCKDB) -> tuple[str, str, str]:
    """:func:`dedupe_query` ranking only the records that have more than one version (most
    records of a stream have one, and a window over all of them sorts the whole stream): the
    statements making ``keys_table`` (the hashes of the keys seen more than once) and
    ``rows_table`` (the versions of the keys with those hashes), and the query of the newest of
    those, with ``kept`` columns. The newest versions are those, and every version of the other
    keys (whose :data:`NUMERIC_VERSIONS` is whether their own version id is a number). Keys are
    counted by their hash, a number grouped and joined on far faster than text: a key seen once
    whose hash another key shares is ranked too, alone among its versions, so it stays newest."""
    q = dialect.quote
    hashed = f"hash({', '.join(f'v.{q(k)}' for k in key)})"
    keys_sql = f"SELECT {hashed} AS __key_hash FROM {relation} v GROUP BY 1 HAVING count(*) > 1"
    rows_sql = f"SELECT v.* FROM {relation} v SEMI JOIN {keys_table} r ON {hashed} = r.__key_hash"
    return keys_sql, rows_sql, dedupe_query(rows_table, key, columns, landing_order, dialect=dialect, kept=kept)


@dataclass
class NativeObject:
    """A landed object DuckDB reads itself where it lies: ``sql`` gives its rows with provenance,
    as :func:`~lithotse_desktop.raw.reader.read_object` gives them, and ``schema`` their columns."""

    stored: StoredObject
    sql: str
    schema: pa.Schema
    path: str
    """The file DuckDB reads."""
    hoisted: bool = False
    """Whether its rows carry a view's hoisted values (:data:`.compile.HOISTED`)."""
    text_sql: str | None = None
    """With ``sql`` a typed read (see :func:`native_object`), the same rows read as text."""


def native_object(ws: Workspace, stored: StoredObject, connector: Connector, checks: IntegrityChecks,
                  unused: tuple[str, ...] = (), hoisted: Sequence[str] = (),
                  needed: Sequence[str] | None = None, text: bool = False,
                  typed: bool = False) -> NativeObject | None:
    """The object as a DuckDB query over its file, when its connector describes how to read it
    (``native_read``) and it lies in a local raw store; else None (the connector reads it).
    ``hoisted``: a view's JSONPaths, whose values an NDJSON object's rows carry from the same parse
    (see :func:`.compile.native_object_sql`), as text with ``text``; ``needed``: the only columns
    the caller reads (the others are null, and not parsed out of each line). ``typed``: a CSV
    object's number, date and time fields are typed by DuckDB's reader where it can (see
    :meth:`.compile.Dialect.typed_fields`), and ``text_sql`` reads them as text, for when it
    refuses a value (:func:`typed_refusal`).

    The query reads the file itself: no rows pass through Python. Its bytes are hashed by the
    checks' worker meanwhile (the second read comes from the page cache), so a damaged object
    fails ``checks.finish()`` before anything built from it is committed, as with every read."""
    spans = stored.spans()
    manifest = stored.reader
    store = landing_object_store(ws, manifest)
    key = manifest.object_key
    path = store.local_path(key)
    if not spans or path is None or _GLOB & set(str(path)):
        return None
    if not path.exists():
        raise LithotseError(f"raw object {key} of landing {manifest.id} is missing")
    read = connector.native_read(RawObject(None, manifest.stream, manifest.original_name, manifest.media_type,
                                           manifest.meta, validated=True, open=lambda: store.open_read(key)))
    if read is None or read.format not in NATIVE_FORMATS or read.encoding.lower().replace("_", "-") not in (
            "utf-8", "utf8"):
        return None
    schema = read.schema()
    if any(rng.bounded and m.date_field and m.date_field not in schema.names for rng, m in spans):
        return None
    check = checks.check(key, stored.sha256, manifest.bytes, f"{manifest.source}/{manifest.stream}, "
                         f"{manifest.original_name}", lambda: store.open_read(key))
    check.watch(path)
    kept = [c for c in schema.names if c not in unused]
    if needed is not None and not ("resource" in schema.names and "resourceType" in schema.names
                                   and pa.types.is_string(schema.field("resourceType").type)):
        needed = None  # a view is hoisted over resources with their type only (rowstream.load_view)
    landings = [Span(m.id, m.landed_at, m.date_field, rng) for rng, m in spans]
    skipped = read.format == "csv" and read.skip == 1 and read.limit is None and _starts_with_record(path)
    scan = DUCKDB.native_scan(read, str(path), _max_line(ws), header=skipped)
    hoisted = hoisted if read.format == "ndjson" else ()
    sql = native_object_sql(read, scan, landings, kept, timezone=ws.timezone, dialect=DUCKDB, hoisted=hoisted,
                            skipped=skipped, needed=needed, text=text)
    text_sql = None
    # the reader types every record it reads: only without records to leave out but the header
    if (typed and read.format == "csv" and read.limit is None and (skipped or not read.skip)
            and DUCKDB.typed_fields(read)):
        typed_scan = DUCKDB.native_scan(read, str(path), _max_line(ws), header=skipped, typed=True)
        sql, text_sql = native_object_sql(read, typed_scan, landings, kept, timezone=ws.timezone, dialect=DUCKDB,
                                          skipped=skipped, typed=True), sql
    return NativeObject(stored, sql, pa.schema([*(schema.field(c) for c in kept), *PROVENANCE_SCHEMA]), str(path),
                        bool(hoisted), text_sql)


def _starts_with_record(path: Path) -> bool:
    """Whether the file's first line (after a UTF-8 byte-order mark) holds its first record: DuckDB's
    CSV reader takes that line as the header even when it is empty, where a connector passes over
    empty lines first."""
    with path.open("rb") as fh:
        head = fh.read(4)
    head = head.removeprefix(codecs.BOM_UTF8)
    return bool(head) and head[:1] not in (b"\r", b"\n")


def _max_line(ws: Workspace) -> int:
    """The longest NDJSON line DuckDB is told to expect: what the FHIR connectors' own reader
    allows (a 64th of DuckDB's memory, 16 MB to 256 MB), so a line reads natively exactly when
    it reads through the connector."""
    return max(1 << 24, min(1 << 28, ws.limits.duckdb_bytes // 64))


def typed_refusal(exc: BaseException) -> bool:
    """Whether a query may have failed as DuckDB's CSV reader refused to type a field of a typed
    read (see :func:`native_object`; a text read's reader converts nothing, and the error does
    not always name the right field): then the same query over the objects read as text
    (:func:`read_as_text`) gives its rows, or the error the text gives."""
    return isinstance(exc, duckdb.ConversionException) and "CSV Error" in str(exc)


def read_as_text(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> None:
    """Make the ``views`` (names and their text reads, see :attr:`Landed.text_sql`) read their
    objects as text from now on."""
    for name, sql in views.items():
        con.execute(f"CREATE OR REPLACE TEMP VIEW {DUCKDB.quote(name)} AS {sql}")
    views.clear()


def read_failed(checks: IntegrityChecks, what: str, exc: duckdb.Error) -> LithotseError:
    """The error of a read that failed in DuckDB: the damage of an object read, when its hash
    shows some (raised here: it explains the failure better), else DuckDB's reason."""
    checks.raise_found()
    return LithotseError(f"{what}: {without_values(exc)}")


@dataclass
class Landed:
    """A stream's objects as one relation (see :func:`landed_objects`)."""

    columns: list[str]
    paths: list[str]
    """The files DuckDB reads itself when the relation is queried."""
    text_sql: str | None = None
    """When some object is a typed read (see :func:`native_object`), the relation with every
    object read as text."""


def landed_objects(con: duckdb.DuckDBPyConnection, ws: Workspace, resolved: StreamInput, progress: Progress,
                   checks: IntegrityChecks, name: str, *, unused: tuple[str, ...] = (),
                   skip: frozenset[str] | set[str] = frozenset(), typed: bool = False) -> Landed | None:
    """Make the view ``name``: every row of the stream's objects (but those whose sha256 is in
    ``skip``) with provenance, in object order, without the ``unused`` columns; None when no
    object has rows to read. An object DuckDB can read itself (:func:`native_object`) is a query
    over its file; any other is read by its connector, batch by batch, as the view is queried
    (so the view can be read once). ``typed``: CSV objects are typed reads where they can be,
    when DuckDB reads every object itself (a connector's batches cannot be read again)."""
    q = DUCKDB.quote
    connector = make_connector(ws, resolved.source)
    parts: list[str] = []
    text_parts: list[str] = []
    paths: list[str] = []
    for number, stored in enumerate(resolved.objects(ws)):
        if stored.sha256 in skip:
            continue
        label = f"{resolved.source}/{resolved.stream} {stored.reader.original_name}"
        native = native_object(ws, stored, connector, checks, unused, typed=typed)
        if native is not None:
            progress.update(f"reading {label}: {NATIVE}")
            parts.append(f"SELECT * FROM ({native.sql})")
            text_parts.append(f"SELECT * FROM ({native.text_sql or native.sql})")
            paths.append(native.path)
            continue
        progress.update(f"reading {label}")
        batches = read_object(ws, stored, connector, checks, provenance=True)
        first = next(batches, None)
        if first is None:
            continue
        reader = pa.RecordBatchReader.from_batches(first.schema, chain([first], batches))
        alias = f"{name}__object{number}"
        con.register(alias, _without(reader, unused) if unused else reader)
        parts.append(f"SELECT * FROM {q(alias)}")
        text_parts.append(parts[-1])
        typed = False
    if not parts:
        return None
    if not typed:
        parts = text_parts
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {q(name)} AS {' UNION ALL BY NAME '.join(parts)}")
        columns = [r[0] for r in con.execute(f"DESCRIBE {q(name)}").fetchall()]
    except duckdb.Error as exc:
        raise LithotseError(f"{resolved.source}/{resolved.stream}: its landings do not fit each other: "
                            f"{without_values(exc)}") from None
    text_sql = " UNION ALL BY NAME ".join(text_parts) if text_parts != parts else None
    return Landed(columns, paths, text_sql)


def stream_key(resolved: StreamInput, columns: list[str]) -> list[str]:
    """The record identity: the connector's declared key, or FHIR's resource type and id."""
    if resolved.key:
        return list(resolved.key)
    return ["resourceType", "id"] if {"resourceType", "id", "resource"} <= set(columns) else []


def load_stream(con: duckdb.DuckDBPyConnection, ws: Workspace, alias: str, resolved: StreamInput,
                progress: Progress, checks: IntegrityChecks, *, materialize: bool = False,
                rescanned: bool = False, unused: tuple[str, ...] = (),
                readable: list[str] | None = None, text_views: dict[str, str] | None = None) -> pa.Schema:
    """Make ``alias`` (deduplicated records) and ``<alias>__landed`` (every landed record).

    The objects are one relation (:func:`landed_objects`): files DuckDB reads itself, the others
    streamed from their connectors. Without ``materialize`` it is streamed: straight into the
    one query that reads it when it needs no deduplication, into a table of the newest versions
    when it does; otherwise every landed row is copied into a DuckDB table first (and, with a
    key, its newest versions into another, so the queries reading them do not rank every
    version again: incremental builds keep the landed rows to ask what changed). DuckDB spills
    to the workspace's temp folder what exceeds ``[limits] memory``. ``rescanned``: the query may
    read the input more than once (a self-join, a subquery in a ``sql`` derivative), so a stream
    that needs no deduplication is kept in a table as it streams in rather than read where it
    is. A relation left to be read later that reads files is kept in a table too, unless the
    caller takes the files in ``readable`` (to allow them when the connection is locked down).
    ``checks`` collects the hash checks of the objects read; settle them with
    ``checks.finish()`` before using the results. ``unused`` columns (a FHIR stream's
    ``resource`` text, for an aggregate) are left out as they are read. With ``text_views``, a
    relation left as a view for the one query reading it may read CSV objects typed (see
    :func:`native_object`): its name and text read are added there, for the caller to rerun a
    query the typed read failed (:func:`typed_refusal`, :func:`read_as_text`).
    """
    q = DUCKDB.quote
    landed = f"{alias}__landed"
    objects = f"{alias}__objects"
    found = landed_objects(con, ws, resolved, progress, checks, objects, unused=unused,
                           typed=text_views is not None and not materialize)
    if found is None:
        raise NotFound(f"input {resolved.source}/{resolved.stream} has no landed records; "
                       f"import it first (lithotse import {resolved.source})")
    columns = found.columns
    key = stream_key(resolved, columns)
    missing = [k for k in key if k not in columns]
    if missing:
        raise ConfigError(f"{resolved.source}/{resolved.stream}: key column(s) {missing} are not in the data")
    later = not key and (rescanned or (bool(found.paths) and readable is None))
    streamed = not materialize and not later
    if found.text_sql is not None:
        if streamed and not key and text_views is not None:
            text_views[objects] = found.text_sql
        else:  # read here and now: as text, no query to rerun
            read_as_text(con, {objects: found.text_sql})
    if streamed:
        con.execute(f"CREATE TEMP VIEW {q(landed)} AS SELECT * FROM {q(objects)}")
        if not key and readable is not None:
            readable.extend(found.paths)
    else:
        try:
            con.execute(f"CREATE TABLE {q(landed)} AS SELECT * FROM {q(objects)}")
        except duckdb.Error as exc:
            raise read_failed(checks, f"{resolved.source}/{resolved.stream}", exc) from None
    hidden = [c for c in PROVENANCE if c in columns]
    relation = q(landed)
    if key:
        relation = f"({dedupe_query(relation, key, columns)})"
        if "versionId" in columns:
            hidden.append(NUMERIC_VERSIONS)
    exclude = f" EXCLUDE ({', '.join(q(c) for c in hidden)})" if hidden else ""
    if key:  # materialized too: the newest versions once, for the queries that read them
        _dedupe_while_reading(con, resolved, q(alias), f"SELECT *{exclude} FROM {relation}", checks)
    else:
        con.execute(f"CREATE VIEW {q(alias)} AS SELECT *{exclude} FROM {relation}")
    return con.sql(f"SELECT * FROM {q(alias)} LIMIT 0").to_arrow_table().schema


def _without(reader: pa.RecordBatchReader, unused: tuple[str, ...]) -> pa.RecordBatchReader:
    """The reader's batches without the ``unused`` columns."""
    kept = [f.name for f in reader.schema if f.name not in unused]
    if len(kept) == len(reader.schema):
        return reader
    schema = pa.schema([reader.schema.field(n) for n in kept])
    return pa.RecordBatchReader.from_batches(schema, (batch.select(kept) for batch in reader))


def _dedupe_while_reading(con: duckdb.DuckDBPyConnection, resolved: StreamInput, table: str, query: str,
                          checks: IntegrityChecks) -> None:
    """Keep only the newest version of each record as the objects stream in: one pass over the
    landed rows, without a copy of every version first (DuckDB spills what exceeds the limit).
    A table, so the derivative's query may read it more than once."""
    try:
        con.execute(f"CREATE TABLE {table} AS {query}")
    except duckdb.Error as exc:
        raise read_failed(checks, f"{resolved.source}/{resolved.stream}", exc) from None


def fresh_landings(resolved: StreamInput, previous: Any) -> list[str] | None:
    """Ids of the landings a build reads that ``previous`` (a Version) did not, or None when an
    object it read is gone (a full rebuild is needed)."""
    old = {tuple(x) for x in previous.inputs.get("input", {}).get("objects", [])}
    new = {tuple(x) for x in (list(t) for t in resolved.identities)}
    if not old <= new:
        return None
    return [m.id for m in resolved.manifests if (m.sha256, m.range_from, m.range_to) not in old]


def changed_records(con: duckdb.DuckDBPyConnection, alias: str, resolved: StreamInput, fresh_ids: list[str],
                    table: str) -> None:
    """Make ``table``: the rows by which the records of ``alias`` (loaded by :func:`load_stream`)
    differ from the records before the landings ``fresh_ids``, both versions of a changed record.
    An aggregate's cells of a period none of them falls in are the cells its previous version
    computed: a record landed again unchanged (an export landed again whole, with a few rows
    more) changes nothing. Only records the new landings hold can differ; of a stream without a
    key, their rows are new records."""
    q = DUCKDB.quote
    landed = q(f"{alias}__landed")
    columns = con.sql(f"SELECT * FROM {landed} LIMIT 0").columns
    visible = con.sql(f"SELECT * FROM {q(alias)} LIMIT 0").columns
    key = stream_key(resolved, columns)
    con.execute("CREATE OR REPLACE TEMP TABLE __fresh_ids AS SELECT unnest($ids::VARCHAR[]) AS id",
                {"ids": fresh_ids})
    fresh = "_landing_id IN (SELECT id FROM __fresh_ids)"
    listed = ", ".join(q(c) for c in visible)
    if not key:
        con.execute(f"CREATE TEMP TABLE {q(table)} AS SELECT {listed} FROM {landed} WHERE {fresh}")
        return
    keys = ", ".join(q(k) for k in key)
    con.execute(f"CREATE OR REPLACE TEMP TABLE __fresh_keys AS SELECT DISTINCT {keys} FROM {landed} WHERE {fresh}")
    held = f"({keys}) IN (SELECT ({keys}) FROM __fresh_keys)"
    older = f"(SELECT * FROM {landed} WHERE {held} AND NOT {fresh})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE __records_before AS "
                f"SELECT {listed} FROM ({dedupe_query(older, key, columns)})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __records_now AS SELECT {listed} FROM {q(alias)} WHERE {held}")
    con.execute(f"CREATE TEMP TABLE {q(table)} AS {differing_rows('__records_now', '__records_before')}")
    con.execute("DROP TABLE __records_before; DROP TABLE __records_now; DROP TABLE __fresh_keys")


def differing_rows(first: str, second: str) -> str:
    """The rows of either relation (same columns) the other does not hold, as many times as
    they are in excess: the rows by which two versions of a set of records differ."""
    return (f"(SELECT * FROM {first} EXCEPT ALL SELECT * FROM {second}) UNION ALL "
            f"(SELECT * FROM {second} EXCEPT ALL SELECT * FROM {first})")


def load_derivative(con: duckdb.DuckDBPyConnection, catalog: Catalog, alias: str, name: str) -> pa.Schema:
    current = catalog.current(name)
    if current is None:
        catalog.spec(name)
        raise LithotseError(f"input derivative {name!r} has not been built yet")
    table = catalog.read(current)
    con.register(f"__arrow_{alias}", table)
    con.execute(f"CREATE TABLE {DUCKDB.quote(alias)} AS SELECT * FROM {DUCKDB.quote('__arrow_' + alias)}")
    con.unregister(f"__arrow_{alias}")
    return table.schema


def empty_relation(con: duckdb.DuckDBPyConnection, alias: str, schema: pa.Schema) -> None:
    """An empty table with an input's columns, for validating a spec without its data (made from
    no batches: ``Schema.empty_table`` imports pandas, a third of a second of ``derive add``)."""
    con.register("__empty", pa.Table.from_batches([], schema))
    con.execute(f"CREATE TABLE {DUCKDB.quote(alias)} AS SELECT * FROM __empty")
    con.unregister("__empty")


def sample_schema(ws: Workspace, catalog: Catalog, item: dict) -> pa.Schema | None:
    """An input's columns from its first landing (or current version), or None without data."""
    if "derivative" in item:
        current = catalog.current(item["derivative"])
        if current is None:
            catalog.spec(item["derivative"])
            return None
        return catalog.read(current).schema
    resolved = resolve_stream(ws, item["source"], item["stream"], with_key=False)
    connector = make_connector(ws, item["source"])
    with IntegrityChecks() as checks:
        for stored in resolved.objects(ws):
            if not stored.spans():
                continue
            described = described_schema(ws, stored, connector)
            if described is not None:
                return described
            batch = next(read_object(ws, stored, connector, checks), None)
            if batch is not None:
                return batch.schema
    return None


def described_schema(ws: Workspace, stored: StoredObject, connector: Connector) -> pa.Schema | None:
    """The columns ``read`` gives for an object, as its connector describes them for an engine
    reading it itself (``native_read``: the same columns and types, by contract), without reading
    a record; None where the connector reads the object itself. Checking a spec against a 5M-row
    CSV read its first 16 MB block and imported pandas (pyarrow's first conversion of Python
    values), 1.1 s and 500 MB for a schema its landing's metadata holds."""
    manifest = stored.reader
    store = landing_object_store(ws, manifest)
    key = manifest.object_key
    path = store.local_path(key)
    if path is not None and not path.exists():  # what reading it would say; a layout on record would not
        raise LithotseError(f"raw object {key} of landing {manifest.id} is missing")
    try:
        read = connector.native_read(RawObject(None, manifest.stream, manifest.original_name, manifest.media_type,
                                               manifest.meta, validated=True, open=lambda: store.open_read(key)))
    except OSError:
        return None  # reading it through the connector names the object and the reason
    return None if read is None else read.schema()


def input_roles(catalog: Catalog, spec: dict, item: dict, schema: pa.Schema,
                stream: StreamInput | None = None) -> dict[str, str | None]:
    """The role (see :mod:`.identifiers`) of each column of one input, the spec's ``columns`` first;
    a ``stream``'s own keys (its declared key and person key) by what they are."""
    if "derivative" in item:
        current = catalog.current(item["derivative"])
        found = derivative_roles(current.privacy if current else None, catalog.find_spec(item["derivative"]),
                                 schema)
    else:
        found = stream_roles(schema, item["stream"])
        for column, role in key_roles(stream).items() if stream is not None else ():
            if column in found and not identifying(found[column]):
                found[column] = role
    return with_declared(spec, found)


def key_roles(stream: StreamInput) -> dict[str, str]:
    """The roles a stream's keys give their columns: a one-column record key identifies a record
    (an encounter number names one visit: published as a cell's key, every visit would be listed),
    the person key a person; a column of a key of several is not known to identify anything."""
    out = {stream.key[0]: "record_key"} if len(stream.key) == 1 else {}
    return {**out, **{column: "person_key" for column in stream.person_key or []}}


def stream_keys(ws: Workspace, item: dict) -> StreamInput | None:
    """A stream input with its declared keys read, None where they cannot be (its source gone)."""
    if "derivative" in item:
        return None
    try:
        return resolve_stream(ws, item["source"], item["stream"])
    except LithotseError:
        return None


def input_picks(catalog: Catalog, item: dict) -> dict:
    """What an input derivative's current version recorded of how its rows were chosen (see
    :func:`.disclosure.picks`): its name, ``picks``, ``computed``, ``apart`` and ``several``; nothing
    for a stream."""
    if "derivative" not in item:
        return {}
    current = catalog.current(item["derivative"])
    privacy = (current.privacy if current else None) or {}
    return {"name": item["derivative"], "picks": list(privacy.get("picks", [])),
            "computed": list(privacy.get("computed", [])), "apart": list(privacy.get("apart", [])),
            "several": list(privacy.get("several", []))}
