"""An aggregate's input kept beside its version, so a build after new landings reads only them.

An aggregate over a stream reads few small columns of each record (a FHIR stream's ``resource``
text, most of its bytes, is left out). A version built on DuckDB from one stream keeps, in the
restricted store (it holds record keys), the newest version of every record with those columns
and what ordering versions needs (landing, position, whether all of the record's version ids are
numbers). The next build reads only the objects that version did not, chooses the newest version
of each record among the kept ones and the new ones — what choosing over every version gives,
since a version that lost still loses unless a record's version ids stop being all numbers (then
it reads everything) — and runs the aggregate's whole query over the kept files where they lie
and the versions chosen again (nothing of the old input is copied): every cell is computed as a
full build computes it, without parsing a resource again.

The kept input is stored as one Parquet file per landing (the rows of the records it holds that are
still newest), so an update writes only the files of the new landings and of the landings whose
records it replaced (a record landed again exactly as kept is not replaced, see
:func:`_drop_unchanged`); the other files are kept as they are, named by the new version again.
Beside each row is a 64-bit hash of its key (:data:`.rowstream.KEY_HASH`), where an update looks
for the records its new versions replace before matching their keys exactly.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ..errors import ConfigError, LithotseError
from ..progress import Progress
from ..raw.reader import PROVENANCE
from ..raw.verify import IntegrityChecks
from ..workspace import Workspace
from .compile import DUCKDB, dedupe_sql, period_query
from .inputs import NUMERIC_VERSIONS, StreamInput, differing_rows, landed_objects, read_failed, stream_key
from .rowstream import (
    HASHED_BY,
    KEY_HASH,
    Narrowing,
    NotIncremental,
    StagedPart,
    _staged,
    drop_relations,
    first_read,
    key_hash,
    newest_over,
    parquet_list,
    same_key,
    staging_dir,
)

INDEX = "input_index"
"""An aggregate version's stats entry: its kept input in the restricted store, a list of
``{"landing", "key", "rows"}`` (one file per landing; versions built before that kept one file,
named by a plain key)."""
KEPT = "__kept_input"
PLUS, MINUS = "__input_added", "__input_replaced"
"""Of an incremental load by period: the newest versions now of the records the new objects hold,
and the versions they had before (the rows a version's cells gain and lose, see :func:`load`)."""
CHANGED = "__kept_changed"
"""Of an incremental load's :data:`KEPT` view, the rows not in files kept as they are."""
LANDING_ORDER = ("_landed_at", "_landing_id", "_row")


@dataclass
class KeptInput:
    """The stream as loaded: the relation the query reads, and the table the next build starts from."""

    schema: pa.Schema
    added: bool
    """Built from the previous version's kept input and the new objects only."""
    periods: list[Any] | None = None
    """The periods whose cells may differ from the previous version's (see :func:`load`)."""
    reused: list[dict] = field(default_factory=list)
    """Files of the previous kept input whose landings' rows are unchanged: kept as they are."""
    readable: list[str] = field(default_factory=list)
    """Files :data:`KEPT` reads where they lie (an incremental load's; none when it is a table)."""
    key: list[str] = field(default_factory=list)
    """The record identity (none: the stream has none)."""
    changes: bool = False
    """:data:`PLUS` and :data:`MINUS` were made: the previous cells plus the cells of the one less
    those of the other are the cells of the input (for measures that add up)."""


@dataclass
class Prior:
    """What an incremental build takes from the previous version's kept input."""

    files: list[dict]
    """Its files (see :data:`INDEX`); ``landing`` is None in a kept input of one file."""
    skip: set[str]
    """Objects whose rows it holds as they are: not read again."""
    dropped: list[str]
    """Landings of objects landed again since (for another range): their rows are read again."""
    fresh: list[str]
    """The landings the previous version did not read."""
    hashed: bool = False
    """Every file holds :data:`KEY_HASH` as this process makes it (see :data:`.rowstream.HASHED_BY`)."""


def previous_input(catalog: Any, previous: Any, resolved: StreamInput) -> Prior | None:
    """The previous version's kept input as a start, unless it or an object it read is gone."""
    files = kept_files((previous.stats or {}).get(INDEX)) if previous is not None else []
    restricted = catalog.store_of("restricted")
    if not files or any(restricted.stat(f["key"]) is None for f in files):
        return None
    old = {tuple(x) for x in previous.inputs.get("input", {}).get("objects", [])}
    new = {(m.sha256, m.range_from, m.range_to) for m in resolved.manifests}
    if not old <= new:
        return None
    again = {x[0] for x in new - old}
    dropped = [m.id for m in resolved.manifests if m.sha256 in again and (m.sha256, m.range_from, m.range_to) in old]
    fresh = [m.id for m in resolved.manifests if (m.sha256, m.range_from, m.range_to) not in old]
    return Prior(files, {x[0] for x in old} - again, dropped, fresh,
                 hashed=all(f.get("key_hash") == HASHED_BY for f in files))


def kept_files(index: Any) -> list[dict]:
    """The files of a version's kept input (see :data:`INDEX`), whichever way it was recorded."""
    if isinstance(index, str):
        return [{"landing": None, "key": index}]
    if isinstance(index, list) and all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in index):
        return index
    return []


