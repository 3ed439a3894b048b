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
from typing import Any

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
from .compile import DUCKDB
from .inputs import StreamInput, dedupe_query, stream_key
from .kinds.view import rows_query

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


def load_view(con: duckdb.DuckDBPyConnection, ws: Workspace, spec: dict, resolved: StreamInput,
              progress: Progress, checks: IntegrityChecks) -> tuple[pa.Schema, str, list[Any]]:
    """Read the view's stream once into the two small tables (see the module notes); return the
    input's columns and the SQL (with its parameters) of the view's rows of the newest versions."""
    q = DUCKDB.quote
    pending = _landed_batches(ws, resolved, progress, checks)
    first = next(pending, None)
    if first is None:
        raise NotFound(f"input {resolved.source}/{resolved.stream} has no landed records; "
                       f"import it first (lithotse import {resolved.source})")
    schema = first[1].schema
    columns = list(schema.names)
    key = stream_key(resolved, columns)
    missing = [k for k in key if k not in columns]
    if missing:
        raise ConfigError(f"{resolved.source}/{resolved.stream}: key column(s) {missing} are not in the data")
    kept = [*key, *(c for c in VERSION_COLUMNS if c in columns and c not in key), LANDING, ROW_ID]
    landings = _landing_ranks(resolved)
    view_sql, params = rows_query(spec, schema, "__batch", ROW_ID)
    where = f"{resolved.source}/{resolved.stream}"
    seen, created = 0, False
    for stored, batch in chain([first], pending):
        progress.check()
        numbers = pa.array(range(seen, seen + batch.num_rows), pa.int64())
        seen += batch.num_rows
        rank = pc.index_in(batch.column("_landing_id"), value_set=landings)
        con.register("__batch", batch.append_column(LANDING, rank).append_column(ROW_ID, numbers))
        try:
            if not created:
                con.execute(f"CREATE TABLE {VERSIONS} AS SELECT {', '.join(q(c) for c in kept)} FROM __batch")
                con.execute(f"CREATE TABLE {ROWS} AS {view_sql}", params or None)
                created = True
            else:
                con.execute(f"INSERT INTO {VERSIONS} BY NAME SELECT {', '.join(q(c) for c in kept)} FROM __batch")
                con.execute(f"INSERT INTO {ROWS} {view_sql}", params or None)
        except duckdb.Error as exc:
            checks.raise_found()  # a damaged object may be why
            raise LithotseError(f"derivative {spec['name']}: {where}, {stored.reader.original_name}: "
                                f"{exc}") from None
        finally:
            con.unregister("__batch")
    rows = f"SELECT * EXCLUDE ({q(ROW_ID)}) FROM {ROWS}"
    if key:
        # the newest versions first, on their own: the memory choosing them is given back
        # before the rows are written
        newest = dedupe_query(VERSIONS, key, kept, landing_order=(LANDING, ROW_ID))
        try:
            con.execute(f"CREATE TABLE {NEWEST} AS SELECT {q(ROW_ID)} FROM ({newest})")
        except duckdb.Error as exc:
            raise LithotseError(f"derivative {spec['name']}: {where}: {exc}") from None
        con.execute(f"DROP TABLE {VERSIONS}")
        rows += f" WHERE {q(ROW_ID)} IN (SELECT {q(ROW_ID)} FROM {NEWEST})"
    return pa.schema([f for f in schema if f.name not in PROVENANCE]), rows, []


def _landed_batches(ws: Workspace, resolved: StreamInput, progress: Progress,
                    checks: IntegrityChecks) -> Iterator[tuple[StoredObject, pa.RecordBatch]]:
    """Every batch of the stream's objects, one object open at a time, with provenance."""
    connector = make_connector(ws, resolved.source)
    for stored in resolved.objects(ws):
        progress.update(f"reading {resolved.source}/{resolved.stream} {stored.reader.original_name}")
        for batch in read_object(ws, stored, connector, checks, provenance=True):
            yield stored, batch


def _landing_ranks(resolved: StreamInput) -> pa.Array:
    """The stream's landing ids from oldest to newest (by landing time, then id), so a record's
    landing is kept as its index here: a small number rather than two strings per record."""
    ordered = sorted(resolved.manifests, key=lambda m: (m.landed_at, m.id))
    return pa.array([m.id for m in ordered], pa.string())


def write_part(ws: Workspace, con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], what: str,
               transform: Callable[[pa.Table], pa.Table]) -> tuple[StagedPart, pa.Schema]:
    """Run ``sql`` and write its rows, each batch through ``transform``, to one zstd Parquet
    file; its schema is ``transform`` of the query's (empty) result, so an empty result still
    has its columns."""
    try:
        reader = con.sql(sql, params=params or None).to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        raise LithotseError(f"{what}: {exc}") from None
    schema = transform(reader.schema.empty_table()).schema
    path = staging_dir(ws) / f"{uuid.uuid4().hex}.parquet"
    rows = 0
    try:
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            try:
                for batch in reader:
                    table = transform(pa.Table.from_batches([batch]))
                    if table.schema != schema:
                        table = table.cast(schema)
                    writer.write_table(table, row_group_size=BATCH_ROWS)
                    rows += table.num_rows
            except duckdb.Error as exc:
                raise LithotseError(f"{what}: {exc}") from None
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StagedPart(path, digest.hexdigest(), rows, path.stat().st_size), schema


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
