"""An aggregate's input kept beside its version, so a build after new landings reads only them.

An aggregate over a stream reads few small columns of each record (a FHIR stream's ``resource``
text, most of its bytes, is left out). A version built on DuckDB from one stream keeps, in the
restricted store (it holds record keys), the newest version of every record with those columns
and what ordering versions needs (landing, position, whether all of the record's version ids are
numbers). The next build reads only the objects that version did not, chooses the newest version
of each record among the kept ones and the new ones — what choosing over every version gives,
since a version that lost still loses unless a record's version ids stop being all numbers (then
it reads everything) — and runs the aggregate's whole query over that small table: every cell is
computed as a full build computes it, without parsing a resource again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from itertools import chain
from typing import Any

import duckdb
import pyarrow as pa

from ..errors import ConfigError, LithotseError
from ..progress import Progress
from ..raw.reader import PROVENANCE
from ..raw.verify import IntegrityChecks
from ..workspace import Workspace
from .compile import DUCKDB, dedupe_sql, period_query
from .inputs import NUMERIC_VERSIONS, StreamInput, landed_objects, read_failed, stream_key
from .rowstream import (
    NotIncremental,
    StagedPart,
    _part_batches,
    _staged,
    first_read,
    newest_over,
    staging_dir,
)

INDEX = "input_index"
"""An aggregate version's stats entry: the key of its kept input in the restricted store."""
KEPT = "__kept_input"
LANDING_ORDER = ("_landed_at", "_landing_id", "_row")


@dataclass
class KeptInput:
    """The stream as loaded: the relation the query reads, and the table the next build starts from."""

    schema: pa.Schema
    added: bool
    """Built from the previous version's kept input and the new objects only."""
    periods: list[Any] | None = None
    """The periods whose cells may differ from the previous version's (see :func:`load`)."""


@dataclass
class Prior:
    """What an incremental build takes from the previous version's kept input."""

    key: str
    skip: set[str]
    """Objects whose rows it holds as they are: not read again."""
    dropped: list[str]
    """Landings of objects landed again since (for another range): their rows are read again."""
    fresh: list[str]
    """The landings the previous version did not read."""


def previous_input(catalog: Any, previous: Any, resolved: StreamInput) -> Prior | None:
    """The previous version's kept input as a start, unless it or an object it read is gone."""
    key = (previous.stats or {}).get(INDEX) if previous is not None else None
    if not isinstance(key, str) or catalog.store_of("restricted").stat(key) is None:
        return None
    old = {tuple(x) for x in previous.inputs.get("input", {}).get("objects", [])}
    new = {(m.sha256, m.range_from, m.range_to) for m in resolved.manifests}
    if not old <= new:
        return None
    again = {x[0] for x in new - old}
    dropped = [m.id for m in resolved.manifests if m.sha256 in again and (m.sha256, m.range_from, m.range_to) in old]
    fresh = [m.id for m in resolved.manifests if (m.sha256, m.range_from, m.range_to) not in old]
    return Prior(key, {x[0] for x in old} - again, dropped, fresh)