def load(con: duckdb.DuckDBPyConnection, ws: Workspace, catalog: Any, alias: str, resolved: StreamInput,
         progress: Progress, checks: IntegrityChecks, unused: tuple[str, ...],
         prior: Prior | None, periods_of: dict | None = None, timezone: str = "UTC") -> KeptInput:
    """Make ``alias`` (the newest version of each record, without provenance) over :data:`KEPT`
    (the same rows with it), from every object, or from ``prior``'s kept input and the objects
    it did not hold. Raises :class:`NotIncremental` when the latter cannot be exact. With
    ``periods_of`` (an aggregate spec with a grain), an incremental load also finds the periods
    whose cells may change: those of the new landings' records and of the versions they replace,
    and, where no landing was read again, :data:`PLUS` and :data:`MINUS`."""
    q = DUCKDB.quote
    skip = prior.skip if prior is not None else set()
    where = f"{resolved.source}/{resolved.stream}"
    found = landed_objects(con, ws, resolved, progress, checks, "__new", unused=unused, skip=skip)
    first_read(iter([found] if found is not None else []), resolved, incremental=prior is not None)
    assert found is not None
    local: dict[str, str] | None = None
    if prior is not None:
        local = _old_files(con, catalog, [f["key"] for f in prior.files], ws)
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
        if key and not prior.hashed:
            raise NotIncremental("the kept input's keys were hashed by another DuckDB, or not at all")
        old_columns = [r[0] for r in con.execute("DESCRIBE __old_files").fetchall()]
        same = [c for c in old_columns if c not in (NUMERIC_VERSIONS, KEY_HASH)] == columns
        if not same or versioned != (NUMERIC_VERSIONS in old_columns):
            raise NotIncremental("the input's columns changed")
        if key and _lands_before_read(resolved, prior):
            # the kept rows of records landed again as they were hold their first landing (see
            # _drop_unchanged), which a landing ranked between it and a later one would outrank
            raise NotIncremental("a new landing ranks before one the previous version read")
    cols = ", ".join(q(c) for c in columns)
    periods = None
    if prior is not None:
        con.execute("CREATE TEMP TABLE __gone AS SELECT unnest($ids::VARCHAR[]) AS id", {"ids": prior.dropped})
        gone = "_landing_id IN (SELECT id FROM __gone)"
        if prior.dropped and versioned:  # a dropped row's flag also spoke for versions in other objects
            (mixed,) = con.execute(f"SELECT count(*) FROM __old_files WHERE {gone} AND NOT {NUMERIC_VERSIONS}"
                                   ).fetchall()
            if mixed[0]:
                raise NotIncremental("records landed again have version ids that are not numbers")
        con.execute(f"CREATE VIEW __old_input AS SELECT * FROM __old_files WHERE NOT {gone}")
        if periods_of is not None and not key:
            periods = _touched(con, periods_of, key, cols, prior.fresh, timezone)
    query = None
    reused: list[dict] = []
    readable: list[str] = []
    changes = False
    if key and prior is not None:
        try:
            _drop_unchanged(con, key, columns)
            # only the kept versions of the records the new objects hold are chosen again (__hit)
            newest_over(con, "__old_input", "__new_input", key, columns, list(LANDING_ORDER), versioned,
                        "__kept_view", as_view=True, narrow=_by_landing(con, local, prior.files, gone),
                        hashed=True)
            if periods_of is not None:
                if prior.dropped:  # a landing read again takes rows away that __hit does not hold
                    periods = _touched(con, periods_of, key, cols, prior.fresh, timezone)
                else:
                    shown = ", ".join(q(c) for c in columns if c not in PROVENANCE)
                    con.execute(f"CREATE TEMP TABLE {PLUS} AS SELECT {shown} FROM __winners")
                    con.execute(f"CREATE TEMP TABLE {MINUS} AS SELECT {shown} FROM __hit")
                    periods = changed_periods(con, periods_of, timezone)
                    changes = True
        except duckdb.Error as exc:
            raise LithotseError(f"{where}: {exc}") from None
        if all(f.get("landing") is not None for f in prior.files):
            # a landing's file is unchanged unless one of its records met a new version, or it is gone
            met = {r[0] for r in con.execute("SELECT DISTINCT _landing_id FROM __hit").fetchall()}
            changed = met | set(prior.dropped) | set(prior.fresh)
            reused = [f for f in prior.files if f["landing"] not in changed]
        con.execute("DROP TABLE __hit")
        if local is not None:
            # the kept files stay where they lie, read by the query itself: only the files of the
            # landings that changed are filtered, and nothing of the old input is copied
            readable = _kept_over_files(con, key, columns, versioned, local, prior.files, reused)
        else:
            query = "SELECT * FROM __kept_view"
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
    discard(con, keep=(KEPT, CHANGED, "__new_keys", "__winners", "__gone", PLUS, MINUS) if readable
            else (KEPT, PLUS, MINUS))
    hidden = [c for c in (*PROVENANCE, NUMERIC_VERSIONS) if c in columns or (c == NUMERIC_VERSIONS and versioned)]
    exclude = f" EXCLUDE ({', '.join(q(c) for c in hidden)})" if hidden else ""
    con.execute(f"CREATE VIEW {q(alias)} AS SELECT *{exclude} FROM {KEPT}")
    schema = con.sql(f"SELECT * FROM {q(alias)} LIMIT 0").to_arrow_table().schema
    return KeptInput(schema, prior is not None, periods, reused, readable, key, changes)


