"""Reading landed FHIR payloads (NDJSON, Bundles, single resources) as typed Arrow batches.

NDJSON is parsed by DuckDB in bulk (never row by row in Python): each line is kept as the
``resource`` text and a handful of fields are pulled out and typed in SQL. Validation
happens twice by design: SQL only flags the first bad record cheaply, and a Python pass
over the file then names its line and the reason, so error messages have one source of
truth (``problem``). Bundles are one JSON document each, so they are parsed with ``json``,
their entries checked in Python, and the resources sent through the same SQL.

Each row also carries ``patient_id``, the id of the patient the resource is about (a
Patient's own id; else the first of its patient references, ``subject`` or ``patient`` for
most types, read as ``[base/]Patient/<id>[/_history/v]`` or a Bundle's ``urn:uuid:<id>``),
so disclosure control counts people without parsing JSON at build time.

Date rule (see README): ``date`` and the other date columns are ``date32`` holding the
calendar date as written in the resource (partial dates → first day of the year or month;
a dateTime's own offset is kept, so 23:30-04:00 stays on its day); ``date_time`` and
``lastUpdated`` are UTC instants (``timestamp[us, tz=UTC]``), null for date-only values.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from lithotse_desktop.plugin import DateRange, InputError, Progress, deferred_import, duckdb_settings, interruptible

from .types import R4_TYPES, TYPE_NAME, date_columns, patient_references

pc = deferred_import("pyarrow.compute")

BATCH_BYTES = 16 << 20
MAX_BATCH_ROWS = 122_880
MAX_OBJECT_BYTES = 1 << 28
MIN_OBJECT_BYTES = 1 << 24

DATE_PATTERN = (r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
                r"(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
                r"(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
                r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?)?")
_DATE_RE = re.compile(DATE_PATTERN)
_OFFSET_RE = re.compile(r"([+-])([0-9]{2}):([0-9]{2})$")


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def schema_for(resource_type: str) -> pa.Schema:
    """The fixed schema of a stream: the same columns and types whatever the file holds."""
    utc = pa.timestamp("us", tz="UTC")
    dates = [pa.field(name, pa.date32()) for name, _ in date_columns(resource_type)]
    return pa.schema([pa.field("id", pa.string()), pa.field("resourceType", pa.string()),
                      pa.field("versionId", pa.string()), pa.field("lastUpdated", utc),
                      dates[0], pa.field("date_time", utc), *dates[1:],
                      pa.field("patient_id", pa.string()), pa.field("resource", pa.string())])


# --- Python validation: the one place that words what is wrong ---------------------------

def _date_problem(value: Any, label: str, instant: bool = False) -> str | None:
    """Why a FHIR date/dateTime/instant value is invalid, or None; mirrors the SQL checks."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return f"{label} is not a string"
    if not _DATE_RE.fullmatch(value) or (instant and len(value) < 10):
        return f"{label} {value!r} is not a valid FHIR {'instant' if instant else 'date/dateTime'}"
    padded = value + "-01-01"[len(value) - 4:] if len(value) < 10 else value[:10]
    try:
        day = dt.date(int(padded[:4]), int(padded[5:7]), int(padded[8:10]))
    except ValueError:
        return f"{label} {value!r} is not a calendar date"
    if len(value) > 10:
        offset = _OFFSET_RE.search(value)
        minutes = 0
        if offset:
            minutes = (int(offset.group(2)) * 60 + int(offset.group(3))) * (1 if offset.group(1) == "+" else -1)
        clock = dt.datetime.combine(day, dt.time(int(value[11:13]), int(value[14:16]), int(value[17:19])))
        try:
            clock - dt.timedelta(minutes=minutes)
        except OverflowError:
            return f"{label} {value!r} is out of range"
    return None