def load(con: duckdb.DuckDBPyConnection, ws: Workspace, catalog: Any, alias: str, resolved: StreamInput,
         progress: Progress, checks: IntegrityChecks, unused: tuple[str, ...],
         prior: Prior | None, periods_of: dict | None = None, timezone: str = "UTC") -> KeptInput:
    """Make ``alias`` (the newest version of each record, without provenance) over :data:`KEPT`
    (the same rows with it), from every object, or from ``prior``'s kept input and the objects
    it did not hold. Raises :class:`NotIncremental` when the latter cannot be exact. With
    ``periods_of`` (an aggregate spec with a grain), an incremental load also finds the periods
    whose cells may change: those of the new landings' records and of the versions they replace."""
    q = DUCKDB.quote
    skip = prior.skip if prior is not None else set()
    where = f"{resolved.source}/{resolved.stream}"
    found = landed_objects(con, ws, resolved, progress, checks, "__new", unused=unused, skip=skip)
    first_read(iter([found] if found is not None else []), resolved, incremental=prior is not None)
    assert found is not None
    if prior is not None:
        old = _part_batches(catalog, prior.key, ws)
        head = next(old, None)
        if head is None:
            raise NotIncremental("the previous version kept no records")  # nothing to save: read everything
        con.register("__old", pa.RecordBatchReader.from_batches(head.schema, chain([head], old)))
        try:
            con.execute("CREATE TABLE __old_input AS SELECT * FROM __old")
        finally:
            con.unregister("__old")
    # a full load reads the objects straight into the query choosing the newest versions (or
    # into the kept table); an incremental one keeps the new rows for the steps below
    if prior is not None:
        try:
            con.execute("CREATE TABLE __new_input AS SELECT * FROM __new")
        except duckdb.Error as exc:
            raise read_failed(checks, where, exc) from None
        finally:
            con.execute("DROP VIEW IF EXISTS __new")
    columns = found.columns
    key = stream_key(resolved, columns)
    missing = [k for k in key if k not in columns]
    if missing:
        raise ConfigError(f"{where}: key column(s) {missing} are not in the data")
    versioned = bool(key) and "versionId" in columns
    if prior is not None:
        old_columns = [r[0] for r in con.execute("DESCRIBE __old_input").fetchall()]
        same = [c for c in old_columns if c != NUMERIC_VERSIONS] == columns
        if not same or versioned != (NUMERIC_VERSIONS in old_columns):
            raise NotIncremental("the input's columns changed")
    cols = ", ".join(q(c) for c in columns)
    periods = None
    if prior is not None:
        if prior.dropped:
            gone = "_landing_id IN (SELECT unnest($ids))"
            if versioned:  # a dropped row's flag also spoke for versions in other objects, not read again
                mixed = con.execute(f"SELECT count(*) FROM __old_input WHERE {gone} AND NOT {NUMERIC_VERSIONS}",
                                    {"ids": prior.dropped}).fetchone()
                if mixed and mixed[0]:
                    raise NotIncremental("records landed again have version ids that are not numbers")
            con.execute(f"DELETE FROM __old_input WHERE {gone}", {"ids": prior.dropped})
        if periods_of is not None:
            periods = _touched(con, periods_of, key, cols, prior.fresh, timezone)
    query = None
    if key and prior is not None:
        try:
            newest_over(con, "__old_input", "__new_input", key, columns, list(LANDING_ORDER), versioned, KEPT)
        except duckdb.Error as exc:
            raise LithotseError(f"{where}: {exc}") from None
        for table in ("__hit", "__winners"):
            con.execute(f"DROP TABLE {table}")
    elif key:
        parts = ", ".join(q(k) for k in key)
        order = []
        if versioned:
            numeric, number = DUCKDB.version_number(q("versionId"))
            relation = (f"(SELECT *, bool_and({numeric}) OVER (PARTITION BY {parts}) AS {NUMERIC_VERSIONS} "
                        f"FROM __new)")
            order.append(f"CASE WHEN {NUMERIC_VERSIONS} THEN {number} END DESC NULLS LAST")
            out = [*columns, NUMERIC_VERSIONS]
        else:
            relation, out = "__new", columns
        if "lastUpdated" in columns:
            order.append(f"{q('lastUpdated')} DESC NULLS LAST")
        order += [f"{q(c)} DESC" for c in LANDING_ORDER if c in columns]
        query = dedupe_sql(relation, key, order, DUCKDB, columns=out)
    else:
        query = (f"SELECT {cols} FROM __old_input UNION ALL SELECT {cols} FROM __new_input"
                 if prior is not None else "SELECT * FROM __new")
    try:
        if query is not None:
            con.execute(f"CREATE TABLE {KEPT} AS {query}")
    except duckdb.Error as exc:
        raise read_failed(checks, where, exc) from None
    finally:
        if prior is None:
            con.execute("DROP VIEW IF EXISTS __new")
    con.execute("DROP TABLE IF EXISTS __old_input")
    con.execute("DROP TABLE IF EXISTS __new_input")
    hidden = [c for c in (*PROVENANCE, NUMERIC_VERSIONS) if c in columns or (c == NUMERIC_VERSIONS and versioned)]
    exclude = f" EXCLUDE ({', '.join(q(c) for c in hidden)})" if hidden else ""
    con.execute(f"CREATE VIEW {q(alias)} AS SELECT *{exclude} FROM {KEPT}")
    schema = con.sql(f"SELECT * FROM {q(alias)} LIMIT 0").to_arrow_table().schema
    return KeptInput(schema, prior is not None, periods)


def _touched(con: duckdb.DuckDBPyConnection, spec: dict, key: list[str], cols: str, fresh: list[str],
             timezone: str) -> list[Any]:
    """Periods of the fresh landings' records and of the kept versions of the same records."""
    q = DUCKDB.quote
    con.execute("CREATE TEMP TABLE __fresh_ids AS SELECT unnest($ids) AS id", {"ids": fresh or [""]})
    mine = "_landing_id IN (SELECT id FROM __fresh_ids)"
    relation = f"(SELECT {cols} FROM __new_input WHERE {mine}"
    if key:
        parts = ", ".join(q(k) for k in key)
        relation += (f" UNION ALL SELECT {cols} FROM __old_input WHERE ({parts}) IN "
                     f"(SELECT ({parts}) FROM __new_input WHERE {mine})")
    relation += ")"
    schema = con.sql("SELECT * FROM __new_input LIMIT 0").to_arrow_table().schema
    compiled = period_query(spec, schema, relation, "true", timezone=timezone)
    try:
        return sorted(row[0] for row in con.execute(compiled.sql, compiled.params).fetchall())
    finally:
        con.execute("DROP TABLE __fresh_ids")


def stage(con: duckdb.DuckDBPyConnection, ws: Workspace) -> StagedPart:
    """The kept input as a local zstd Parquet file, for the version to keep in the restricted
    store; written by DuckDB itself, so before the connection is locked down."""
    path = staging_dir(ws) / f"{uuid.uuid4().hex}.parquet"
    try:
        quoted = str(path).replace("'", "''")
        con.execute(f"COPY {KEPT} TO '{quoted}' (FORMAT parquet, COMPRESSION zstd)")
        found = con.execute(f"SELECT count(*) FROM {KEPT}").fetchone()
        return _staged(path, int(found[0]) if found else 0)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