def _drop_unchanged(con: duckdb.DuckDBPyConnection, key: list[str], columns: list[str]) -> None:
    """Take out of ``__new_input`` the records it holds once and exactly as their kept version
    (every column but provenance): an export landed again whole brings mostly these. Choosing
    again would give the same values from a newer landing, so their landings' files would be
    written again and every period looked at for nothing; kept as they are, an update costs
    what its changed records cost. Matched by :data:`KEY_HASH` first, as this process makes it:
    a kept input hashed otherwise matches nothing here, and is chosen over as before."""
    q = DUCKDB.quote
    parts = ", ".join(q(k) for k in key)
    content = [c for c in columns if c not in PROVENANCE]
    types = [{r[0]: r[1] for r in con.execute(f"DESCRIBE {relation}").fetchall()}
             for relation in ("__old_input", "__new_input")]
    if any(types[0].get(c) != types[1].get(c) for c in content):
        return  # DuckDB would cast one side ('007' = 7): compared only as the same type
    same = " AND ".join(f"o.{q(c)} IS NOT DISTINCT FROM n.{q(c)}" for c in content)
    # -0.0 = 0.0 in SQL, yet a min or max tells them apart
    signed = [c for c in content if types[0][c] in ("FLOAT", "DOUBLE")]
    same += "".join(f" AND signbit(o.{q(c)}) IS NOT DISTINCT FROM signbit(n.{q(c)})" for c in signed)
    try:
        con.execute(f"CREATE TEMP TABLE __unchanged AS SELECT n._landing_id, n._row FROM "
                    f"(SELECT *, {key_hash(key)} AS __h FROM __new_input "
                    f"QUALIFY count(*) OVER (PARTITION BY {parts}) = 1) n "
                    f"JOIN __old_input o ON o.{q(KEY_HASH)} = n.__h AND {same}")
    except duckdb.Error:
        return  # values DuckDB cannot compare (structs of other fields): all are chosen again
    con.execute("DELETE FROM __new_input WHERE (_landing_id, _row) IN (SELECT (_landing_id, _row) FROM __unchanged)")
    con.execute("DROP TABLE __unchanged")