def _path_value(obj: dict, path: str) -> Any:
    """Follow a dotted path through nested objects; anything else along the way means absent."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def problem(obj: Any, expected: str, mixed: bool) -> str | None:
    """Why ``obj`` cannot be read as a resource of the ``expected`` stream, or None when it can.

    ``mixed`` payloads (Bundles, NDJSON holding several types) may contain other types,
    which this stream skips; a single-type payload must hold only ``expected``.
    """
    if not isinstance(obj, dict):
        return "not a JSON object, so not a FHIR resource"
    if "resourceType" not in obj or obj["resourceType"] is None:
        return "no resourceType: not a FHIR resource"
    kind = obj["resourceType"]
    if not isinstance(kind, str):
        return "resourceType is not a string"
    if not TYPE_NAME.fullmatch(kind):
        return f"resourceType {kind!r} is not a FHIR resource type name"
    if kind != expected:
        return None if mixed else f"resourceType is {kind}, expected {expected}"
    bad = _date_problem(_path_value(obj, "meta.lastUpdated"), "meta.lastUpdated", instant=True)
    if bad:
        return bad
    for _column, paths in date_columns(expected):
        present = [(path, value) for path in paths
                   if (value := _path_value(obj, path)) is not None]
        if present:
            bad = _date_problem(present[0][1], f"{expected}.{present[0][0]}")
            if bad:
                return bad
    return None


def parse_json(text: str | bytes) -> Any:
    """JSON as DuckDB reads it (NaN and Infinity are accepted by both)."""
    return json.loads(text)


# --- SQL --------------------------------------------------------------------------------

def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(path: str) -> str:
    return "$." + ".".join(f'"{part}"' for part in path.split("."))


_SESSION = """
SET TimeZone = 'UTC';
SET enable_progress_bar = false;
"""
_MACROS = """
CREATE OR REPLACE MACRO fhir_day(s) AS try_cast(
    CASE length(s) WHEN 4 THEN s || '-01-01' WHEN 7 THEN s || '-01' ELSE left(s, 10) END AS DATE);
CREATE OR REPLACE MACRO fhir_instant(s) AS
    CASE WHEN length(s) > 10 THEN try_cast(s AS TIMESTAMPTZ) END;
CREATE OR REPLACE MACRO fhir_bad_day(s, d) AS s IS NOT NULL AND (d IS NULL
    OR NOT (length(s) IN (4, 7, 10) OR (length(s) >= 19 AND substr(s, 11, 1) = 'T'))
    OR d NOT BETWEEN DATE '0001-01-01' AND DATE '9999-12-31');
CREATE OR REPLACE MACRO fhir_patient_ref(r) AS CASE WHEN starts_with(r, 'urn:uuid:')
    THEN NULLIF(substr(r, 10), '')
    ELSE NULLIF(regexp_extract(r, '(^|/)Patient/([^/]+)(/_history/[^/]*)?$', 2), '') END;
CREATE OR REPLACE MACRO fhir_out_of_range(t) AS coalesce(t NOT BETWEEN
    TIMESTAMPTZ '0001-01-01 00:00:00+00' AND TIMESTAMPTZ '9999-12-31 23:59:59.999999+00', false);
