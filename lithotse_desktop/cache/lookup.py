"""Cell lookups answered from the L3 cache, falling back to L2 (the derivative catalog) on a miss.

The L2 catalog stays authoritative. A process trusts the cache's pointer for a derivative
for ``revalidate_seconds`` after it last compared it with L2's CURRENT (5 s by default);
a pointer that moved in between (another process published) is checked again at once.
Versions are immutable, so decoded tables are memoised per process by version.

Aggregation rules (so a spreadsheet cell can never reveal a suppressed value):

* ``count`` and ``sum`` add up over the rows that match the range and dimension values;
* the other measures (``mean``, ``median``, ``min``, ``max``, ``count_distinct``,
  ``percentile``, and every column of a ``view``/``sql`` derivative) cannot be added, so the
  lookup must match exactly one row;
* a result that involves any suppressed row is suppressed (``None`` with ``suppressed``);
* in a table that leaves its suppressed cells out (sql cells: ``hidden`` is ``left out``), a
  lookup matching no row is suppressed too, as an absent key may be a hidden cell.

A date range keeps the periods whose start lies inside it, like :meth:`Catalog.read`.

Row-level derivatives (see :mod:`lithotse_desktop.derive.disclosure`) never enter the cache:
a lookup of one is refused, naming the rule, before anything is read.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..dates import parse_date
from ..deferred import pyarrow_compute as pc
from ..errors import ConfigError, NotFound
from ..names import split_names
from ..workspace import Workspace
from .backends import ANY, CacheBackend, cache_config, create_backend

if TYPE_CHECKING:  # the derive package is imported where it is used: loading the plugins imports this
    from ..derive.catalog import Version

log = logging.getLogger("lithotse.cache")

PERIOD = "period"
FLAG = "suppressed"
ADDITIVE = ("count", "sum")
DEFAULT_REVALIDATE = 5.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MEMO_SIZE = 32


class LookupMismatch(ConfigError):
    """A lookup that cannot give one number (a non-additive measure over several rows)."""


@dataclass
class Cell:
    """One looked-up number, with what it came from."""

    derivative: str
    measure: str
    version: str
    value: int | float | None
    suppressed: bool
    rows: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _key(value: Any) -> str | None:
    """One text form for dimension values from Arrow and from query strings."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _query_key(value: Any, typ: pa.DataType) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        if pa.types.is_boolean(typ):
            return text.lower()
        if pa.types.is_floating(typ):
            try:
                return format(float(text), "g")
            except ValueError:
                return text
        return text
    return _key(value)


def describe(version: Version, table: pa.Table) -> dict:
    """What a lookup needs to know about a version: dimensions, measures with their function."""
    from ..derive.spec import HIDDEN_FLAGGED, dimension_alias

    spec = version.spec or {}
    if spec.get("kind") == "aggregate":
        dims = [dimension_alias(d) for d in spec.get("group_by", [])]
        measures = {m["as"]: m["fn"] for m in spec.get("measures", [])}
        grain = spec.get("grain", "none")
    else:
        numeric = [f.name for f in table.schema
                   if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type))
                   and f.name != FLAG]
        measures = {n: None for n in numeric}
        dims = [n for n in table.column_names if n not in measures and n not in (PERIOD, FLAG)]
        grain = "none"
    return {"name": version.name, "version": version.version, "kind": spec.get("kind"), "grain": grain,
            "dimensions": dims, "measures": measures, "published_at": version.published_at,
            "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
            "class": version.privacy.get("class"), "restricted": False,
            "hidden": version.privacy.get("hidden", HIDDEN_FLAGGED)}