def _lands_before_read(resolved: StreamInput, prior: Prior) -> bool:
    """Whether a landing the previous version did not read ranks before one it read (in the order
    of :data:`LANDING_ORDER`): a clock set back, or a landing of another machine pulled by sync."""
    fresh = set(prior.fresh)
    new = [(m.landed_at, m.id) for m in resolved.manifests if m.id in fresh]
    read = [(m.landed_at, m.id) for m in resolved.manifests if m.id not in fresh]
    return bool(new and read) and min(new) < max(read)


def _by_landing(con: duckdb.DuckDBPyConnection, local: dict[str, str] | None, files: list[dict],
                gone: str) -> Narrowing | None:
    """Where :func:`newest_over` finds the kept versions of records whole: in the files of their
    landings (None when the files are not one per landing where a query reads them)."""
    if local is None or not all(f.get("landing") is not None for f in files):
        return None

    def rows_of(landings: list[Any]) -> str:
        paths = [local[f["key"]] for f in files if f["landing"] in set(landings)]
        if not paths:
            return "(SELECT * FROM __old_input LIMIT 0)"
        con.execute(f"CREATE VIEW __old_hit AS SELECT * FROM read_parquet({parquet_list(paths)}) WHERE NOT {gone}")
        return "__old_hit"

    return "o._landing_id", rows_of


def _kept_over_files(con: duckdb.DuckDBPyConnection, key: list[str], columns: list[str], versioned: bool,
                     local: dict[str, str], files: list[dict], reused: list[dict]) -> list[str]:
    """Make :data:`KEPT` a view: the ``reused`` files as they are, the other files without the
    rows of landings gone and of records met by a new version, and the newest versions chosen
    (``__winners``); :data:`CHANGED` is the view of the latter two, what :func:`stage` writes.
    Returns the files the views read, for the connection to allow once it is locked down."""
    q = DUCKDB.quote
    outs = ", ".join(q(c) for c in [*columns, *([NUMERIC_VERSIONS] if versioned else [])])
    on = same_key(key)
    kept = {f["key"] for f in reused}
    same = [local[f["key"]] for f in files if f["key"] in kept]
    other = [local[f["key"]] for f in files if f["key"] not in kept]
    changed = f"SELECT {outs} FROM __winners"
    if other:
        changed = (f"SELECT {outs} FROM (SELECT * FROM read_parquet({parquet_list(other)}) "
                   f"WHERE _landing_id NOT IN (SELECT id FROM __gone)) o ANTI JOIN __new_keys n ON {on} "
                   f"UNION ALL {changed}")
    con.execute(f"CREATE VIEW {CHANGED} AS {changed}")
    whole = f"SELECT {outs} FROM {CHANGED}"
    if same:
        whole = f"SELECT {outs} FROM read_parquet({parquet_list(same)}) UNION ALL {whole}"
    con.execute(f"CREATE VIEW {KEPT} AS {whole}")
    return same + other


def _touched(con: duckdb.DuckDBPyConnection, spec: dict, key: list[str], cols: str, fresh: list[str],
             timezone: str) -> list[Any]:
    """Periods of the fresh landings' records and of the kept versions of the same records."""
    q = DUCKDB.quote
    con.execute("CREATE TEMP TABLE __fresh_ids AS SELECT unnest($ids) AS id", {"ids": fresh or [""]})
    mine = "_landing_id IN (SELECT id FROM __fresh_ids)"
    relation = f"(SELECT {cols} FROM __new_input WHERE {mine}"
    if key:
        # __hit: the kept versions of the records the new objects hold (see newest_over)
        parts = ", ".join(q(k) for k in key)
        relation += (f" UNION ALL SELECT {cols} FROM __hit WHERE ({parts}) IN "
                     f"(SELECT ({parts}) FROM __new_input WHERE {mine})")
    relation += ")"
    schema = con.sql("SELECT * FROM __new_input LIMIT 0").to_arrow_table().schema
    compiled = period_query(spec, schema, relation, "true", timezone=timezone)
    try:
        return sorted(row[0] for row in con.execute(compiled.sql, compiled.params).fetchall())
    finally:
        con.execute("DROP TABLE __fresh_ids")


def changed_periods(con: duckdb.DuckDBPyConnection, spec: dict, timezone: str) -> list[Any]:
    """Periods of the records whose newest version changed (:data:`PLUS` and :data:`MINUS`
    differ): a record landed again as it was (an export landed again whole) changes no cell."""
    relation = f"({differing_rows(PLUS, MINUS)})"
    schema = con.sql(f"SELECT * FROM {PLUS} LIMIT 0").to_arrow_table().schema
    compiled = period_query(spec, schema, relation, "true", timezone=timezone)
    return sorted(row[0] for row in con.execute(compiled.sql, compiled.params).fetchall())