"""
_shared: duckdb.DuckDBPyConnection | None = None
_shared_lock = threading.Lock()


_applied: dict[str, str] = {}


def _memory_limit() -> int | None:
    limit = duckdb_settings().get("memory_limit", "")
    return int(limit[:-1]) if limit.endswith("B") and limit[:-1].isdigit() else None


def batch_bytes() -> int:
    """Resource text per batch: a 64th of the memory limit (16 MB at 1 GB), 4 to 64 MB."""
    limit = _memory_limit()
    return BATCH_BYTES if limit is None else max(4 << 20, min(64 << 20, limit // 64))


def max_object_bytes() -> int:
    """The largest resource an NDJSON line may hold. DuckDB's JSON reader sizes its buffers
    from it and keeps them as it goes, so peak memory grew with the file at 256 MB (0.4 GB at
    200k Encounters, 1 GB at 1M) and stays flat at 16 MB: a 64th of the memory limit, 16 MB
    (DuckDB's default) at 1 GB and up to 256 MB at 16 GB."""
    limit = _memory_limit()
    return MAX_OBJECT_BYTES if limit is None else max(MIN_OBJECT_BYTES, min(MAX_OBJECT_BYTES, limit // 64))


def connect() -> duckdb.DuckDBPyConnection:
    """A cursor on one in-memory database holding the macros (creating them costs ~30 ms),
    under the memory limit and spill folder of the workspace being worked on."""
    global _shared
    with _shared_lock:
        if _shared is None:
            base = duckdb.connect()
            base.execute(_SESSION + _MACROS)
            _shared = base
        settings = duckdb_settings()
        if settings != _applied:
            for name, value in settings.items():
                quoted = value.replace("'", "''")
                _shared.execute(f"SET {name} = '{quoted}'")
            _applied.clear()
            _applied.update(settings)
        con = interruptible(_shared.cursor())  # Cancel interrupts the query it runs
    con.execute(_SESSION)
    return con


def extract_leaves(resource_type: str) -> list[str]:
    """The dotted paths :func:`extract_sql` reads from each resource, in the order it numbers them."""
    date_paths = list(dict.fromkeys(p for _, paths in date_columns(resource_type) for p in paths))
    references = [f"{element}.reference" for element in patient_references(resource_type)]
    return ["id", "resourceType", "meta.versionId", "meta.lastUpdated", *date_paths, *references]


def leaf_columns(resource_type: str) -> str | None:
    """The ``columns`` argument of ``read_ndjson`` that parses just :func:`extract_leaves`, every
    leaf as text: nested objects become STRUCTs; None when a leaf is also another's parent."""
    tree: dict[str, Any] = {}
    for path in extract_leaves(resource_type):
        node = tree
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return None
        if last in node:
            return None
        node[last] = "VARCHAR"

    def sql_type(node: Any) -> str:
        if not isinstance(node, dict):
            return str(node)
        return "STRUCT(" + ", ".join(f'"{k}" {sql_type(v)}' for k, v in node.items()) + ")"

    return "{" + ", ".join(f"{_sql_str(k)}: {_sql_str(sql_type(v))}" for k, v in tree.items()) + "}"


def extract_sql(source: str, resource_type: str, mixed: bool, *, parsed: bool = False) -> str:
    """SQL turning a relation of one ``json`` text column into the stream's columns plus flags.

    One ``json_extract_string`` with a list of paths parses each resource once. Each layer
    of the query references a value once, because DuckDB re-evaluates a repeated
    expression, which made the first version of this several times slower.

    ``parsed``: ``source`` already holds the leaves as columns (``read_ndjson`` given
    :func:`leaf_columns`), so the reader's parse is the only one, and ``resource`` is NULL: for
    checks and counts only. DuckDB turns a leaf into the same text either way (numbers,
    booleans, nested JSON); a record it cannot fit to those columns fails the query instead.
    """
    columns = date_columns(resource_type)
    references = [f"{element}.reference" for element in patient_references(resource_type)]
    leaves = extract_leaves(resource_type)
    paths = ", ".join(_sql_str(_json_path(p)) for p in leaves)
    if parsed:
        struct_cols = ", ".join(f'"{p.split(".")[0]}"' + "".join(f"[{_sql_str(part)}]" for part in p.split(".")[1:])
                                + f" AS s{i}" for i, p in enumerate(leaves))
        leaf_from = f"(SELECT NULL::VARCHAR AS json, {struct_cols} FROM {source})"
    else:
        leaf_cols = ", ".join(f"j[{i + 1}] AS s{i}" for i in range(len(leaves)))
        leaf_from = (f"(SELECT json, {leaf_cols} "
                     f"FROM (SELECT json, json_extract_string(json, [{paths}]) AS j FROM {source}))")
    value_cols, typed_cols, bad = [], [], []
    for k, (column, col_paths) in enumerate(columns):
        refs = [f"s{leaves.index(p)}" for p in col_paths]
        value_cols.append(f"{'coalesce(' + ', '.join(refs) + ')' if refs else 'NULL::VARCHAR'} AS v{k}")
        typed_cols.append(f'fhir_day(v{k}) AS "{column}"')
        bad.append(f'fhir_bad_day(v{k}, "{column}")')
        if column == "date":
            typed_cols.append("fhir_instant(v0) AS date_time")
            bad += ["(length(v0) > 10 AND date_time IS NULL)", "fhir_out_of_range(date_time)"]
    bad += ['(s3 IS NOT NULL AND "lastUpdated" IS NULL)', 'fhir_out_of_range("lastUpdated")']
    mine = f"s1 = {_sql_str(resource_type)}"
    if mixed:
        kind_bad = "s1 IS NULL OR NOT regexp_full_match(s1, '[A-Z][A-Za-z]{0,63}')"
    else:
        kind_bad = f"s1 IS DISTINCT FROM {_sql_str(resource_type)}"
    if resource_type == "Patient":
        patient = "s0"
    elif references:
        patient = "coalesce(" + ", ".join(f"fhir_patient_ref(s{leaves.index(r)})" for r in references) + ")"
    else:
        patient = "NULL::VARCHAR"
    out = ["s0 AS id", 's1 AS "resourceType"', 's2 AS "versionId"', '"lastUpdated"', '"date"',
           "date_time", *(f'"{column}"' for column, _ in columns[1:]), f"{patient} AS patient_id",
           "CAST(json AS VARCHAR) AS resource"]
    return f"""
WITH leaf AS {leaf_from},
val AS (SELECT *, {', '.join(value_cols)},
               CASE WHEN length(s3) >= 10 THEN try_cast(s3 AS TIMESTAMPTZ) END AS "lastUpdated"
        FROM leaf),
typed AS (SELECT *, {', '.join(typed_cols)} FROM val)
SELECT {', '.join(out)},
       ({kind_bad}) OR coalesce({mine} AND ({' OR '.join(bad)}), false) AS _bad,
       coalesce({mine}, false) AS _keep
FROM typed
"""


def batch_rows(path: Path, gz: bool) -> int:
    """Rows per batch so a batch holds about :func:`batch_bytes` of resource text.

    DuckDB streams much faster with large batches (a 32k-row batch took twice as long
    in the benchmark), but a batch of large resources must still fit comfortably in memory.
    """
    try:
        with _open_lines(path, gz) as fh:
            sample = fh.read(1 << 18)
    except (OSError, EOFError, zlib.error):
        return 2048
    per_row = max(64, len(sample) // max(1, sample.count(b"\n")))
    return max(2048, min(MAX_BATCH_ROWS, batch_bytes() // per_row))


def _batches(con: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema,
             on_bad, rows: int = 2048) -> Iterator[pa.RecordBatch]:
    """Run the extraction, hand the first flagged record index to ``on_bad``, yield kept rows."""
    reader = con.sql(sql).to_arrow_reader(rows)
    seen = 0
    for batch in reader:
        bad = batch.column("_bad")
        if pc.any(bad).as_py():
            on_bad(seen + pc.index(bad, True).as_py())
        seen += batch.num_rows
        keep = batch.column("_keep")
        kept = batch if pc.all(keep).as_py() else batch.filter(keep)
        if kept.num_rows:
            yield pa.RecordBatch.from_arrays(
                [col if col.type == f.type else col.cast(f.type)
                 for f, col in ((f, kept.column(f.name)) for f in schema)], schema=schema)


# --- NDJSON -----------------------------------------------------------------------------

def _open_lines(path: Path, gz: bool):
    return gzip.open(path, "rb") if gz else open(path, "rb")


def locate_ndjson(path: Path, name: str, expected: str, mixed: bool,
                  record: int | None = None, detail: str = "") -> InputError:
    """Find the first bad line of an NDJSON file (DuckDB said something is wrong) and say why.

    ``record`` (0-based, blank lines not counted) is where SQL flagged a problem: lines
    before it were already checked in SQL, so only that record is parsed first; the whole
    file is scanned when it turns out fine there.
    """
    gz = is_gzip(path)
    for start in ([record, None] if record is not None else [None]):
        index, lineno = -1, 0
        try:
            with _open_lines(path, gz) as fh:
                for lineno, raw in enumerate(fh, 1):
                    if not raw.strip():
                        continue
                    index += 1
                    if start is not None and index < start:
                        continue
                    where = f"{name}, line {lineno}"
                    try:
                        obj = parse_json(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        return InputError(where, "not UTF-8 text")
                    except ValueError as exc:
                        return InputError(where, f"invalid JSON: {exc}")
                    reason = problem(obj, expected, mixed)
                    if reason:
                        return InputError(where, reason)
                    if start is not None:
                        break
        except (OSError, EOFError, zlib.error) as exc:
            return InputError(f"{name}, line {lineno + 1}", f"gzip data is corrupt or truncated ({exc})")
    where = f"{name}, record {record + 1}" if record is not None else name
    return InputError(where, f"cannot be read as NDJSON {expected} resources"
                      + (f": {detail}" if detail else ""))


def read_ndjson(path: Path, name: str, expected: str, mixed: bool = False) -> Iterator[pa.RecordBatch]:
    """Stream an NDJSON (optionally gzipped) file of resources as batches of ``expected``."""
    gz = is_gzip(path)
    source = (f"read_ndjson_objects({_sql_str(str(path))}, compression='{'gzip' if gz else 'none'}', "
              f"maximum_object_size={max_object_bytes()})")
    con = connect()

    def on_bad(record: int) -> None:
        raise locate_ndjson(path, name, expected, mixed, record)

    try:
        yield from _batches(con, extract_sql(source, expected, mixed), schema_for(expected), on_bad,
                            batch_rows(path, gz))
    except duckdb.Error as exc:
        raise locate_ndjson(path, name, expected, mixed,
                            detail=str(exc).split("\n")[0].replace(str(path), name)) from None
    finally:
        con.close()


def survey_ndjson(path: Path, name: str, expected: str, mixed: bool, date_field: str | None,
                  date_range: DateRange, timezone: str, progress: Progress) -> dict[str, Any] | None:
    """What an import records of an NDJSON file (see ``Connector.survey``), from one DuckDB
    query over it: the same extraction and checks as :func:`read_ndjson`, aggregated, so no
    resource text or row leaves DuckDB. None for a date field this does not know."""
    days = {None: "NULL::DATE", "date": '"date"', "lastUpdated": 'CAST(timezone($tz, "lastUpdated") AS DATE)'}
    if date_field not in days:
        return None
    gz = is_gzip(path)
    source = (f"read_ndjson_objects({_sql_str(str(path))}, compression='{'gzip' if gz else 'none'}', "
              f"maximum_object_size={max_object_bytes()})")
    inside = [f"day >= DATE '{date_range.start.isoformat()}'" if date_range.start else None,
              f"day <= DATE '{date_range.end.isoformat()}'" if date_range.end else None]
    in_range = " AND ".join(c for c in inside if c) if date_field and date_range.bounded else "true"

    def survey_sql(extraction: str) -> str:
        return f"""
SELECT count(*) FILTER (WHERE _keep), count(*) FILTER (WHERE _keep AND {in_range}),
       min(day) FILTER (WHERE _keep), max(day) FILTER (WHERE _keep), coalesce(bool_or(_bad), false)
FROM (SELECT _keep, _bad, {days[date_field]} AS day FROM ({extraction}))"""

    params = {"tz": timezone} if date_field == "lastUpdated" else None
    con = connect()
    try:
        found = _parsed_survey(con, path, gz, expected, mixed, survey_sql, params, progress)
        if found is None:
            found = _interruptible(con, progress, lambda: con.execute(
                survey_sql(extract_sql(source, expected, mixed)), params).fetchone())
        assert found is not None
        records, in_range_count, lo, hi, bad = found
        if bad:
            first = _interruptible(con, progress, lambda: con.execute(
                f"SELECT min(i) FROM (SELECT row_number() OVER () - 1 AS i, _bad "
                f"FROM ({extract_sql(source, expected, mixed)})) WHERE _bad").fetchone())
            raise locate_ndjson(path, name, expected, mixed, first[0] if first else None)
    except duckdb.Error as exc:
        progress.check()
        raise locate_ndjson(path, name, expected, mixed,
                            detail=str(exc).split("\n")[0].replace(str(path), name)) from None
    finally:
        con.close()
    return {"records": records, "records_in_range": in_range_count,
            "date_min": lo.isoformat() if lo else None, "date_max": hi.isoformat() if hi else None}


def _parsed_survey(con: duckdb.DuckDBPyConnection, path: Path, gz: bool, expected: str, mixed: bool,
                   survey_sql, params: dict | None, progress: Progress) -> tuple | None:
    """The survey of a single-type file with only its leaves parsed (:func:`leaf_columns`): a
    third less work than parsing each line twice. None when it cannot answer for sure, so the
    caller runs the full extraction: a mixed file, a record whose leaves do not fit (a nested
    value where text was expected, a duplicate key) or a flagged record, whose line the full
    extraction finds."""
    columns = None if mixed else leaf_columns(expected)
    if columns is None:
        return None
    source = (f"read_ndjson({_sql_str(str(path))}, columns={columns}, "
              f"compression='{'gzip' if gz else 'none'}', maximum_object_size={max_object_bytes()})")
    try:
        found = _interruptible(con, progress, lambda: con.execute(
            survey_sql(extract_sql(source, expected, mixed, parsed=True)), params).fetchone())
    except duckdb.Error:
        progress.check()
        return None
    return None if found is None or found[-1] else found


def _interruptible(con: duckdb.DuckDBPyConnection, progress: Progress, run):
    """``run()`` (a query on ``con``), interrupted when ``progress`` is cancelled meanwhile."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if progress.cancelled:
                con.interrupt()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return run()
    finally:
        done.set()
        watcher.join()


def _line_chunks(stream, limit: int = BATCH_BYTES) -> Iterator[list[bytes]]:
    """Non-blank lines of a (possibly gzipped) NDJSON stream, about ``limit`` bytes at a time."""
    head = stream.read(2)
    body = _Prefixed(head, stream)
    # typeshed asks for seek(), which GzipFile calls only to rewind; this reader never rewinds
    lines_of = gzip.GzipFile(fileobj=body) if head == b"\x1f\x8b" else body  # type: ignore[call-overload]
    chunk: list[bytes] = []
    size = 0
    for raw in lines_of:
        line = raw.strip()
        if not line:
            continue
        chunk.append(line)
        size += len(line)
        if size >= limit:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class _Prefixed:
    """A stream with bytes already read from its front put back, readable line by line."""

    def __init__(self, head: bytes, rest) -> None:
        self._buffer = io.BufferedReader(_Joined(head, rest), 1 << 20)

    def read(self, n: int = -1) -> bytes:
        return self._buffer.read(n)

    def __iter__(self):
        return iter(self._buffer)


class _Joined(io.RawIOBase):
    def __init__(self, head: bytes, rest) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_ndjson_stream(stream, name: str, expected: str, mixed: bool = False) -> Iterator[pa.RecordBatch]:
    """Like :func:`read_ndjson`, from a stream of an already validated landing (an S3 object):
    lines go to the same extraction SQL as an Arrow column, chunk by chunk, with no local copy."""
    con = connect()
    schema = schema_for(expected)
    seen = 0

    def on_bad(record: int) -> None:
        raise InputError(f"{name}, record {seen + record + 1}",
                         f"cannot be read as NDJSON {expected} resources")

    try:
        with stream:
            for chunk in _line_chunks(stream):
                table = pa.table({"json": pa.array([c.decode("utf-8") for c in chunk], pa.string())})
                view = f"chunk_{uuid.uuid4().hex}"
                con.register(view, table)
                try:
                    source = f"(SELECT CAST(json AS JSON) AS json FROM {view})"
                    yield from _batches(con, extract_sql(source, expected, mixed), schema, on_bad,
                                        MAX_BATCH_ROWS)
                finally:
                    con.unregister(view)
                seen += len(chunk)
    except (duckdb.Error, UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise InputError(name, f"cannot be read as NDJSON {expected} resources: {exc}") from None
    finally:
        con.close()


def ndjson_types(path: Path, name: str) -> dict[str | None, int]:
    """Resource types (None: no resourceType) and their counts in an NDJSON file, one scan."""
    compression = "gzip" if is_gzip(path) else "none"
    con = connect()
    try:
        rows = con.sql(f"""SELECT json_extract_string(json, '$.resourceType') AS kind, count(*)
            FROM read_ndjson_objects({_sql_str(str(path))}, compression='{compression}',
                                     maximum_object_size={max_object_bytes()}) GROUP BY ALL""").fetchall()
    except duckdb.Error as exc:
        raise locate_ndjson(path, name, "Resource", True,
                            detail=str(exc).split("\n")[0].replace(str(path), name)) from None
    finally:
        con.close()
    return {kind: count for kind, count in rows}


# --- Bundles and single resources ----------------------------------------------------------

def load_document(path: Path, name: str) -> Any:
    """Parse a whole JSON document (gzip allowed); errors name the line and column."""
    try:
        with _open_lines(path, is_gzip(path)) as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(name, f"gzip data is corrupt or truncated ({exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(name, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}, line {exc.lineno}", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(name, f"invalid JSON: {exc}") from None


def document_resources(doc: Any, name: str) -> Iterator[tuple[str, dict]]:
    """(location, resource) for every resource a JSON document holds: a Bundle's entries or itself.

    Entries without a resource are skipped only when they are transaction/history
    bookkeeping (they carry ``request`` or ``response``, e.g. a DELETE); otherwise the
    entry is bad. Nested Bundles are resources of type Bundle, not unpacked.
    """
    reason = problem(doc, "Bundle", True)
    if reason:
        raise InputError(name, reason)
    if doc["resourceType"] != "Bundle":
        yield name, doc
        return
    entries = doc.get("entry", [])
    if entries is None:
        return
    if not isinstance(entries, list):
        raise InputError(f"{name}, Bundle.entry", "is not a list")
    for i, entry in enumerate(entries):
        where = f"{name}, Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            raise InputError(where, "entry is not a JSON object")
        resource = entry.get("resource")
        if resource is None:
            if "request" in entry or "response" in entry:
                continue
            raise InputError(where, "entry has no resource")
        reason = problem(resource, "Resource", True)
        if reason:
            raise InputError(where, reason)
        yield where, resource


def document_types(path: Path, name: str) -> set[str]:
    """Resource types found in a Bundle or single-resource JSON file (checks every entry)."""
    doc = load_document(path, name)
    return {res["resourceType"] for _, res in document_resources(doc, name)}


def read_document(path: Path, name: str, expected: str) -> Iterator[pa.RecordBatch]:
    """Batches of the ``expected`` resources of a Bundle or single-resource JSON file."""
    doc = load_document(path, name)
    rows: list[str] = []
    where: list[str] = []
    for location, resource in document_resources(doc, name):
        if resource["resourceType"] != expected:
            continue
        reason = problem(resource, expected, False)
        if reason:
            raise InputError(location, reason)
        rows.append(json.dumps(resource, ensure_ascii=False, separators=(",", ":")))
        where.append(location)
    if not rows:
        return
    con = connect()

    def on_bad(record: int) -> None:
        raise InputError(where[record], f"cannot be read as a {expected} resource")

    view = f"bundle_rows_{uuid.uuid4().hex}"
    try:
        con.register(view, pa.table({"json": pa.array(rows, pa.string())}))
        yield from _batches(con, extract_sql(view, expected, False), schema_for(expected), on_bad)
    except duckdb.Error as exc:
        raise InputError(name, f"cannot be read as {expected} resources: {exc}") from None
    finally:
        con.close()


def payload_format(name: str, meta: dict) -> str:
    """``ndjson`` or ``document``: as recorded at fetch time, or guessed from the name."""
    fmt = meta.get("format")
    if fmt is None:
        base = name[:-3] if name.endswith(".gz") else name
        fmt = "ndjson" if base.endswith((".ndjson", ".jsonl")) else "document"
    return str(fmt)


def read_payload(path: Path, name: str, stream: str, meta: dict) -> Iterator[pa.RecordBatch]:
    """Dispatch on the payload format recorded at fetch time (or guessed from the name)."""
    if stream not in R4_TYPES:
        raise InputError(name, f"{stream} is not a FHIR R4 resource type")
    if payload_format(name, meta) == "ndjson":
        return read_ndjson(path, name, stream, bool(meta.get("mixed")))
    return read_document(path, name, stream)