def encode_table(table: pa.Table) -> bytes:
    """The table as a zstd Arrow stream, as one record batch: a build's table comes in one small
    chunk per period part, and each batch written costs its own buffers, headers and compression
    frames (72 monthly parts: 3x the bytes and 20 ms instead of 1 ms). A table already in one
    chunk is not copied."""
    table = table.combine_chunks()
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def decode_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class Entry:
    """One immutable version in memory, with lazily built per-dimension-set indexes."""

    def __init__(self, meta: dict, table: pa.Table) -> None:
        self.meta = meta
        self.name: str = meta["name"]
        self.version: str = meta["version"]
        self.table = table
        self.has_period = PERIOD in table.column_names
        self._columns: dict[str, list] = {}
        self._indexes: dict[tuple[str, ...], dict[tuple, list[int]]] = {}
        self._lock = threading.Lock()

    @property
    def measures(self) -> dict[str, str | None]:
        return self.meta["measures"]

    @property
    def dimensions(self) -> list[str]:
        return self.meta["dimensions"]

    @property
    def leaves_out_hidden(self) -> bool:
        """Whether suppressed cells are absent from the table rather than flagged rows."""
        from ..derive.spec import HIDDEN_LEFT_OUT

        return self.meta.get("hidden") == HIDDEN_LEFT_OUT

    def column_list(self, columns: list[str] | str | None) -> list[str] | None:
        """Columns given as a list, or as one comma-separated text (``period,Cost, total ($)``:
        commas inside a column's own name are kept, see ``names.split_names``)."""
        if columns is None or not isinstance(columns, str):
            return columns
        return split_names(columns, self.table.column_names) or None

    def column(self, name: str) -> list:
        values = self._columns.get(name)
        if values is None:
            values = self.table.column(name).to_pylist()
            self._columns[name] = values
        return values

    def _index(self, names: tuple[str, ...]) -> dict[tuple, list[int]]:
        index = self._indexes.get(names)
        if index is None:
            with self._lock:
                index = self._indexes.get(names)
                if index is None:
                    index = {}
                    columns = [self.column(n) for n in names]
                    for row in range(self.table.num_rows):
                        index.setdefault(tuple(_key(c[row]) for c in columns), []).append(row)
                    self._indexes[names] = index
        return index

    def check_dims(self, dims: dict[str, Any]) -> None:
        for name in dims:
            if name not in self.dimensions:
                raise ConfigError(f"{self.name}: no dimension {name!r}; dimensions: "
                                  f"{', '.join(self.dimensions) or 'none'}")

    def check_range(self, start: dt.date | None, end: dt.date | None) -> None:
        if (start or end) and not self.has_period:
            raise ConfigError(f"{self.name} has no time grain, so from/to cannot apply; "
                              "leave them empty")
        if start and end and start > end:
            raise ConfigError(f"date range: from {start} is after to {end}")

    def rows(self, start: dt.date | None, end: dt.date | None, dims: dict[str, Any]) -> list[int]:
        """Row numbers matching the dimension values and whose period starts in the range."""
        self.check_dims(dims)
        self.check_range(start, end)
        candidates: Sequence[int]
        if dims:
            names = tuple(sorted(dims))
            wanted = tuple(_query_key(dims[n], self.table.schema.field(n).type) for n in names)
            candidates = self._index(names).get(wanted, [])
        else:
            candidates = range(self.table.num_rows)
        if not (start or end):
            return list(candidates)
        periods = self.column(PERIOD)
        return [r for r in candidates
                if periods[r] is not None and (start is None or periods[r] >= start)
                and (end is None or periods[r] <= end)]

    def cell(self, measure: str, start: dt.date | None = None, end: dt.date | None = None,
             dims: dict[str, Any] | None = None) -> Cell:
        if measure not in self.measures:
            raise NotFound(f"{self.name}: no measure {measure!r}; measures: "
                           f"{', '.join(self.measures) or 'none'}")
        dims = dims or {}
        rows = self.rows(start, end, dims)
        fn = self.measures[measure]
        flags = self.column(FLAG) if FLAG in self.table.column_names else None
        if flags is not None and any(flags[r] for r in rows) or (not rows and self.leaves_out_hidden):
            return Cell(self.name, measure, self.version, None, True, len(rows))
        values = self.column(measure)
        if fn in ADDITIVE:
            present = [values[r] for r in rows if values[r] is not None]
            total = sum(present) if present or not rows else None
            return Cell(self.name, measure, self.version, total, False, len(rows))
        if len(rows) != 1:
            missing = [d for d in self.dimensions if d not in dims]
            hint = []
            if self.has_period:
                hint.append("a range holding one period (from = to = the period's first day)")
            if missing:
                hint.append(f"a value for {', '.join(missing)}")
            raise LookupMismatch(
                f"{self.name}.{measure} is a {fn or 'non-additive value'}, which cannot be added up, "
                f"and this lookup matches {len(rows)} rows; it needs exactly one"
                + (f": give {' and '.join(hint)}" if hint else ""))
        return Cell(self.name, measure, self.version, values[rows[0]], False, 1)

    def select(self, start: dt.date | None = None, end: dt.date | None = None,
               dims: dict[str, Any] | None = None, measures: list[str] | None = None,
               columns: list[str] | str | None = None) -> pa.Table:
        """The rows in range matching ``dims``, with the chosen measures or columns."""
        columns = self.column_list(columns)
        dims = dims or {}
        self.check_dims(dims)
        self.check_range(start, end)
        names = self.table.column_names
        for m in measures or []:
            if m not in self.measures:
                raise NotFound(f"{self.name}: no measure {m!r}; measures: {', '.join(self.measures) or 'none'}")
        for c in columns or []:
            if c not in names:
                raise NotFound(f"{self.name}: no column {c!r}; columns: {', '.join(names)}")
        table = self.table
        if dims:
            table = table.take(pa.array(self.rows(None, None, dims), pa.int64()))
        if (start or end) and table.num_rows:
            period = table.column(PERIOD)
            mask = pc.is_valid(period)
            if start:
                mask = pc.and_(mask, pc.greater_equal(period, pa.scalar(start, pa.date32())))
            if end:
                mask = pc.and_(mask, pc.less_equal(period, pa.scalar(end, pa.date32())))
            table = table.filter(mask)
        if columns:
            return table.select(columns)
        if measures:
            keep = [n for n in names if n not in self.measures or n in measures]
            return table.select(keep)
        return table