def _old_files(con: duckdb.DuckDBPyConnection, catalog: Any, keys: list[str], ws: Workspace) -> dict[str, str] | None:
    """``__old_files``: the previous kept input, a view over its files where they lie (their
    paths by key are returned); a remote store's are fetched and loaded into a table (None)."""
    store = catalog.store_of("restricted")
    local = [store.local_path(key) for key in keys]
    paths: dict[str, str] | None = None
    if all(path is not None for path in local):
        paths = {key: str(path) for key, path in zip(keys, local, strict=True)}
        con.execute(f"CREATE VIEW __old_files AS SELECT * FROM read_parquet({parquet_list(list(paths.values()))})")
    else:
        fetched = [staging_dir(ws) / f"{uuid.uuid4().hex}.parquet" for _ in keys]
        try:
            for key, path in zip(keys, fetched, strict=True):
                store.fetch_to(key, path)
            con.execute("CREATE TABLE __old_files AS SELECT * FROM read_parquet($paths)",
                        {"paths": [str(p) for p in fetched]})
        finally:
            for path in fetched:
                path.unlink(missing_ok=True)
    (found,) = con.execute("SELECT count(*) FROM __old_files").fetchall()
    if not found[0]:
        raise NotIncremental("the previous version kept no records")  # nothing to save: read everything
    return paths


def discard(con: duckdb.DuckDBPyConnection, keep: tuple[str, ...] = ()) -> None:
    """Drop the tables and views loading a kept input made, but ``keep``."""
    names = (KEPT, CHANGED, "__kept_view", "__old_hit", "__old_input", "__old_files", "__hit", "__winners",
             "__new_keys", "__fresh_ids", "__gone", "__new_input", PLUS, MINUS)
    drop_relations(con, *(n for n in names if n not in keep))


@dataclass
class StagedInput:
    """A kept input ready to be stored: files written for this version, and files it keeps."""

    written: list[tuple[str, StagedPart]]
    reused: list[dict]
    hashed: bool = False
    """The files written hold :data:`KEY_HASH`."""

    def discard(self) -> None:
        for _landing, part in self.written:
            part.path.unlink(missing_ok=True)


def stage(con: duckdb.DuckDBPyConnection, ws: Workspace, reused: list[dict], key: list[str]) -> StagedInput:
    """The kept input's files for the landings not ``reused`` as local zstd Parquet files (one
    per landing, rows in their order, with :data:`KEY_HASH` of their ``key`` if any), for the
    version to keep in the restricted store; written by DuckDB itself, so before the connection
    is locked down."""
    folder = staging_dir(ws) / uuid.uuid4().hex
    skip = [f["landing"] for f in reused]
    written: list[tuple[str, StagedPart]] = []
    relations = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    source = CHANGED if CHANGED in relations else KEPT
    try:
        quoted = str(folder).replace("'", "''")
        hashed = f", {key_hash(key)} AS {KEY_HASH}" if key else ""
        con.execute(f"COPY (SELECT *{hashed} FROM {source} WHERE _landing_id NOT IN (SELECT unnest($skip::VARCHAR[])) "
                    f"ORDER BY _landing_id, _row) TO '{quoted}' (FORMAT parquet, COMPRESSION zstd, "
                    f"PARTITION_BY (_landing_id), WRITE_PARTITION_COLUMNS true)", {"skip": skip})
        files = sorted(str(p) for p in folder.rglob("*.parquet"))
        if files:
            found = con.execute("SELECT filename, any_value(_landing_id), count(*) FROM "
                                "read_parquet($files, filename = true, hive_partitioning = false) GROUP BY ALL",
                                {"files": files}).fetchall()
            for name, landing, rows in sorted(found, key=lambda r: (r[1], r[0])):
                part = _staged(Path(name), int(rows))
                moved = staging_dir(ws) / f"{part.sha256}-{uuid.uuid4().hex[:8]}.parquet"
                Path(name).rename(moved)
                written.append((landing, StagedPart(moved, part.sha256, part.rows, part.bytes)))
        return StagedInput(written, list(reused), bool(key))
    except BaseException:
        StagedInput(written, []).discard()
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