class L3:
    """The cache of one workspace in this process: a backend plus per-process memo and checks."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        config = cache_config(ws)
        self.backend: CacheBackend = create_backend(ws)
        self.revalidate = float(config.get("revalidate_seconds", DEFAULT_REVALIDATE))
        self.max_bytes = int(config.get("max_bytes", DEFAULT_MAX_BYTES))
        self._known: dict[str, tuple[str, float]] = {}
        self._memo: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._warned = False

    # --- memo ---------------------------------------------------------------------
    def _remember(self, entry: Entry) -> Entry:
        with self._lock:
            self._memo[(entry.name, entry.version)] = entry
            self._memo.move_to_end((entry.name, entry.version))
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return entry

    def _recall(self, name: str, version: str) -> Entry | None:
        with self._lock:
            return self._memo.get((name, version))

    def _backend_failed(self, exc: Exception) -> None:
        if not self._warned:
            log.warning("L3 cache backend unavailable (%s); reading derivatives from L2", exc)
            self._warned = True

    def _quietly(self, func: Any, *args: Any) -> Any:
        """A backend call whose failure only means 'not cached' (L2 answers instead)."""
        try:
            return func(*args)
        except Exception as exc:
            self._backend_failed(exc)
            return None

    # --- lookups ------------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        """The current version of ``name`` (from the memo, the cache or L2, in that order)."""
        try:
            pointer = self.backend.pointer(name)
        except Exception as exc:
            self._backend_failed(exc)
            return self._from_l2(name, None, use_backend=False)
        known = self._known.get(name)
        if known and time.monotonic() - known[1] < self.revalidate and pointer in (None, known[0]):
            entry = self._recall(name, known[0])
            if entry is not None:
                return entry
            if pointer is not None:
                loaded = self._quietly(self.backend.load, name)
                if loaded is not None and loaded[0] == known[0]:
                    return self._remember(Entry(loaded[1], decode_table(loaded[2])))
        return self._from_l2(name, pointer)

    def _from_l2(self, name: str, pointer: str | None, *, use_backend: bool = True) -> Entry:
        from ..derive.catalog import Catalog
        from ..derive.disclosure import classify, refusal

        catalog = Catalog(self.ws)
        spec = catalog.find_spec(name)
        if spec is not None:
            disclosure = classify(spec, catalog.find_spec)
            if not disclosure.published:
                self._known.pop(name, None)
                if pointer is not None and use_backend:
                    self._quietly(self.backend.drop, name)
                raise refusal(name, disclosure, "the L3 cache, the local API, workbooks or the add-in")
        current = catalog.current(name)
        if current is None:
            self._known.pop(name, None)
            if pointer is not None and use_backend:
                self._quietly(self.backend.drop, name)
            catalog.spec(name)
            raise NotFound(f"derivative {name!r} has not been built yet; run: lithotse derive build {name}")
        self._known[name] = (current.version, time.monotonic())
        entry = self._recall(name, current.version)
        if entry is None and pointer == current.version and use_backend:
            loaded = self._quietly(self.backend.load, name)
            if loaded is not None and loaded[0] == current.version:
                entry = Entry(loaded[1], decode_table(loaded[2]))
        if entry is None:
            table = catalog.read(current)
            entry = Entry(describe(current, table), table)
        if use_backend and pointer != current.version:
            self._store(entry, expect=pointer)
        return self._remember(entry)

    def _store(self, entry: Entry, *, expect: Any) -> None:
        data = encode_table(entry.table)
        try:
            if len(data) > self.max_bytes:
                log.info("%s %s: %d bytes is over the cache's max_bytes; served from L2",
                         entry.name, entry.version, len(data))
                self.backend.drop(entry.name)
                return
            self.backend.publish(entry.name, entry.version, entry.meta, data, expect=expect)
        except Exception as exc:
            self._backend_failed(exc)

    def publish(self, version: Version, table: pa.Table) -> None:
        """Put a just-published version (and its table) in the cache, replacing the
        derivative's other entries."""
        if version.privacy.get("class") == "row-level":
            self.forget(version.name)
            return
        if sum(p.get("bytes", 0) for p in version.partitions.values()) > self.max_bytes:
            log.info("%s %s is over the cache's max_bytes; served from L2", version.name, version.version)
            self.forget(version.name)
            self._known[version.name] = (version.version, time.monotonic())
            return
        entry = Entry(describe(version, table), table)
        self._store(entry, expect=ANY)
        self._known[version.name] = (version.version, time.monotonic())
        self._remember(entry)

    def forget(self, name: str) -> None:
        self._known.pop(name, None)
        self.backend.drop(name)

    def expire(self, name: str) -> None:
        """Compare ``name`` with L2's CURRENT on its next lookup (someone saw CURRENT move)."""
        self._known.pop(name, None)

    def close(self) -> None:
        self.backend.close()


_handles: OrderedDict[tuple[str, str], L3] = OrderedDict()
_handles_lock = threading.Lock()
MAX_HANDLES = 16


def cache_for(ws: Workspace) -> L3:
    """The process-wide cache handle for a workspace (one per folder and cache config).

    Only the most recently used few are kept; a dropped handle closes its connections when
    the last thread using it lets go (it is not closed under a thread still reading).
    """
    key = (str(ws.root), json.dumps(cache_config(ws), sort_keys=True, default=str))
    with _handles_lock:
        handle = _handles.get(key)
        if handle is None:
            handle = L3(ws)
            _handles[key] = handle
        _handles.move_to_end(key)
        while len(_handles) > MAX_HANDLES:
            _handles.popitem(last=False)
        return handle


def close_all() -> None:
    """Close every backend this process opened (tests; the desktop app at exit)."""
    with _handles_lock:
        for handle in _handles.values():
            handle.close()
        _handles.clear()


def publish_to_cache(ws: Workspace, version: Version, table: pa.Table) -> None:
    """Put a version the build just published in the cache (see :mod:`.builtin`, which calls
    this for every published version).

    A cache failure never fails the build: the derivative's entries are dropped instead,
    and lookups read L2 until the cache is back.
    """
    try:
        cache_for(ws).publish(version, table)
    except Exception as exc:
        log.warning("could not put %s %s in the L3 cache: %s", version.name, version.version, exc)
        try:
            cache_for(ws).forget(version.name)
        except Exception:
            log.warning("could not drop %s from the L3 cache either", version.name)


def withdraw_from_cache(ws: Workspace, name: str) -> None:
    """Drop a derivative that became row-level; a cache failure never fails the build (lookups
    refuse the derivative anyway, from its spec)."""
    handle = cache_for(ws)
    handle._known.pop(name, None)
    with handle._lock:
        for key in [k for k in handle._memo if k[0] == name]:
            handle._memo.pop(key)
    try:
        handle.backend.drop(name)
    except Exception as exc:
        log.warning("could not drop %s from the L3 cache: %s", name, exc)


def _range(from_: Any, to: Any) -> tuple[dt.date | None, dt.date | None]:
    return parse_date(from_, "from"), parse_date(to, "to")


def lookup(ws: Workspace, derivative: str, measure: str, from_: Any = None, to: Any = None,
           **dims: Any) -> Cell:
    """One measure over a range and dimension values, with its version and suppression flag."""
    start, end = _range(from_, to)
    return cache_for(ws).entry(derivative).cell(measure, start, end, dims)


def value(ws: Workspace, derivative: str, measure: str, from_: Any = None, to: Any = None,
          **dims: Any) -> int | float | None:
    """One number for a cell; None when it is suppressed (see :func:`lookup` for the flag)."""
    return lookup(ws, derivative, measure, from_, to, **dims).value


def table_of(ws: Workspace, derivative: str, from_: Any = None, to: Any = None,
             dims: dict[str, Any] | None = None, measures: list[str] | None = None,
             columns: list[str] | str | None = None) -> tuple[Entry, pa.Table]:
    start, end = _range(from_, to)
    entry = cache_for(ws).entry(derivative)
    return entry, entry.select(start, end, dims, measures, columns)


def table(ws: Workspace, derivative: str, from_: Any = None, to: Any = None,
          dims: dict[str, Any] | None = None, measures: list[str] | None = None,
          columns: list[str] | str | None = None) -> pa.Table:
    """The suppressed table (or part of it) as Arrow."""
    return table_of(ws, derivative, from_, to, dims, measures, columns)[1]


def describe_all(ws: Workspace) -> list[dict]:
    """Every derivative with its kind and, once built, its version, columns and measures.

    Row-level derivatives are listed by name with ``restricted`` true and nothing of their data.
    """
    from ..derive.catalog import Catalog
    from ..derive.disclosure import classify

    out = []
    catalog = Catalog(ws)
    for name in catalog.names():
        spec = catalog.find_spec(name) or {}
        disclosure = classify(spec, catalog.find_spec) if spec else None
        empty: dict[str, Any] = {"name": name, "version": None, "kind": spec.get("kind"), "grain": spec.get("grain"),
                 "dimensions": [], "measures": {}, "columns": [], "published_at": None,
                 "class": disclosure.kind if disclosure else None, "restricted": False}
        if disclosure is not None and not disclosure.published:
            out.append({**empty, "grain": None, "restricted": True, "reason": disclosure.reason})
            continue
        try:
            meta = dict(cache_for(ws).entry(name).meta)
            meta["class"] = meta.get("class") or empty["class"]
        except NotFound:
            meta = empty
        out.append(meta)
    return out
