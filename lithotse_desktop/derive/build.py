"""Building derivatives: inputs → DuckDB → suppression → Parquet parts → published version.

A version id is a hash of the spec and the exact inputs read (raw objects with their ranges and
the name and version of the connector reading them, or input derivatives' versions), so the
same inputs give the same version on any machine, an up-to-date derivative is not rebuilt, and
a changed connector never leaves a version that claims to be current. Every raw object is
hashed as it is read and compared with its landed sha256 before anything is published.
Aggregates with a time grain rebuild incrementally: when only new landings were added, just
the periods those records (and older records with the same keys) fall in are recomputed; the
others are reused from the previous version.

What a spec's kind means is in :mod:`.kinds` (one module per kind); this module keeps what
all kinds share: versions, incremental periods, writing parts, publishing. What a version may
disclose is settled here too (:mod:`.disclosure`): aggregates are refused columns that would
publish identifiers, their small cells are hidden over every aggregate of the same input
(:mod:`.complementary`), ``sql`` cells read their inputs' identifiers as tokens and are
suppressed, de-identification profiles are applied, and row-level versions are written to the
restricted store. Publishing moves CURRENT, then, for aggregates and de-identified versions
only, calls the ``lithotse_version_published`` hook with the version's table, so the L3 cache
(a built-in plugin) and any other listener get the rows without reading them back; row-level
versions are never handed to a listener.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy
import pyarrow as pa
import pyarrow.parquet as pq

from .. import audit, interrupts
from ..atomic import atomic_write_stream
from ..deferred import pyarrow_compute as pc
from ..engine import release_freed_memory
from ..errors import Cancelled, LithotseError, NotFound, without_values
from ..interrupts import interrupted
from ..plugins import get_plugin_manager
from ..progress import Progress
from ..raw.verify import IntegrityChecks
from ..storage import PreconditionFailed
from ..workspace import Workspace
from . import atoms, deidentify, measures, recordindex, rowstream
from .atoms import Atoms
from .bounds import Tally, interruptible, reporting
from .catalog import Catalog, Version, index_key, part_key
from .compile import CELL_COUNT, DUCKDB, PEOPLE, PERIOD, Dialect, compile_difference
from .complementary import (
    HIDDEN_ANCHOR,
    VALUE_ANCHOR,
    Carried,
    Cells,
    Group,
    Moment,
    Pinned,
    TogetherMemo,
    Undecided,
    WideRows,
    anchors_table,
    carried_states,
    decide,
    pinned_changes,
    pinned_together,
    primary,
    release,
)
from .disclosure import (
    FOLLOWED,
    ROLES_VERSION,
    Disclosure,
    cell_roles,
    check_aggregate,
    check_cell_keys,
    check_cells,
    check_deidentified_picks,
    check_one_row_per_record,
    check_own_picks,
    check_unpicked,
    classify,
    describe,
    output_roles,
    picks,
    several_entries,
    suppress_cells,
)
from .engines import EngineSession, engine_name, open_engine
from .inputs import (
    StreamInput,
    connect,
    empty_relation,
    input_identity,
    input_picks,
    input_roles,
    load_derivative,
    load_stream,
    lock_down,
    resolve_stream,
)
from .kinds import KIND_MODULES
from .kinds.common import unchanged
from .kinds.sql import (
    ONE_CELL_RULE,
    Counting,
    RecordCheck,
    check_counts,
    check_row_by_row,
    counted_inputs,
    record_check,
    several_rows,
)
from .pseudonymize import patient_key_columns, pseudonymize, view_person_columns
from .relations import Relation, additive_quantities, column_identity, partitions_of, relate
from .revisions import coordinates_of, counts_of, revised_cells
from .spec import HIDDEN_FLAGGED, HIDDEN_LEFT_OUT, SpecError, dimension_alias, spec_hash, spec_inputs, validate_spec
from .suppress import FLAG, publish_cells

BUILD_FORMAT = "3"
CELLS_FORMAT = "5"
"""Of the unsuppressed cells a build keeps on this machine: 4 since they hold :data:`.compile.ZERO_ONE`,
5 since they hold its two-value and present counts."""


@dataclass
class BuildResult:
    name: str
    version: str
    status: str
    rows: int = 0
    partitions_written: int = 0
    partitions_total: int = 0
    seconds: float = 0.0
    pruned: list[str] = field(default_factory=list)
    error: str | None = None
    """Why a derivative of a run of several was ``failed`` or ``skipped`` (then ``version`` is empty)."""
    revised: int = 0
    """Counts of cells shown by this version and the one before it that moved by 1 to k-1: a
    reader holding both learns that change (see :mod:`.revisions`): held cells another table
    shows anyway, released."""
    held: int = 0
    """Cells this version hides because they were revised by 1 to k-1 since the previous one
    showed them (see :func:`.complementary.carried_states`); they are shown again once they
    moved far enough."""
    warning: str | None = None
    """Something that went wrong after the version was published (older versions not pruned)."""

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        if self.status == "up to date":
            return f"derivative {self.name}: up to date (version {self.version})"
        if self.status in ("failed", "skipped"):
            return f"derivative {self.name}: {self.status}: {self.error}"
        revised = (f"; warning: {self.revised} shown count(s) changed by fewer than the threshold since the "
                   "previous version, a change a reader holding both sees (lithotse privacy audit lists them)"
                   if self.revised else "")
        held = (f"; {self.held} cell(s) held back: revised by fewer than the threshold since shown"
                if self.held else "")
        warning = f"; warning: {self.warning}" if self.warning else ""
        return (f"derivative {self.name}: {self.status} version {self.version}, {self.rows} rows, "
                f"{self.partitions_written}/{self.partitions_total} partitions written "
                f"in {self.seconds:.2f}s{held}{revised}{warning}")


def version_id(spec: dict, identities: dict[str, Any], context: dict[str, Any] | None = None) -> str:
    """The id of what a build would publish; ``context`` holds what suppression is decided over
    besides the spec and inputs (threshold, zero rule, the other aggregates of the input), or
    anything else the result depends on (a de-identification's reference year)."""
    blob = json.dumps({"spec": spec_hash(spec), "inputs": identities, "format": BUILD_FORMAT,
                       **({"privacy": context} if context else {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def built_as(version: Version) -> str:
    """The id a build predicts for ``version`` (:func:`version_id` of its spec, inputs and
    context): its own id, unless its rows were not those another version of that id published."""
    return (version.stats or {}).get("built_as") or version.version


def _version_of_rows(spec: dict, vid: str, parts: dict[str, dict]) -> str:
    """A sql's version is named by its rows as well (parts are named by their content): the same
    query over the same inputs may give other rows (``random()``, a sample, an order left to
    threads), and under one id the cache, the add-ins and the derivatives reading it would keep
    the old rows as current. Views and aggregates give the same rows from the same inputs on
    either engine, and keep :func:`version_id`."""
    if spec["kind"] != "sql":
        return vid
    rows = json.dumps(sorted((label, part["key"]) for label, part in parts.items()))
    return hashlib.sha256(f"{vid}\n{rows}".encode()).hexdigest()[:20]


def reference_year(spec: dict) -> int | None:
    """The year Safe Harbor measures ages over 89 against (today's), for specs it applies to."""
    return dt.date.today().year if spec.get("deidentify") == "safe-harbor" else None


def suppression_threshold(ws: Workspace, spec: dict) -> int:
    value = spec.get("suppress_below")
    return ws.suppress_below if value is None else int(value)


def _day_numbers(column: pa.ChunkedArray) -> numpy.ndarray | None:
    """A date column's days since 1970 read from its buffers (``to_numpy`` would import pandas),
    or None where it holds nulls or is not of dates."""
    if column.type != pa.date32() or column.null_count:
        return None
    return numpy.concatenate([numpy.frombuffer(chunk.buffers()[1], numpy.int32, len(chunk), chunk.offset * 4)
                              for chunk in column.chunks if len(chunk)] or [numpy.empty(0, numpy.int32)])


def _periods(table: pa.Table, grain_split: bool) -> dict[str, pa.Table]:
    """The table cut into its parts: one per period (label: its first day), or one ``all``."""
    if not grain_split:
        return {"all": table}
    if not table.num_rows:
        return {}
    column = table.column(PERIOD)
    days = _day_numbers(column)
    if days is not None and bool((days[1:] >= days[:-1]).all()):
        # in period order, as a query grouping by period gives it: each part is a slice, and
        # pyarrow.compute (40 ms to import) is left unimported
        starts = [0, *(numpy.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), table.num_rows]
        epoch = dt.date(1970, 1, 1)
        return {(epoch + dt.timedelta(days=int(days[a]))).isoformat(): table.slice(a, b - a)
                for a, b in itertools.pairwise(starts)}
    # the table's own values compare with it: a scalar made from a Python date would import pandas
    values = pc.unique(column)
    return {v.as_py().isoformat(): table.filter(pc.equal(column, v)) for v in values.take(pc.sort_indices(values))}


def _write_parts(catalog: Catalog, name: str, groups: dict[str, pa.Table], area: str) -> dict[str, dict]:
    """One zstd Parquet file per part, in the area of the version's class; content-addressed, create-only."""
    parts: dict[str, dict] = {}
    store = catalog.store_of(area)
    pending: list[tuple[str, bytes]] = []
    for label, part in groups.items():
        buf = io.BytesIO()
        pq.write_table(part, buf, compression="zstd")
        data = buf.getvalue()
        key = part_key(name, area, label, hashlib.sha256(data).hexdigest())
        pending.append((key, data))
        parts[label] = {"key": key, "rows": part.num_rows, "bytes": len(data)}

    def put(item: tuple[str, bytes]) -> None:
        try:
            store.put_bytes(item[0], item[1], if_none_match=True)
        except PreconditionFailed:
            pass

    # each put waits for its fsyncs; a monthly aggregate has dozens of parts, written together
    with ThreadPoolExecutor(max_workers=min(8, len(pending) or 1)) as pool:
        list(pool.map(put, pending))
    return parts


def _whole_table(catalog: Catalog, parts: dict[str, dict], fresh: dict[str, pa.Table],
                 schema: pa.Schema) -> pa.Table:
    """The version's table as :meth:`Catalog.read` gives it: parts in label order, those just
    computed from memory, those kept from the previous version read from L2."""
    tables = [fresh[label] if label in fresh else catalog.read_part(parts[label]["key"])
              for label in sorted(parts)]
    if not tables:
        return pa.Table.from_batches([], schema)  # empty_table() imports pandas
    return pa.concat_tables(tables, promote_options="permissive")


def _schema_hex(schema: pa.Schema) -> str:
    return schema.serialize().to_pybytes().hex()


def _same_reader(current: dict, previous: dict | None) -> bool:
    """Whether a stream input is still read by the same connector name and version."""
    return previous is not None and all(current.get(k) == previous.get(k)
                                        for k in ("source", "stream", "connector", "connector_version"))


@dataclass
class _Work:
    """One derivative of a build: what it reads, what it was, and what its query gave."""

    spec: dict
    resolved: dict[str, StreamInput]
    identities: dict[str, Any]
    previous: Version | None
    threshold: int
    disclosure: Disclosure
    vid: str = ""
    previous_table: pa.Table | None = None
    """The previous version's published cells, read once (see :func:`_previous_table`)."""
    returned: tuple[Version, pa.Table] | None = None
    """The newest version of this question before another one (see :func:`_compared`)."""
    carried: Carried | None = None
    """What the previous version of the same question fixes of the table's cells."""
    held: int = 0
    """How many of its cells were held (:attr:`BuildResult.held`)."""
    anchors: pa.Table | None = None
    """The anchors of the cells as published (:func:`.complementary.anchors_table`)."""
    anchors_read: dict[str, pa.Table | None] = field(default_factory=dict)
    """Earlier versions' anchors by version id, as read (see :func:`_anchors_of`)."""
    table: pa.Table | None = None
    cells: bool = False
    periods: list[Any] | None = None
    person_key: list[str] | None = None
    cells_id: str | None = None
    question: str | None = None
    """What a table of cells asks (:func:`question`), once found."""
    decided: str = ""
    """The id of the decision its version was published with (the set built together, named by
    its versions): the set's versions form one moment a reader may hold (see :func:`_baselines`)."""
    audited: set[str] = field(default_factory=set)
    """The parts of the audit its decision passed, recorded with its anchors (see
    :func:`.complementary.audited_parts`)."""
    several: list[str] | None = None
    """Why a row-level sql's rows may be several for one record (see :func:`_several`)."""
    relations: list[Relation] = field(default_factory=list)
    differences: dict[tuple[str, str], dict[tuple, tuple[int, int]] | None] = field(default_factory=dict)
    remainders: dict[tuple[str, ...], dict[tuple, tuple[int, int]]] = field(default_factory=dict)
    counts_atoms: bool = False
    """The aggregate whose build counts the group's atoms (see :mod:`.atoms`), once per group."""
    atoms: Atoms | None = None
    published: pa.Table | None = None
    """The current table of an aggregate not rebuilt, for the suppression decision of the others."""
    started: float = 0.0
    roles: dict[str, dict[str, str | None]] = field(default_factory=dict)
    upstream: dict[str, dict] = field(default_factory=dict)
    """What each input derivative recorded of how its rows were chosen (see :func:`.disclosure.picks`)."""
    picks: dict[str, list] | None = None
    """This version's own record of that, found once for all its batches."""
    aggregate_roles: dict[str, str | None] | None = None
    sql_cells: bool = False
    """A ``sql`` derivative declaring its ``count_column``: its rows are cells, suppressed alone."""
    counting: Counting | None = None
    """What the declared counts of sql cells count (see :func:`.kinds.sql.check_counts`)."""
    counted_run: RecordCheck | None = None
    """The count on the data that found a sql's rows one per record: its marked query is what the
    build runs, so the rows published are the rows counted (see :attr:`.kinds.sql.RecordCheck.run`)."""
    left_out: int = 0
    """How many cells of sql cells suppression left out of the table (recorded for the audit)."""
    tags: dict[str, Any] = field(default_factory=dict)
    staged: rowstream.Written | None = None
    """A row-level result already written to a local Parquet file (see :mod:`.rowstream`)."""
    staged_index: dict[str, Any] | None = None
    """What a view's record index records besides its files (rows read, landings ranked)."""
    added: bool = False
    """A view or aggregate built from its previous version and the new objects only."""
    kept_input: recordindex.StagedInput | None = None
    kept_reused: list[dict] = field(default_factory=list)
    """An aggregate's input as the next build starts from it (see :mod:`.recordindex`)."""
    kept_key: list[str] = field(default_factory=list)
    """The record identity of that input (none: its stream has none)."""
    kept_changes: bool = False
    """The rows an incremental load of that input gained and lost are at hand (see :mod:`.recordindex`)."""
    staged_privacy: dict[str, Any] = field(default_factory=dict)
    input_schema: pa.Schema | None = None
    """An aggregate's input, as its build read it (for :func:`.measures.flag_columns`)."""
    engine: str = "duckdb"

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def suppressed(self) -> bool:
        """An aggregate whose cells are suppressed (threshold above 0)."""
        return self.spec["kind"] == "aggregate" and self.threshold > 0


def _resolve(ws: Workspace, catalog: Catalog, spec: dict, streams: dict[tuple[str, str], StreamInput]) -> _Work:
    """``streams``: the streams the unit's derivatives read, each resolved once, so all of them
    read (and their versions record) the same landings, though an import commit meanwhile."""
    validate_spec(spec)
    inputs = spec_inputs(spec)
    resolved = {}
    for alias, item in inputs.items():
        if "source" in item:
            where = (item["source"], item["stream"])
            if where not in streams:
                streams[where] = resolve_stream(ws, item["source"], item["stream"], with_key=False)
            resolved[alias] = streams[where]
    identities = {alias: input_identity(ws, catalog, item, resolved.get(alias))
                  for alias, item in inputs.items()}
    return _Work(spec, resolved, identities, catalog.current(spec["name"]), suppression_threshold(ws, spec),
                 classify(spec, catalog.find_spec), started=time.perf_counter())


def _privacy_context(ws: Workspace, work: _Work, group: list[_Work]) -> dict[str, Any] | None:
    """What a version depends on besides its own spec and inputs: for a suppressed aggregate, what
    its suppression is decided over; for a Safe Harbor profile, the year ages are measured against."""
    context: dict[str, Any] = {}
    if work.suppressed:
        context.update({"threshold": work.threshold, "zero_cells": ws.zero_cells,
                        "group": sorted([w.name, spec_hash(w.spec), w.identities, w.threshold]
                                        for w in group if w is not work)})
    if sql_cells(work.spec):  # versions that showed suppressed cells with their keys are rebuilt
        context["hidden"] = HIDDEN_LEFT_OUT
    year = reference_year(work.spec)
    if year:
        context["reference_year"] = year
    if work.spec["kind"] in FOLLOWED:
        # a version whose roles were found the older way is rebuilt (see ROLES_VERSION)
        context["roles"] = ROLES_VERSION
    return context or None


def cells_key(name: str, cells_id: str) -> str:
    return f"cells/{name}/{cells_id}.parquet"


def _cached_cells(ws: Workspace, version: Version | None) -> Path | None:
    """The unsuppressed cells behind ``version``, kept on this machine, if they still are."""
    cells_id = (version.stats or {}).get("cells") if version is not None else None
    if not cells_id or version is None:
        return None
    path = ws.local_dir / cells_key(version.name, cells_id)
    return path if path.is_file() else None


def _keep_cells(ws: Workspace, name: str, cells_id: str, table: pa.Table) -> None:
    """Keep a version's unsuppressed cells on this machine only (``.lithotse/cells``, beside the
    object cache), so the next incremental build re-decides suppression without a full query."""
    path = ws.local_dir / cells_key(name, cells_id)
    if not path.exists():
        atomic_write_stream(path, lambda out: pq.write_table(table, out, compression="zstd"))
    for other in path.parent.glob("*.parquet"):
        if other != path:
            other.unlink(missing_ok=True)


def _sql_person_key(schema: pa.Schema, privacy: dict | None) -> list[str]:
    """A row-level sql result's person key: its first column passing an input's person key on
    unchanged (:mod:`.lineage`), so an aggregate over it counts people, not rows a join repeated."""
    columns = (privacy or {}).get("columns") or {}
    computed = set((privacy or {}).get("computed") or [])
    return [c for c in schema.names if columns.get(c) == "person_key" and c not in computed][:1]


def _input_person_key(catalog: Catalog, work: _Work, schema: pa.Schema) -> list[str] | None:
    """The columns of the input naming the person of each row (see StreamInfo.person_key)."""
    item = spec_inputs(work.spec)["input"]
    if "derivative" in item:
        current = catalog.current(item["derivative"])
        found = (current.stats or {}).get("person_key") if current is not None else None
    else:
        found = work.resolved["input"].person_key
    if not found or not all(c in schema.names for c in found):
        return None
    return list(found)


@dataclass
class _Plan:
    """How one derivative's build reads its inputs (decided before any is loaded)."""

    incremental: bool
    """Only the periods new landings touch are recomputed (from the cells kept on this machine)."""
    cached: Path | None
    differs: bool
    """The input is queried more than once (counted differences or atoms), so it is held in a table."""
    keeps_input: bool


def _plan(ws: Workspace, work: _Work, group: list[_Work], full: bool) -> _Plan:
    spec, previous, identities = work.spec, work.previous, work.identities
    inputs = spec_inputs(spec)
    grain_split = spec["kind"] == "aggregate" and spec.get("grain", "none") != "none"
    cached = _cached_cells(ws, previous) if work.suppressed else None
    # a previous version that suppressed cells kept none of them whole: once nothing is
    # suppressed (the workspace's threshold lowered to 0), every period is computed again
    incremental = (grain_split and not full and previous is not None
                   and (cached is not None or not work.suppressed)
                   and (work.suppressed or not (previous.stats or {}).get("cells"))
                   and previous.spec_hash == spec_hash(spec) and "source" in inputs["input"]
                   and _same_reader(identities["input"], previous.inputs.get("input"))
                   and all(identities[a] == previous.inputs.get(a) for a in inputs if a != "input"))
    work.counts_atoms = _counts_atoms(work, group)
    differs = _may_count_differences(work, group)
    keeps_input = _keeps_input(ws, work, differs)
    return _Plan(incremental, cached, differs or work.counts_atoms, keeps_input)


_Margins = dict[tuple, dict[tuple, tuple[int, int]]]
"""(records, people) per margin cell, by the query that counted them."""


@dataclass
class _SharedInput:
    """One stream held in a table for several aggregates of a group: loaded, hash-checked and
    locked down once, then queried by each member's build (and its differences and atoms)."""

    session: EngineSession
    schema: pa.Schema
    joined: dict[str, pa.Schema] = field(default_factory=dict)
    """The inputs other aggregates of the group join, loaded before the lock-down for the rows a
    member's inner that joins leaves out (see :func:`_load_joined_by_others`)."""
    margins: _Margins = field(default_factory=dict)
    """Margin counts by query: the members' differences often repeat (every outer with the filtered
    subset's dimensions leaves out the same rows per the same margin), counted once."""
    periods: dict[str, list[Any] | None] | None = None
    """Loaded from a kept input (see :func:`_load_shared_kept`): the periods each member's cells
    may differ in from its previous version's (None: every period), found as it was loaded."""


def _shares_input(work: _Work, plan: _Plan, group: list[_Work]) -> bool:
    """Whether this aggregate reads its one stream input in a way the group's builds may share:
    one table of it (one read of the objects, or of the kept input and the new objects, then
    scans of a table, rather than a read per build). An aggregate reading every object shares
    where the group suppresses (an incremental build reads every object too, and only asks which
    periods the new landings touch); one keeping its input shares that (see
    :func:`_load_shared_kept`). A keyless stream of aggregates that suppress nothing is left to
    stream into each query: holding it in a table once costs what reading it again does."""
    inputs = spec_inputs(work.spec)
    return (work.spec["kind"] == "aggregate" and list(inputs) == ["input"] and "source" in inputs["input"]
            and (plan.keeps_input or any(w.suppressed for w in group)))


def _load_shared(ws: Workspace, catalog: Catalog, members: list[_Work], group: list[_Work],
                 progress: Progress, full: bool) -> _SharedInput:
    first = members[0]
    progress.update(f"reading the input of {_names(members)} on {first.engine}")
    session = open_engine(ws, first.engine).session(progress)
    checks = IntegrityChecks()
    periods: dict[str, list[Any] | None] | None = None
    try:
        key = first.resolved["input"].read_key(ws)
        for work in members[1:]:
            work.resolved["input"] = first.resolved["input"]  # the same stream: its key read once
        if key and first.engine == "duckdb" and not any("join" in w.spec for w in members):
            schema, periods = _load_shared_kept(session, ws, catalog, members, progress, checks, full)
        else:
            schema = session.load_stream(ws, "input", first.resolved["input"], progress, checks, materialize=True,
                                         unused=_unused_by_all(members))
        joined: dict[str, pa.Schema] = {}
        if any(_may_count_differences(w, group) and _joins_apart(w, group) for w in members):
            # members read no join of their own, so every joined input has the same name for each
            joined = _load_joined_by_others(session, ws, catalog, first, group, progress, checks)
        checks.finish()
        if periods is not None:
            first.kept_input = recordindex.stage(session.con, ws, first.kept_reused,  # type: ignore[attr-defined]
                                                 first.kept_key)
        session.lock_down()
    except BaseException:
        if first.kept_input is not None:
            first.kept_input.discard()
            first.kept_input = None
        session.close()
        raise
    finally:
        checks.close()
    return _SharedInput(session, schema, joined, periods=periods)


def _load_shared_kept(session: EngineSession, ws: Workspace, catalog: Catalog, members: list[_Work],
                      progress: Progress, checks: IntegrityChecks,
                      full: bool) -> tuple[pa.Schema, dict[str, list[Any] | None]]:
    """Load the one table of a keyed input that several aggregates read (see :func:`_load_shared`)
    as :func:`_load_kept` does for the first one, which keeps it again. An update then reads what
    landed since, not every landing again (an export landed again whole each day would otherwise
    be read once more for every day it was landed). Each member's periods to compute again are
    those of the records whose newest version changed (None: every period, where the load read
    every object or a landing was read again)."""
    first = members[0]
    by_period = next((w.spec for w in members if w.spec.get("grain", "none") != "none"), None)
    loaded = _load_kept(session, ws, catalog, first, progress, checks, full, _unused_by_all(members), by_period)
    periods: dict[str, list[Any] | None] = dict.fromkeys((w.name for w in members), None)
    if loaded.changes and first.previous is not None:
        read = _objects_read(first.previous)
        for work in members:
            # the changes are those since the first one's version: another whose previous version
            # read other objects (built apart, or before a landing the first one saw) computes all
            if (work.spec.get("grain", "none") != "none" and work.previous is not None
                    and _objects_read(work.previous) == read):
                periods[work.name] = recordindex.changed_periods(session.con,  # type: ignore[attr-defined]
                                                                 work.spec, ws.timezone)
    return loaded.schema, periods


def _objects_read(version: Version) -> set[tuple]:
    """(sha256, range from, range to) of each object a version read (the ranges may be None)."""
    return {tuple(x) for x in version.inputs.get("input", {}).get("objects", [])}


def _compute(ws: Workspace, catalog: Catalog, work: _Work, group: list[_Work], progress: Progress,
             full: bool, plan: _Plan, shared: _SharedInput | None = None) -> None:
    """Load the inputs and run the query; aggregates keep their cells unsuppressed (with the
    records and people of each) and the differences other aggregates of the input leave out.
    With ``shared``, the input is that table, loaded and checked already."""
    spec, name, previous = work.spec, work.name, work.previous
    if _streams_rows(spec) and work.engine == "duckdb":
        _compute_rows(ws, catalog, work, progress, full)
        return
    kind = KIND_MODULES[spec["kind"]]
    inputs = spec_inputs(spec)
    progress.update(f"building {name} on {work.engine}")
    session = shared.session if shared is not None else open_engine(ws, work.engine).session(progress)
    checks = IntegrityChecks()
    incremental, cached, differs, keeps_input = plan.incremental, plan.cached, plan.differs, plan.keeps_input
    try:
        schemas: dict[str, pa.Schema] = {}
        kept_periods: list[Any] | None = None
        for alias, item in inputs.items():
            if shared is not None:
                schemas[alias] = shared.schema
            elif "derivative" in item:
                schemas[alias] = session.load_derivative(catalog, alias, item["derivative"])
            elif keeps_input:
                work.resolved[alias].read_key(ws)
                loaded = _load_kept(session, ws, catalog, work, progress, checks, full, _unused_columns(spec),
                                    spec if incremental else None)
                schemas[alias], kept_periods = loaded.schema, loaded.periods
                if loaded.added:
                    work.added = loaded.periods is None
                incremental = False
                work.kept_input = recordindex.stage(session.con, ws, work.kept_reused,  # type: ignore[attr-defined]
                                                    work.kept_key)
            else:
                work.resolved[alias].read_key(ws)
                schemas[alias] = session.load_stream(ws, alias, work.resolved[alias], progress, checks,
                                                     materialize=((incremental or differs) and alias == "input")
                                                     or (work.counts_atoms and alias == "joined"),
                                                     rescanned=spec["kind"] == "sql",
                                                     unused=_unused_columns(spec) if not work.counts_atoms
                                                     else _unused_by_all(group))
        if shared is not None:
            schemas.update(shared.joined)
        elif work.counts_atoms or (differs and _joins_apart(work, group)):
            schemas.update(_load_joined_by_others(session, ws, catalog, work, group, progress, checks))
        work.roles = {alias: input_roles(catalog, spec, item, schemas[alias], work.resolved.get(alias))
                      for alias, item in inputs.items()}
        work.upstream = {alias: input_picks(catalog, item) for alias, item in inputs.items()}
        work.sql_cells = spec["kind"] == "sql" and bool(spec.get("count_column"))
        if spec["kind"] == "aggregate" or work.sql_cells:
            check_unpicked(spec, work.upstream)
        if spec["kind"] == "aggregate":
            work.aggregate_roles = check_aggregate(spec, work.roles, {alias: found.get("computed", [])
                                                                      for alias, found in work.upstream.items()})
            work.person_key = _input_person_key(catalog, work, schemas["input"])
            work.input_schema = schemas["input"]
        if spec["kind"] == "aggregate":
            check_one_row_per_record(spec, work.upstream, ("input",))
        if work.sql_cells:
            work.counting = check_counts(spec, work.roles)  # again: the spec may predate its inputs' schemas
            check_one_row_per_record(spec, work.upstream, work.counting.counted)
        work.tags = session.mask_inputs(work.roles) if work.sql_cells else {}
        periods = kept_periods if keeps_input else None
        if incremental and previous is not None:
            if shared is not None and shared.periods is not None:
                periods = shared.periods[name]
            else:
                periods = session.touched_periods(ws, spec, schemas["input"], work.resolved["input"], previous)
        added = None
        if keeps_input and periods is not None and work.kept_changes and _adds_up(work, group):
            added = _added_cells(session, ws, catalog, work, schemas, periods)
        if shared is None:
            session.lock_down(user_sql=spec["kind"] == "sql")
        if work.counting is not None:
            _check_lookups(session, work)
        if spec["kind"] == "sql":
            work.counted_run = _record_check(work, session.dialect)
        progress.update(f"computing {name} on {work.engine}")
        try:
            query = kind.query(spec, schemas, timezone=ws.timezone, threshold=work.threshold,
                               periods=periods, person_key=_counted_by(work, group), dialect=session.dialect)
            if work.counted_run is not None:
                query = replace(query, sql=work.counted_run.query())
            result = added if added is not None else session.run(query.sql, query.params, f"derivative {name}",
                                                                  progress)
            if work.counted_run is not None and added is None:
                _judge_rows(work, work.counted_run, result, lambda sql: session.run(sql, [], f"derivative {name}"))
                result = work.counted_run.strip(result)
            if session.dialect.name != "duckdb" and query.cells:
                result = _as_duckdb_types(ws, work, schemas, result)
            work.cells = query.cells
            work.table = result if query.cells else query.finish(result)
            if spec["kind"] == "aggregate" and added is None:
                _check_keys_name_no_one(session, work)
            if query.cells and any(w.suppressed for w in group):
                _relate_as_outer(session, ws, work, group, schemas, progress,
                                 shared.margins if shared is not None else {})
            if work.counts_atoms:
                work.atoms = _count_atoms(session, ws, work, group, schemas, progress)
        except LithotseError:
            checks.raise_found()
            raise
        checks.finish()
    finally:
        checks.close()
        if shared is None:
            session.close()
    work.periods = periods
    if work.suppressed:
        work.cells_id = _cells_id(spec, work.identities, timezone=ws.timezone, person_key=work.person_key)
        if periods is not None and cached is not None:
            work.table = _merge_periods(_read_file(cached), work.table, periods)


_KEY_COUNTS: weakref.WeakKeyDictionary[Any, dict[str, dict | None]] = weakref.WeakKeyDictionary()
"""What :func:`_check_keys_name_no_one` counted, by engine session and query."""
KEYS_RULE = ("a cell's keys name no one: a dimension whose values are each one person's (an SSN, a surname, a "
             "case number) would list them as the keys of its cells, suppressed ones too")


def _check_keys_name_no_one(session: Any, work: _Work) -> None:
    """Refuse an aggregate grouped by a column nothing classifies whose values are, for most of
    its people, a person's own: held by no one else, at least k of them (the twenty-third review
    published 40 SSN-like numbers under the name ``ref`` as the keys of suppressed rows). Rare
    codes pass: most people share their codes. Counted on the input, in its engine, after the
    aggregate's own query; an input streamed once to that query (a connector's Arrow stream, not
    a file DuckDB reads itself) cannot be read again and is not counted."""
    spec, key = work.spec, work.person_key
    if not key or len(key) != 1 or work.threshold <= 0 or work.input_schema is None:
        return
    named = dict(spec.get("columns") or {})
    q = session.dialect.quote
    answers = _KEY_COUNTS.setdefault(session, {})  # the members of a group share their input and session

    def first_row(sql: str) -> dict | None:
        if sql not in answers:
            try:
                answers[sql] = session.run(sql, [], f"derivative {spec['name']}").to_pylist()[0]
            except LithotseError as exc:
                if "already been consumed" not in str(exc):
                    raise
                answers[sql] = None  # a stream read once, by the aggregate's own query: not counted
        return answers[sql]
    for column in spec.get("group_by", []):
        if not isinstance(column, str) or column not in work.input_schema.names or column in named or \
                work.roles.get("input", {}).get(column) not in (None, "value"):
            continue
        c, p = q(column), q(key[0])
        if work.table is not None and column in work.table.column_names:  # the cells hold every value
            if len(set(work.table.column(column).to_pylist())) < work.threshold:  # too few to be k people's
                continue
        else:
            values = first_row(f"SELECT approx_count_distinct({c}) AS n FROM {q('input')}")
            if values is None or int(values["n"] or 0) < work.threshold // 2:
                continue
        sql = (f"SELECT coalesce(sum(CASE WHEN people = 1 THEN 1 ELSE 0 END), 0) AS alone, "
               f"(SELECT count(DISTINCT {p}) FROM {q('input')} WHERE {c} IS NOT NULL) AS people "
               f"FROM (SELECT {c}, count(DISTINCT {p}) AS people FROM {q('input')} "
               f"WHERE {c} IS NOT NULL AND {p} IS NOT NULL GROUP BY {c}) AS v")
        row = first_row(sql)
        if row is None:
            continue
        alone, people = int(row["alone"] or 0), int(row["people"] or 0)
        if alone >= work.threshold and alone >= 0.8 * people:
            raise SpecError("group_by", f"derivative {spec['name']!r}: {column!r} holds a value no one else has "
                                        f"for {alone:,} of its {people:,} people, so its cells' keys (suppressed "
                                        "ones too) would list them; if it is a code, say so with \"columns\": "
                                        f"{{\"{column}\": \"code\"}}; rule: {KEYS_RULE}")


def _record_check(work: _Work, dialect: Dialect) -> RecordCheck | None:
    """The check counting a sql's rows against its inputs' records in the run that computes them
    (:func:`.kinds.sql.record_check`); where DuckDB cannot parse the sql, sql cells are refused
    and a row-level sql's rows are several, as how many rows it makes of a record is not known."""
    reads = {alias: json.dumps(item, sort_keys=True) for alias, item in spec_inputs(work.spec).items()}
    check = record_check(work.spec["sql"], reads, dialect=dialect)
    if check is None:
        if work.sql_cells:
            raise SpecError("sql", f"derivative {work.spec['name']!r}: DuckDB's parser cannot read its SQL, so its "
                                   f"cells cannot be counted against its inputs' records; rule: {ONE_CELL_RULE}")
        work.several = ["DuckDB's parser cannot read its SQL, so how many rows it makes of a record is not known"]
    return check


def _judge_rows(work: _Work, check: RecordCheck, table: pa.Table | None,
                held: Callable[[str], pa.Table]) -> None:
    """Count the rows a sql computed (``table``: its result, or the marks of the rows it wrote)
    against its inputs' records and judge them (:func:`_judge_counts`); rows that cannot be
    counted are several, and refused as cells."""
    try:
        counts = check.count(table, held)
    except duckdb.Error as exc:
        reason = f"its rows could not be counted against its inputs' records ({without_values(exc).splitlines()[0]})"
        if work.sql_cells:
            raise SpecError("sql", f"derivative {work.spec['name']!r}: {reason}; rule: {ONE_CELL_RULE}") from None
        work.several = [reason]
        return
    _judge_counts(work, check, counts)


def _judge_counts(work: _Work, check: RecordCheck, counts: tuple) -> None:
    """Refuse sql cells whose rows, counted, are not each one record of an input (a record in
    two cells, and two cells' difference is a hidden count); for a row-level sql, record why its
    rows may be several for one record (its ``privacy.several``)."""
    if work.sql_cells:
        counted = counted_inputs(work.spec["sql"], work.roles, work.counting.counted if work.counting else ())
        if not check.holds_each_once(counts, counted):
            raise SpecError("sql", f"derivative {work.spec['name']!r}: {_counted_records(check, counts)}, so a record "
                                   "is counted more than once, and two cells' difference can be a hidden count; "
                                   f"rule: {ONE_CELL_RULE}")
        return
    work.several = _several_reasons(work, check, counts)


def _several_reasons(work: _Work, check: RecordCheck, counts: tuple) -> list[str]:
    """Why a row-level sql's rows, counted (``counts`` of ``check``, in the run that wrote them),
    may be several for one record: none where they hold each record once."""
    if check.holds_each_once(counts, counted_inputs(work.spec["sql"], work.roles)):
        return []
    return [*several_rows(work.spec["sql"], work.roles)[0], _counted_records(check, counts)]


def _count_written(con: duckdb.DuckDBPyConnection, work: _Work, check: RecordCheck, marks: pa.Table | None) -> None:
    """Count the rows a row-level sql wrote, from their marks, against its inputs' records, and
    record the result in the version's ``privacy.several``: the rows counted are the rows
    published, whatever in the query could make two runs differ."""
    _judge_rows(work, check, marks, lambda sql: con.sql(sql).to_arrow_table())
    several = several_entries(work.spec, work.upstream, work.several)
    work.staged_privacy = {**work.staged_privacy, "several": several}
    if work.picks is not None:
        work.picks["several"] = several


def _counted_records(check: RecordCheck, counts: tuple) -> str:
    rows = int(counts[0])
    over = [f"{times:,} of {name}'s records" for name, times in check.records(counts) if times]
    missing = [name for i, name in enumerate(check.inputs) if int(counts[1 + 2 * i]) < rows]
    if not check.inputs:
        return (f"counted on the data, its {rows:,} rows are no input's records (a DISTINCT, a UNION or a grouping "
                "made them)")
    return (f"counted on the data, its {rows:,} rows hold " + ", ".join(over or ["no record twice"]) +
            " in more rows than their input" + (f" (and rows without a record of {', '.join(missing)})"
                                                 if missing else ""))


def _check_lookups(session: Any, work: _Work) -> None:
    """Refuse sql cells joined to a table that holds a value they are joined on more than once (a
    record matching two of its rows would be counted in two cells). Whether their rows are each
    one record of an input is counted in the run that computes them (:func:`_judge_counts`)."""
    name = work.spec["name"]
    for lookup in work.counting.lookups if work.counting is not None else ():
        held = session.run(lookup.sql(session.dialect), [], f"derivative {name}")
        if held.num_rows:
            columns = ", ".join(".".join(column) for column in lookup.columns)
            raise SpecError("sql", f"derivative {name!r}: {lookup.table} holds a value of {columns} "
                                   "in more than one row, so a record joined to it is counted in more than one "
                                   f"cell, and two cells' difference is a hidden count; rule: {ONE_CELL_RULE}")


def _adds_up(work: _Work, group: list[_Work]) -> bool:
    """Whether an aggregate's cells can be brought up to date from the rows its input gained and
    lost alone: counts only (whole numbers add up exactly; a mean or a float's sum does not), one
    of them of records (it says when a cell is left empty), no suppression in its group (that
    decides over distinct people, and its previous cells were not all published), and cells
    published as the query gives them (no column pseudonymized or de-identified)."""
    spec = work.spec
    measures = spec["measures"]
    return (spec["kind"] == "aggregate" and work.previous is not None and work.engine == "duckdb"
            and all(m["fn"] == "count" for m in measures) and any("column" not in m for m in measures)
            and not any(w.suppressed for w in group) and not patient_key_columns(spec)
            and not spec.get("deidentify"))


def _added_cells(session: EngineSession, ws: Workspace, catalog: Catalog, work: _Work,
                 schemas: dict[str, pa.Schema], periods: list[Any]) -> pa.Table | None:
    """The cells of ``periods`` as the full query gives them (in its order, without the internal
    counts, which nothing reads where no cell is suppressed): the previous version's, plus the
    cells of the versions newest now of the records the new objects hold, less the cells of the
    versions those had before (:data:`.recordindex.PLUS`, :data:`.recordindex.MINUS`): a query
    over those rows instead of every row of the touched periods. None when a previous cell was
    not published whole."""
    spec, previous = work.spec, work.previous
    assert previous is not None
    labels = {p.isoformat() for p in periods}
    before = [catalog.read_part(part["key"]) for label, part in sorted(previous.partitions.items()) if label in labels]
    # a part holds a cell per group of its period: read as Python values, its flags spare an update
    # importing pyarrow.compute (see _as_shape)
    if any(FLAG not in t.column_names or any(t.column(FLAG).to_pylist()) for t in before):
        return None
    con = session.con  # type: ignore[attr-defined]
    q = DUCKDB.quote
    query = KIND_MODULES["aggregate"].query(spec, schemas, timezone=ws.timezone, threshold=work.threshold,
                                            periods=periods, person_key=None)
    found = []
    con.execute('ALTER VIEW "input" RENAME TO __input_whole')
    try:
        for relation in (recordindex.PLUS, recordindex.MINUS):
            con.execute(f'CREATE VIEW "input" AS SELECT * FROM {relation}')
            try:
                found.append(session.run(query.sql, query.params, f"derivative {work.name}"))
            finally:
                con.execute('DROP VIEW "input"')
    finally:
        con.execute('ALTER VIEW __input_whole RENAME TO "input"')
    gained, lost = found
    keys = [PERIOD, *(dimension_alias(d) for d in spec.get("group_by", []))]
    measures = [m["as"] for m in spec["measures"]]
    records = next(m["as"] for m in spec["measures"] if "column" not in m)
    shape = gained.select(keys + measures).schema
    cells = [_as_shape(t.select(keys + measures), shape) for t in before]
    con.register("__cells_before", pa.concat_tables(cells) if cells else pa.Table.from_batches([], shape))
    con.register("__cells_gained", gained)
    con.register("__cells_lost", lost)
    listed = ", ".join(q(k) for k in keys)
    counts = ", ".join(q(m) for m in measures)
    try:
        merged = con.sql(
            f"SELECT {listed}, {', '.join(f'CAST(sum({q(m)}) AS BIGINT) AS {q(m)}' for m in measures)} FROM ("
            f"SELECT {listed}, {counts} FROM __cells_before UNION ALL SELECT {listed}, {counts} FROM __cells_gained "
            f"UNION ALL SELECT {listed}, {', '.join(f'-{q(m)} AS {q(m)}' for m in measures)} FROM __cells_lost) "
            f"GROUP BY {listed} HAVING sum({q(records)}) > 0 ORDER BY {DUCKDB.order([q(k) for k in keys])}"
        ).to_arrow_table()
    finally:
        for name in ("__cells_before", "__cells_gained", "__cells_lost"):
            con.unregister(name)
    return _as_shape(merged, shape)


def _as_shape(table: pa.Table, shape: pa.Schema) -> pa.Table:
    """``table`` cast to ``shape`` where its schema differs: a cast, even to the same types, imports
    ``pyarrow.compute`` (tens of ms of an update's second that nothing else in it needs)."""
    return table if table.schema.equals(shape, check_metadata=True) else table.cast(shape)


def _counted_by(work: _Work, group: list[_Work]) -> list[str] | None:
    """The person key an aggregate's cells count distinct people by: only where an aggregate of
    its group suppresses cells, the one decision that reads people; otherwise the internal count
    is of records, dropped unread as the cells are published (counting distinct people is most of
    the query's time over a large input)."""
    return work.person_key if any(w.suppressed for w in group) else None


def _keeps_input(ws: Workspace, work: _Work, differs: bool) -> bool:
    """Whether an aggregate keeps its input beside its version (see :mod:`.recordindex`): one
    stream whose records have a key (a keyless stream's rows stream into the query without being
    held, and its new objects are new rows whatever the old ones hold), no join, built on DuckDB,
    and not the outer of a counted difference (which queries the input again)."""
    inputs = spec_inputs(work.spec)
    if not (work.spec["kind"] == "aggregate" and work.engine == "duckdb" and list(inputs) == ["input"]
            and "source" in inputs["input"] and "join" not in work.spec and not differs):
        return False
    return bool(work.resolved["input"].read_key(ws))


def _load_kept(session: EngineSession, ws: Workspace, catalog: Catalog, work: _Work, progress: Progress,
               checks: IntegrityChecks, full: bool, unused: tuple[str, ...],
               by_period: dict | None) -> recordindex.KeptInput:
    """Load an aggregate's stream from its previous version's kept input and the new objects when
    that gives exactly what reading every object gives, else from every object (``added`` says
    which); with ``by_period`` (a spec), the periods of its cells to recompute after the former
    (None: all). What the work keeps next is recorded on it."""
    con = session.con  # type: ignore[attr-defined]
    previous, resolved = work.previous, work.resolved["input"]
    prior = None
    if (not full and previous is not None and previous.spec_hash == spec_hash(work.spec)
            and _same_reader(work.identities["input"], previous.inputs.get("input"))):
        prior = recordindex.previous_input(catalog, previous, resolved)
    loaded = None
    if prior is not None:
        try:
            loaded = recordindex.load(con, ws, catalog, "input", resolved, progress, checks, unused, prior,
                                      by_period, ws.timezone)
        except rowstream.NotIncremental:
            recordindex.discard(con)
            con.execute("DROP VIEW IF EXISTS input")
    if loaded is None:
        loaded = recordindex.load(con, ws, catalog, "input", resolved, progress, checks, unused, None)
    work.kept_reused, work.kept_key, work.kept_changes = loaded.reused, loaded.key, loaded.changes
    session.readable.extend(loaded.readable)  # type: ignore[attr-defined]
    return loaded


def _unused_by_all(group: list[_Work]) -> tuple[str, ...]:
    """Columns no aggregate of ``group`` reads (one table of the input serves them all, or the
    atoms' query computes every one's cells)."""
    unused = [set(_unused_columns(w.spec)) for w in group if w.spec["kind"] == "aggregate"]
    return tuple(sorted(set.intersection(*unused))) if unused else ()


def _unused_columns(spec: dict) -> tuple[str, ...]:
    """Input columns an aggregate can do without: a FHIR stream's whole ``resource`` text (most
    of its bytes), unless the spec names it."""
    if spec["kind"] != "aggregate":
        return ()
    named = json.dumps({k: v for k, v in spec.items() if k not in ("name", "input", "description")})
    return () if '"resource"' in named else ("resource",)


def _streams_rows(spec: dict) -> bool:
    """Row-level results (views, ``sql`` without ``count_column``) are written as they are
    computed rather than held as one table; aggregates and cells are small and stay whole.
    On DuckDB only: another engine hands its result back whole (see :mod:`.engines`)."""
    return spec["kind"] == "view" or (spec["kind"] == "sql" and not spec.get("count_column"))


def _compute_rows(ws: Workspace, catalog: Catalog, work: _Work, progress: Progress, full: bool) -> None:
    """Load the inputs and write the result of a row-level derivative straight to a staged
    Parquet part, pseudonymized and de-identified batch by batch (see :mod:`.rowstream`)."""
    spec, name = work.spec, work.name
    kind = KIND_MODULES[spec["kind"]]
    inputs = spec_inputs(spec)
    progress.update(f"building {name}")
    con = connect(ws)
    checks = IntegrityChecks()
    try:
        schemas: dict[str, pa.Schema] = {}
        rows_sql: tuple[str, list[Any]] | None = None
        view: rowstream.ViewLoad | None = None
        for alias, item in inputs.items():
            if "derivative" in item:
                schemas[alias] = load_derivative(con, catalog, alias, item["derivative"])
                continue
            work.resolved[alias].read_key(ws)
            if spec["kind"] == "view" and alias == "input":
                view = _load_view(con, ws, catalog, work, progress, checks, full)
                schemas[alias], rows_sql = view.schema, (view.sql, view.params)
                work.staged_index = {"read": view.read, "landings": view.landings,
                                     **({"key_hash": rowstream.HASHED_BY} if view.records else {})}
            else:
                schemas[alias] = load_stream(con, ws, alias, work.resolved[alias], progress, checks,
                                             rescanned=spec["kind"] == "sql")
        work.roles = {alias: input_roles(catalog, spec, item, schemas[alias], work.resolved.get(alias))
                      for alias, item in inputs.items()}
        work.upstream = {alias: input_picks(catalog, item) for alias, item in inputs.items()}
        if spec["kind"] == "sql":
            check_row_by_row(spec, schemas)  # again at the build: a spec may come by sync, unchecked
        lock_down(con)
        one_run = _record_check(work, DUCKDB) if spec["kind"] == "sql" else None
        progress.update(f"computing {name}")
        if rows_sql is None:
            query = kind.query(spec, schemas, timezone=ws.timezone, threshold=work.threshold,
                               periods=None, person_key=None)
            if query.cells or query.finish is not unchanged:
                raise LithotseError(f"derivative {name}: a {spec['kind']} query cannot be written row by row")
            rows_sql = (query.sql, query.params) if one_run is None else (one_run.query(), [])
        keys = patient_key_columns(spec)
        marks: list[pa.Table] = []

        def transform(table: pa.Table) -> pa.Table:
            if one_run is not None:  # each row's marks kept aside, to count the rows written
                marks.append(table.select(list(one_run.marks)) if one_run.marks else
                             pa.table({"rows": pa.nulls(table.num_rows)}))  # rows no record is in
                table = one_run.strip(table)
            table, work.staged_privacy = _disclose(ws, work, pseudonymize(ws, table, keys) if keys else table, keys)
            return table

        try:
            work.staged = rowstream.write_part(ws, con, rows_sql[0], rows_sql[1], f"derivative {name}", transform,
                                               view)
            if one_run is not None:
                _count_written(con, work, one_run, pa.concat_tables(marks) if marks else None)
            checks.finish()
        except BaseException:
            if work.staged is not None:
                work.staged.discard()
            work.staged = None
            checks.raise_found()
            raise
    finally:
        checks.close()
        if view is not None:
            view.close()
        con.close()


def _load_view(con: duckdb.DuckDBPyConnection, ws: Workspace, catalog: Catalog, work: _Work, progress: Progress,
               checks: IntegrityChecks, full: bool) -> rowstream.ViewLoad:
    """Read a view's stream: only the objects its previous version did not read, when that
    version was built from the same spec by the same reader (see :func:`.rowstream.prior_of`);
    else, or when the new versions cannot be added exactly, every object."""
    previous, resolved = work.previous, work.resolved["input"]
    prior = None
    if (not full and previous is not None and previous.spec_hash == spec_hash(work.spec)
            and _same_reader(work.identities["input"], previous.inputs.get("input"))
            and (previous.privacy or {}).get("reference_year") == reference_year(work.spec)):
        prior = rowstream.prior_of(catalog, previous, resolved)
    if prior is not None:
        try:
            view = rowstream.load_view(con, ws, work.spec, resolved, progress, checks, prior, catalog)
            work.added = True
            return view
        except rowstream.NotIncremental:
            rowstream.drop_relations(con, rowstream.VERSIONS, rowstream.READ, rowstream.ROWS, rowstream.NEWEST,
                                     "__newest_all", "__old_written", "__old_hit", "__old_records", "__superseded",
                                     "__hit", "__winners", "__new_keys")
    return rowstream.load_view(con, ws, work.spec, resolved, progress, checks)


def _may_count_differences(work: _Work, group: list[_Work]) -> bool:
    """Whether this aggregate may be the outer of a relation whose differences are counted from
    its input (a second query over it, so the input must be kept rather than streamed once)."""
    if work.spec["kind"] != "aggregate" or not any(w.suppressed for w in group):
        return False
    for other in group:
        if other is not work and other.spec["kind"] == "aggregate":
            rel = relate(other.spec, work.spec, {})
            if rel is not None and rel.difference:
                return True
    return False


def _counts_atoms(work: _Work, group: list[_Work]) -> bool:
    """Whether this aggregate's build counts the atoms of its group: the first one built of a
    group that suppresses, one that joins where some do (its build has a joined input at hand;
    it loads the others, see :func:`_load_joined_by_others`).
    Another query over the input, so a streamed input is materialized for it, as for a counted
    difference (a kept input is a table already)."""
    aggregates = [w for w in group if w.spec["kind"] == "aggregate"]
    return (work.spec["kind"] == "aggregate" and len(aggregates) > 1 and any(w.suppressed for w in group)
            and not any(w.counts_atoms for w in group if w is not work)
            and ("join" in work.spec or not any("join" in w.spec for w in aggregates)))


def _joins_apart(work: _Work, group: list[_Work]) -> bool:
    """Whether another aggregate of the group joins an input otherwise than this one."""
    return any("join" in w.spec and w.spec.get("join") != work.spec.get("join")
               for w in group if w is not work and w.spec["kind"] == "aggregate")


def _joined_relation(work: _Work, group: list[_Work], joined: dict) -> str:
    """The relation this aggregate's build reads ``joined`` from (see :func:`.atoms.joined_inputs`)."""
    specs = [w.spec for w in group if w.spec["kind"] == "aggregate"]
    own = work.spec["join"]["input"] if "join" in work.spec else None
    key = json.dumps(joined, sort_keys=True)
    return next(name for name, item in atoms.joined_inputs(specs, own).items()
                if json.dumps(item, sort_keys=True) == key)


def _load_joined_by_others(session: EngineSession, ws: Workspace, catalog: Catalog, work: _Work, group: list[_Work],
                           progress: Progress, checks: IntegrityChecks) -> dict[str, pa.Schema]:
    """The inputs other aggregates of the group join and this one does not, loaded for its count
    of the atoms and of the rows an inner that joins otherwise leaves out of it, under their names
    there (see :func:`.atoms.joined_inputs`): each in a table, with every column a member reads,
    read as the member's own build reads it."""
    specs = [w.spec for w in group if w.spec["kind"] == "aggregate"]
    own = work.spec["join"]["input"] if "join" in work.spec else None
    streams = {json.dumps(w.spec["join"]["input"], sort_keys=True): w.resolved["joined"]
               for w in group if "join" in w.spec and "joined" in w.resolved}
    schemas: dict[str, pa.Schema] = {}
    for alias, item in atoms.joined_inputs(specs, own).items():
        if alias == "joined" and own is not None:
            continue  # this build's own join, loaded already
        if "derivative" in item:
            schemas[alias] = session.load_derivative(catalog, alias, item["derivative"])
            continue
        resolved = streams[json.dumps(item, sort_keys=True)]
        resolved.read_key(ws)
        schemas[alias] = session.load_stream(ws, alias, resolved, progress, checks, materialize=True,
                                             unused=_unused_by_all(group))
    return schemas


def _count_atoms(session: EngineSession, ws: Workspace, work: _Work, group: list[_Work],
                 schemas: dict[str, pa.Schema], progress: Progress) -> Atoms:
    specs = [w.spec for w in group if w.spec["kind"] == "aggregate"]
    compiled = atoms.compile_atoms(specs, schemas, timezone=ws.timezone, dialect=session.dialect,
                                   own=work.spec["join"]["input"] if "join" in work.spec else None)
    progress.update(f"counting the cells {_spec_names(specs)} share")
    found = session.run(compiled.sql, compiled.params, f"derivatives {', '.join(s['name'] for s in specs)}", progress)
    return atoms.read_atoms(specs, found)


def _merge_periods(before: pa.Table, fresh: pa.Table, periods: list[Any]) -> pa.Table:
    """Cells of the periods not recomputed, from ``before``, with the ``fresh`` ones, in period order."""
    touched = pa.array(periods, pa.date32())
    kept = before.filter(pc.invert(pc.is_in(before.column(PERIOD), value_set=touched)))
    merged = pa.concat_tables([kept, fresh.cast(kept.schema)], promote_options="permissive")
    order = sorted(range(merged.num_rows), key=lambda i: (merged.column(PERIOD)[i].as_py(), i < kept.num_rows, i))
    return merged.take(pa.array(order, pa.int64()))


def _as_duckdb_types(ws: Workspace, work: _Work, schemas: dict[str, pa.Schema], result: pa.Table) -> pa.Table:
    """Another engine's cells with the column types DuckDB gives the same query (found over empty
    inputs), so the published Parquet is the same whichever engine built it."""
    con = interrupts.interruptible(duckdb.connect(":memory:"))
    con.execute("SET TimeZone = 'UTC'")  # as a build's connection (inputs.connect): instants come back in UTC
    try:
        for alias, schema in schemas.items():
            empty_relation(con, alias, schema)
        query = KIND_MODULES[work.spec["kind"]].query(work.spec, schemas, timezone=ws.timezone,
                                                      threshold=work.threshold, person_key=work.person_key)
        expected = con.sql(query.sql, params=query.params or None).to_arrow_table().schema
    finally:
        con.close()
    if expected.names != result.column_names:
        raise LithotseError(f"derivative {work.name}: the {work.engine} engine returned columns "
                            f"{result.column_names}, not {expected.names}")
    return result.cast(expected)


def _relate_as_outer(session: EngineSession, ws: Workspace, work: _Work, group: list[_Work],
                     schemas: dict[str, pa.Schema], progress: Progress,
                     counted: _Margins) -> None:
    """Relations in which this aggregate is the outer, and the rows each inner leaves out (counted
    here, where the input is loaded; ``counted`` keeps each margin query's answer for the session)."""
    assert work.table is not None
    types = {dimension_alias(d): work.table.schema.field(dimension_alias(d)).type
             for d in work.spec.get("group_by", [])}
    for other in group:
        if other is work or other.spec["kind"] != "aggregate":
            continue
        rel = relate(other.spec, work.spec, types)
        if rel is None:
            continue
        work.relations.append(rel)
        if not rel.difference:
            continue
        inner_joined = None
        if "join" in other.spec and other.spec.get("join") != work.spec.get("join"):
            # counted with the inner's join beside this one's (see _load_joined_by_others); a
            # difference not counted is taken as sensitive, which hid most cells beside a join
            inner_joined = _joined_relation(work, group, other.spec["join"]["input"])
            if inner_joined not in schemas:
                work.differences[(rel.inner, rel.outer)] = None
                continue
        outer_dims = {dimension_alias(d): d for d in work.spec.get("group_by", [])}
        compiled = compile_difference(work.spec, other.spec, schemas, dims=[outer_dims[b] for _, b in rel.common],
                                      grain=rel.grain, timezone=ws.timezone, person_key=work.person_key,
                                      dialect=session.dialect, inner_joined=inner_joined)
        work.differences[(rel.inner, rel.outer)] = _count_margin(session, compiled, rel.grain, len(rel.common),
                                                                 f"derivative {work.name}", progress, counted)
    _count_remainders(session, ws, work, group, schemas, types, progress, counted)


def _count_margin(session: EngineSession, compiled: Any, grain: str, dims: int, what: str,
                  progress: Progress, counted: _Margins) -> dict[tuple, tuple[int, int]]:
    """(records, people) per margin cell of a :func:`compile_difference` query; a query asked
    before in this session (the same text and parameters over the same table) is not run again."""
    key = (compiled.sql, tuple(compiled.params), grain, dims)
    if key in counted:
        return dict(counted[key])
    found = session.run(compiled.sql, compiled.params, what, progress)
    columns = ([PERIOD] if grain != "none" else []) + [f"__k{i}" for i in range(dims)]
    values = {c: found.column(c).to_pylist() for c in (*columns, CELL_COUNT, PEOPLE)}
    margin: dict[tuple, tuple[int, int]] = {}
    for i in range(found.num_rows):
        cell = ((values[PERIOD][i] if grain != "none" else None), *(values[f"__k{j}"][i] for j in range(dims)))
        margin[cell] = (int(values[CELL_COUNT][i]), int(values[PEOPLE][i]))
    counted[key] = margin
    return dict(margin)


def _count_remainders(session: EngineSession, ws: Workspace, work: _Work, group: list[_Work],
                      schemas: dict[str, pa.Schema], types: dict[str, pa.DataType], progress: Progress,
                      counted: _Margins) -> None:
    """Rows of this aggregate that no part of a partition whose whole it is keeps (see
    :class:`.relations.Partition`), per margin cell."""
    aggregates = [w.spec for w in group if w.spec["kind"] == "aggregate"]
    by_name = {s["name"]: s for s in aggregates}
    for p in partitions_of(work.spec, aggregates, types):
        # a part that joins otherwise still keeps the input rows of its values (a join drops none),
        # unless the column it splits on is one its join brings
        if p.covered or any(by_name[n].get("join") != work.spec.get("join")
                            and column_identity(by_name[n], p.column) != column_identity(work.spec, p.column)
                            for n in p.parts):
            continue
        kept = {**work.spec, "filters": [*work.spec.get("filters", []),
                                         {"column": p.column, "op": "in", "value": p.values}]}
        outer_dims = {dimension_alias(d): d for d in work.spec.get("group_by", [])}
        compiled = compile_difference(work.spec, kept, schemas, dims=[outer_dims[b] for b in p.common[work.name]],
                                      grain=p.grain, timezone=ws.timezone, person_key=work.person_key,
                                      dialect=session.dialect)
        work.remainders[p.key] = _count_margin(session, compiled, p.grain, len(p.common[work.name]),
                                               f"derivative {work.name}", progress, counted)


def _decide(ws: Workspace, catalog: Catalog, group: list[_Work], progress: Progress) -> dict[str, set[int]]:
    """Hidden rows of each aggregate of one input, decided over all of them. Minutes where most
    cells are hidden, so it says so, stage by stage with its counts, and a cancel stops it within
    a solver iteration (:func:`.bounds._run_checked`)."""
    if not any(w.suppressed and w.table is not None for w in group):
        return {}
    stage = _Stage(progress)
    with interruptible(progress.check), reporting(stage.detail) as stage.tally:
        stage.say(f"deciding which cells to hide in {_names(group)}")
        return _hidden_rows(ws, catalog, group, stage)


class _Stage:
    """What a decision is doing, said through ``progress``, with how far the audit's bounds are
    in it (:class:`.bounds.Tally`, counted from zero in each stage): the benchmark's fifth daily
    update at 1M rows decides for minutes, which one line left looking stuck."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.text = ""
        self.tally: Tally | None = None

    def say(self, text: str) -> None:
        """A new stage, whose counts start from zero."""
        self.text = text
        if self.tally is not None:
            self.tally.reset()
        self.progress.update(text)

    def detail(self, detail: str) -> None:
        self.progress.update(f"{self.text}: {detail}")


def _names(group: list[_Work]) -> str:
    """The group's names for a progress line (see :func:`_spec_names`)."""
    return _spec_names([w.spec for w in group])


def _spec_names(specs: list[dict], shown: int = 3) -> str:
    """Names for a progress line: a few, then how many more (a set of 20 aggregates would fill
    the line)."""
    names = sorted(spec["name"] for spec in specs)
    more = len(names) - shown
    return ", ".join(names) if more <= 1 else f"{', '.join(names[:shown])} and {more} more"


def _hidden_rows(ws: Workspace, catalog: Catalog, group: list[_Work], stage: _Stage) -> dict[str, set[int]]:
    """:func:`_decide`'s decision, once something in the group is suppressed."""
    cells = []
    for w in group:
        table = w.table if w.table is not None else w.published
        if w.spec["kind"] != "aggregate" or table is None:
            continue
        if _published_whole(w):
            assert w.table is not None and w.previous is not None and w.periods is not None
            table = _published_with(_previous_table(catalog, w), w.table, w.periods)
        subcounts = None
        if w.table is not None and w.threshold > 0 and w.input_schema is not None:
            flags = measures.flag_columns(w.spec, table, w.input_schema)
            measures.check_flags(w.spec, flags)
            subcounts = measures.subcounts(w.spec, w.roles.get("input", {}), w.person_key, flags)
        member = Cells.from_table(w.name, w.spec, w.threshold, table, subcounts)
        if w.table is not None and w.suppressed:
            w.carried = _carried_states(ws, catalog, w, table)
            if w.carried is not None:
                member.carry(w.carried)
        cells.append(member)
    present = {c.name for c in cells}
    rels, seen = [], set()
    differences: dict[tuple[str, str], dict[tuple, tuple[int, int | None]]] = {}
    for w in sorted(group, key=lambda w: w.name):
        for rel in w.relations:
            pair = frozenset((rel.inner, rel.outer))
            if rel.inner not in present or rel.outer not in present or pair in seen:
                continue
            seen.add(pair)
            rels.append(rel)
            found = w.differences.get((rel.inner, rel.outer))
            if found is not None:
                differences[(rel.inner, rel.outer)] = dict(found)
    frozen = [c for c in cells if c.k <= 0]
    for other in frozen:  # relations where a table that hides nothing is the outer
        for c in cells:
            if c is other or frozenset((c.name, other.name)) in seen:
                continue
            found_rel = relate(c.spec, other.spec, other.types)
            if found_rel is not None:
                seen.add(frozenset((c.name, other.name)))
                rels.append(found_rel)
    remainders = {key: dict(found) for w in group if w.name in present for key, found in w.remainders.items()}
    counted = next((w.atoms for w in group if w.atoms is not None), None)
    partial = [w.name for w in group
               if w.table is not None and w.periods is not None and not w.suppressed and not _published_whole(w)]
    passed = {fingerprint for w in group if w.carried is not None for fingerprint in w.carried.audited}
    audited: set[str] = set()
    over = Group(cells, rels, _with_unknown(differences, rels), remainders,
                 None if counted is None else counted.columns, partial,
                 atom_records=None if counted is None else counted.records)
    memo: dict = {}
    start: set[int] = set()

    def deciding() -> dict[str, set[int]]:
        """One decision; each after the first (more cells held, or released) over the same group,
        with the audit's models as the last one left them. A round after the versions read
        together held more starts from the last round's hidden cells: the decisions only grow,
        so the audit frees rows and keeps what it solved (a cell shown again would start it
        anew), and no complement moves between rounds; where that start is refused, the round
        decides from nothing as the first did."""
        audited.clear()
        try:
            if start:
                try:
                    return decide(over, ws.zero_cells, passed=passed, audited=audited, memo=memo, start=start)
                except Undecided:
                    start.clear()
            return decide(over, ws.zero_cells, passed=passed, audited=audited, memo=memo)
        finally:
            passed.update(audited)  # the next round (more held) passes the parts it leaves alone

    by_name = {c.name: c for c in cells}
    baselines: list[Moment] | None = None
    tried: set[tuple[str, int]] = set()
    # the model of every moment: what an earlier round answered or proved wide, and the rows its
    # smaller model left narrow (taken as narrow the first time: see complementary._bounds_unchanged_first)
    pinned_memo = TogetherMemo(take_merged_narrow=True)
    for round_number in range(MAX_PINNED_ROUNDS):
        if round_number:
            stage.say(f"deciding which cells to hide in {_names(group)} again, {len(tried)} more held "
                      f"(round {round_number + 1})")
        hidden = _deciding_with_releases(cells, deciding, ws.zero_cells)
        if not _revised_hidden(group, by_name, hidden, ws.zero_cells):
            break
        if baselines is None:
            baselines = _baselines(catalog, group)
            revisable = _revisable(ws, group)  # reads the stream's key: once, not per round
            changes_memo = [WideRows() for _moment in baselines]  # changes proven wide, per moment
        stage.say(f"checking {_names(group)} against {len(baselines)} earlier version(s) of the set "
                  f"(round {round_number + 1})")
        audits = [pinned_changes(cells, rels, hidden, moment.shown, ws.zero_cells, moment, revisable, changes_memo[n],
                                 pinned_memo) for n, moment in enumerate(baselines)]
        # the versions read two at a time first, to the end: each cell they narrow, the model of
        # every moment narrows too (it holds theirs), and it is the costly one (the benchmark's
        # third update at 1M rows: 10 of the 21 cells it narrowed, in a 355 s solve, were theirs)
        pinned = {cell for a in audits for cell in a.hide} - tried
        if not pinned:
            audits.append(pinned_round(cells, rels, hidden, baselines, ws.zero_cells, revisable, pinned_memo, tried))
            pinned = set(audits[-1].hide) - tried
        narrowed = [finding for a in audits for finding in a.narrowed]
        if not pinned:
            if narrowed:  # nothing new to hide (or hidden before and released since: shown elsewhere)
                raise _narrowed_change(narrowed[0], sorted(by_name))
            break
        tried |= pinned
        for name, i in pinned:
            by_name[name].held.add(i)
        start.update(over.offsets[name] + i for name, rows in hidden.items() for i in rows)
    else:
        raise LithotseError(f"publishing {', '.join(sorted(by_name))} would let the versions read together narrow a "
                            f"revised cell below its threshold after {MAX_PINNED_ROUNDS} rounds of hiding more; "
                            "rule: a revision by fewer than the threshold is held")
    for w in group:
        if w.name in by_name and w.carried is not None:
            w.held = len(w.carried.held & by_name[w.name].held)
        w.audited = set(audited)
    return hidden


def pinned_round(cells: list[Cells], rels: list, hidden: dict[str, set[int]], baselines: list[Moment],
                 zero_cells: str, revisable: bool, memo: TogetherMemo, tried: set[tuple[str, int]]) -> Pinned:
    """The model of every moment's answer in a round of a build's decision: where nothing new is
    left to hide for a row narrowed, and its smaller model took a row as narrow in this call (see
    :func:`.complementary._bounds_unchanged_first`), asked again: the whole model judges those
    rows before the build is refused."""
    taken = memo.taken_narrow()
    found = pinned_together(cells, rels, hidden, baselines, zero_cells, revisable, memo)
    if found.narrowed and not set(found.hide) - tried and memo.taken_narrow() > taken:
        taking, memo.take_merged_narrow = memo.take_merged_narrow, False  # rows proven wide may come back
        try:
            found = pinned_together(cells, rels, hidden, baselines, zero_cells, revisable, memo)
        finally:
            memo.take_merged_narrow = taking
    return found


MAX_PINNED_ROUNDS = 20
"""Rounds of hiding cells that bound a revised cell's change (:func:`.complementary.pinned_changes`);
each hides at least one more; a set still narrowed after them is refused."""


def _revised_hidden(group: list[_Work], cells: dict[str, Cells], hidden: dict[str, set[int]],
                    zero_cells: str) -> bool:
    """Whether a hidden cell of a table with an earlier version was shown before (held, or kept
    hidden since) or is small, or a cell hidden before is shown now: only then can the versions
    read together narrow something that tells about people (see :func:`.complementary.pinned_changes` and
    :func:`.complementary.pinned_together`)."""
    for w in group:
        carried = w.carried
        if carried is None or w.name not in cells:
            continue
        concealed = hidden.get(w.name, set())
        if any(carried.last_shown[i] is not None for i in concealed) or \
                concealed & primary(cells[w.name], zero_cells) or \
                any(h is not None and i not in concealed for i, h in enumerate(carried.last_hidden)):
            return True
    return False


def _narrowed_change(finding: Any, names: list[str]) -> LithotseError:
    where = ", ".join(f"{k}={v}" for k, v in finding.cell_info.items() if k != "derivative")
    cell = f"{finding.cell_info.get('derivative')}'s hidden cell ({where})"
    what = {"then": f"{cell} as an earlier version hid it", "now": cell}.get(finding.measure.rsplit(" ", 1)[-1],
                                                                           f"the change of {cell} since then")
    bounds = ("(the solver found no bounds: taken as narrow)" if finding.unresolved else
              f"to between {finding.lower + 0:g} and {finding.upper + 0:g}")
    return LithotseError(
        f"publishing {', '.join(names)} would let this version read with earlier ones narrow {what} {bounds} "
        f"({finding.measure}), and no other cell can be hidden to widen it (the others "
        "of its lines keep the state a reader holds); rule: a count of 1 to k-1, or a revision by fewer "
        "than the threshold, is not published; the published versions stay as they are while it stays "
        "below the threshold")


def _baselines(catalog: Catalog, group: list[_Work]) -> list[Moment]:
    """Every earlier moment a reader may hold the set at, oldest first: per table of the group,
    the counts its version of that moment published (a table not published yet is absent), pruned
    versions included (their remembered cells), with what its anchors recorded of the cells it
    hid. Read once per build, each kept version once (the previous one as the build already read
    it)."""
    histories: dict[str, tuple[_Work, list[Version]]] = {}
    read: dict[tuple[str, str], tuple[dict, dict, set, bool]] = {}
    for w in group:
        if w.table is not None or w.published is not None:
            kept = [v for v in catalog.versions(w.name) if _same_question(catalog, w, v)]
            ids = {v.version for v in kept}
            for old, table in catalog.remembered(w.name):
                if old.version not in ids and _same_question(catalog, w, old):
                    read[(w.name, old.version)] = (_shown_counts(table, w.spec), *_hidden_counts(catalog, w, old))
                    kept.append(old)
            histories[w.name] = (w, sorted(kept, key=lambda v: v.published_at or ""))
    # the tables of one decision are published a few milliseconds apart: together they are one
    # moment (a table of it read with another's earlier version mixes two states of the data)
    ends: dict[str, str] = {}
    for _w, kept in histories.values():
        for v in kept:
            decided = (v.privacy or {}).get("decided")
            if decided:
                ends[decided] = max(ends.get(decided, ""), v.published_at or "")
    moments = sorted({ends.get((v.privacy or {}).get("decided") or "", v.published_at or "")
                      for _w, kept in histories.values() for v in kept})
    out = []
    for moment in moments:
        then = Moment({})
        for name, (w, kept) in histories.items():
            published = [v for v in kept if (v.published_at or "") <= moment]
            if published:
                version = published[-1]
                if (name, version.version) not in read:
                    table = _previous_table(catalog, w) if w.previous is not None and \
                        version.version == w.previous.version else catalog.read(version)
                    read[(name, version.version)] = (_shown_counts(table, w.spec), *_hidden_counts(catalog, w, version))
                then.shown[name], then.hidden[name], then.small[name], exact = read[(name, version.version)]
                if not exact:
                    then.approximate.add(name)
        out.append(then)
    return out


def _revisable(ws: Workspace, group: list[_Work]) -> bool:
    """Whether the group's input may revise what it held: a keyed stream (a record landed
    again replaces its earlier version) or a derivative (rebuilt whole). A keyless stream's
    objects only add rows, so its counts never fall."""
    inputs = spec_inputs(group[0].spec)
    return "source" not in inputs["input"] or bool(group[0].resolved["input"].read_key(ws))


def _hidden_counts(catalog: Catalog, work: _Work, version: Version
                   ) -> tuple[dict[tuple, dict[tuple, Any]], set[tuple], bool]:
    """What ``version``'s anchors recorded of the cells it hid: each one's counts by quantity
    (as it was when hidden, for anchors stored before they held the value), the keys of those
    of 1 to k-1 people, and whether the counts are the values then (not when first hidden)."""
    anchors = _anchors_of(catalog, work, version)
    if anchors is None:
        return {}, set(), True
    exact = True

    def column(alias: str) -> list[Any] | None:
        nonlocal exact
        for prefix in (VALUE_ANCHOR, HIDDEN_ANCHOR):
            if prefix + alias in anchors.column_names:
                exact = exact and prefix == VALUE_ANCHOR
                return anchors.column(prefix + alias).to_pylist()
        return None
    coordinates = coordinates_of(work.spec, anchors.column_names)
    keys = list(zip(*(anchors.column(c).to_pylist() for c in coordinates), strict=True)) if coordinates \
        else [()] * anchors.num_rows
    counts = {q: found for q, alias in additive_quantities(work.spec).items()
              if q[0] == "count" and (found := column(alias)) is not None}
    people = column(PEOPLE)
    values: dict[tuple, dict[tuple, Any]] = {}
    small: set[tuple] = set()
    for r, key in enumerate(keys):
        if people is not None and people[r] is not None and 0 < people[r] < work.threshold:
            small.add(key)
        recorded = {q: c[r] for q, c in counts.items() if c[r] is not None}
        if recorded:
            values[key] = recorded
    return values, small, exact


def _deciding_with_releases(cells: list[Cells], deciding: Any, zero_cells: str) -> dict[str, set[int]]:
    while True:
        try:
            return deciding()
        except Undecided as refused:
            if not release(cells, refused, zero_cells):
                raise


def _remembered_columns(old: Version) -> list[str] | None:
    """What a version leaving the store keeps in the restricted store (its published counts,
    whatever its question: a reader may hold a copy, and the question may come back), or None
    for a version that published no cells."""
    spec = old.spec or {}
    if not old.published_at or old.area != "derived" or not _cells(spec) or old.privacy.get("class") == "deidentified":
        return None
    return _counted_columns(spec, old.columns)


def _counted_columns(spec: dict, columns: list[str]) -> list[str]:
    """The columns a reader compares across versions (:func:`_shown_counts`, the audit's
    :func:`.revisions.revised_cells`): the cells' keys, their counts and the flag; a sql cells
    table's every column (its keys are whichever are not numbers)."""
    if spec.get("kind") != "aggregate":
        return list(columns)
    counts = {alias for q, alias in additive_quantities(spec).items() if q[0] == "count"} | set(counts_of(spec))
    return [*coordinates_of(spec, columns), *(c for c in columns if c in counts), *([FLAG] if FLAG in columns else [])]


def _shown_counts(table: pa.Table, spec: dict) -> dict[tuple, dict[tuple, Any] | None]:
    """A published version's count of each cell, by its keys (None where hidden)."""
    coordinates = coordinates_of(spec, table.column_names)
    counts = {q: alias for q, alias in additive_quantities(spec).items()
              if q[0] == "count" and alias in table.column_names}
    flags = table.column(FLAG).to_pylist() if FLAG in table.column_names else [False] * table.num_rows
    keys = list(zip(*(table.column(c).to_pylist() for c in coordinates), strict=True)) if coordinates \
        else [()] * table.num_rows
    values = {q: table.column(alias).to_pylist() for q, alias in counts.items()}
    return {key: None if flags[r] else {q: values[q][r] for q in values} for r, key in enumerate(keys)}


def _carried_states(ws: Workspace, catalog: Catalog, work: _Work, table: pa.Table) -> Carried | None:
    """The states of ``table``'s rows the previous version of the same question fixes
    (:func:`carried_states`), comparing its records, people and published counts."""
    previous = _previous_cells(ws, catalog, work)
    if previous is None:
        return None
    return carried_states(table, coordinates_of(work.spec, table.column_names), _anchor_counts(work),
                          work.threshold, *previous, sizes=2)


def _anchor_counts(work: _Work) -> list[str]:
    return [CELL_COUNT, PEOPLE, *counts_of(work.spec, work.person_key)]


def _read_file(path: Path) -> pa.Table:
    """A Parquet file of this machine's, read as one file: ``pq.read_table`` sets up a dataset,
    whose module imports pandas (a third of a second)."""
    with pq.ParquetFile(path) as file:
        return file.read()


def _previous_cells(ws: Workspace, catalog: Catalog, work: _Work
                    ) -> tuple[pa.Table, pa.Table | None, pa.Table | None, pa.Table | None] | None:
    """The rows the previous version of the same question showed, those it hid (None when it
    left them out: sql cells), its unsuppressed cells where this machine kept them, and its
    anchors where they were stored."""
    compared = _compared(catalog, work)
    if compared is None:
        return None
    previous, published = compared
    kept_path = _cached_cells(ws, previous)
    kept = _read_file(kept_path) if kept_path is not None else None
    anchors = _anchors_of(catalog, work, previous)
    if (previous.privacy or {}).get("hidden") == HIDDEN_LEFT_OUT or FLAG not in published.column_names:
        return published, None, kept, anchors
    flags = published.column(FLAG)
    return published.filter(pc.invert(flags)), published.filter(flags), kept, anchors


def _anchors_of(catalog: Catalog, work: _Work, version: Version) -> pa.Table | None:
    """An earlier version's anchors, read once per build (the carried states and the moments a
    reader may hold both read the version compared with)."""
    if version.version not in work.anchors_read:
        work.anchors_read[version.version] = catalog.anchors(version)
    return work.anchors_read[version.version]


def _compared(catalog: Catalog, work: _Work) -> tuple[Version, pa.Table] | None:
    """The version a new one's cells are compared with, and its published table: the previous
    version where it asked the same question; else, where the question came back (a spec
    replaced and restored, a round trip through another class), the newest version of it a
    reader may still hold, kept or remembered (:meth:`.Catalog.remembered`); else None."""
    previous = work.previous
    if previous is not None and _same_question(catalog, work, previous):
        return previous, _previous_table(catalog, work)
    if work.returned is None:
        asked = [(v, None) for v in catalog.versions(work.name) if _same_question(catalog, work, v)]
        asked += [(v, t) for v, t in catalog.remembered(work.name) if _same_question(catalog, work, v)]
        if not asked:
            return None
        version, table = max(asked, key=lambda pair: pair[0].published_at or "")
        work.returned = (version, table if table is not None else catalog.read(version))
    return work.returned


def _previous_table(catalog: Catalog, work: _Work) -> pa.Table:
    """The previous version's published table, read once per build: deciding, carrying states
    and naming revisions all read it."""
    assert work.previous is not None
    if work.previous_table is None:
        work.previous_table = catalog.read(work.previous)
    return work.previous_table


def _same_question(catalog: Catalog, work: _Work, previous: Version) -> bool:
    """Whether ``previous`` was built for the question the work's spec asks (a version from before
    questions were recorded: for the same spec)."""
    recorded = (previous.privacy or {}).get("question")
    if recorded is None:
        return previous.spec_hash == spec_hash(work.spec)
    return recorded == _question_of(catalog, work)


def _question_of(catalog: Catalog, work: _Work) -> str:
    """The work's :func:`question`, found once per build (it reads the specs up the chain)."""
    if work.question is None:
        work.question = question(work.spec, catalog.find_spec)
    return work.question


def _cells_id(spec: dict, identities: dict, **more: Any) -> str:
    """The id of a version's unsuppressed cells kept on this machine: what they were counted from."""
    return hashlib.sha256(json.dumps({"spec": spec_hash(spec), "inputs": identities, "format": CELLS_FORMAT, **more},
                                     sort_keys=True).encode()).hexdigest()[:20]


def _published_whole(work: _Work) -> bool:
    """Whether a table that suppresses nothing, built for some periods, is decided over with its
    previous version's other periods (published as the query gives them: nothing pseudonymized
    or de-identified, whose published values are not the input's)."""
    return (work.table is not None and work.periods is not None and not work.suppressed
            and work.previous is not None and not patient_key_columns(work.spec) and not work.spec.get("deidentify"))


def _published_with(before: pa.Table, fresh: pa.Table, periods: list[Any]) -> pa.Table:
    """The cells a table that suppresses nothing publishes once an incremental build of some
    ``periods`` is out: the previous version's other periods with the ``fresh`` ones. Every one is
    public, and the others' suppression is decided over all of them (a reader adds up a year
    this build did not touch as well as one it did)."""
    if not before.num_rows:
        return fresh
    touched = pa.array(periods, pa.date32())
    kept = before.filter(pc.invert(pc.is_in(before.column(PERIOD), value_set=touched)))
    if not kept.num_rows:
        return fresh
    columns = [c for c in kept.column_names if c in fresh.column_names]
    return pa.concat_tables([kept.select(columns), fresh.select(columns).cast(kept.select(columns).schema)])


def _with_unknown(known: dict, rels: list[Relation]) -> dict:
    """Counted differences, and None (unknown: treated as sensitive) for the ones not counted."""
    return {**{(r.inner, r.outer): None for r in rels if r.difference}, **known}


def _publish(ws: Workspace, catalog: Catalog, work: _Work, hidden: set[int] | None) -> BuildResult:
    spec, name, previous, table = work.spec, work.name, work.previous, work.table
    fresh: dict[str, pa.Table] | None = None
    index: dict[str, Any] | None = None
    if work.staged is not None:
        schema, privacy, unsuppressed = work.staged.schema, work.staged_privacy, None
        area = work.disclosure.area
        written, chunks = {}, []
        for chunk in work.staged.chunks:
            label = rowstream.chunk_label(chunk.number)
            written[label] = rowstream.put_part(catalog.store_of(area), part_key(name, area, label, chunk.part.sha256),
                                                chunk.part)
            stored = {kind: rowstream.put_part(catalog.store_of("restricted"), index_key(name, kind, part.sha256),
                                             part)["key"] if part is not None else None
                    for kind, part in (("row_ids", chunk.row_ids), ("records", chunk.records))}
            chunks.append({"number": chunk.number, "label": label, **stored})
        for kept in work.staged.reused:
            written[rowstream.chunk_label(kept.number)] = kept.part
            chunks.append({"number": kept.number, "label": rowstream.chunk_label(kept.number),
                           "row_ids": kept.row_ids, "records": kept.records})
        if work.staged_index is not None and all(c["row_ids"] for c in chunks):
            index = {**work.staged_index, "chunk_records": rowstream.CHUNK_RECORDS,
                     "chunks": sorted(chunks, key=lambda c: c["number"])}
    else:
        assert table is not None
        unsuppressed = table
        if work.cells:
            table = publish_cells(table, [m["as"] for m in spec["measures"]], hidden or set())
            if work.suppressed:
                work.anchors = anchors_table(unsuppressed, coordinates_of(spec, unsuppressed.column_names),
                                             _anchor_counts(work), work.carried, hidden or set(), work.audited)
        if work.sql_cells:
            check_cells(name, table, work.tags)
            counted = table.num_rows
            table, work.anchors = suppress_cells(spec, table, work.threshold, ws.zero_cells,
                                                 _previous_cells(ws, catalog, work))
            work.left_out = counted - table.num_rows
            if work.threshold > 0:
                work.cells_id = _cells_id(spec, work.identities)
        keys = patient_key_columns(spec)
        if keys:
            table = pseudonymize(ws, table, keys)
        table, privacy = _disclose(ws, work, table, keys)
        if _cells(spec):
            privacy = {**privacy, "question": _question_of(catalog, work), "decided": work.decided}
        grain_split = spec["kind"] == "aggregate" and spec.get("grain", "none") != "none"
        fresh = _periods(table, grain_split)
        written = _write_parts(catalog, name, fresh, work.disclosure.area)
        schema = table.schema
    periods = work.periods
    if work.added:
        parts, status = written, "incremental"
    elif periods is not None and previous is not None and not work.suppressed:
        parts = {k: v for k, v in previous.partitions.items()
                 if k not in {p.isoformat() for p in periods}}
        parts.update(written)
        status = "incremental"
    else:
        parts = written
        status = "incremental" if periods is not None and previous is not None else "built"
        if previous is not None and periods is not None:
            written = {k: v for k, v in written.items() if previous.partitions.get(k, {}).get("key") != v["key"]}
    stats: dict[str, Any] = {"schema": _schema_hex(schema),
                             "recomputed_periods": None if periods is None else [p.isoformat() for p in periods]}
    if work.kept_input is not None:
        files = list(work.kept_input.reused)
        for landing, part in work.kept_input.written:
            placed = rowstream.put_part(catalog.store_of("restricted"), index_key(name, "input", part.sha256), part)
            if work.kept_input.hashed:
                placed["key_hash"] = rowstream.HASHED_BY
            files.append({"landing": landing, **placed})
        stats[recordindex.INDEX] = sorted(files, key=lambda f: (f["landing"], f["key"]))
    if spec["kind"] == "aggregate":
        stats["counts"] = "people" if work.person_key else "records"
        stats["counted_by"] = work.person_key
        if work.cells_id:
            stats["cells"] = work.cells_id
    elif work.counting is not None:
        stats["counts"] = work.counting.counts
        stats["counted_by"] = [work.counting.counted_by] if work.counting.counted_by else None
        if work.cells_id:
            stats["cells"] = work.cells_id
    elif spec["kind"] == "view":
        person = view_person_columns(spec)
        stats["person_key"] = person[:1] or None
        if index is not None:
            stats[rowstream.INDEX] = index
    elif spec["kind"] == "sql":
        stats["person_key"] = _sql_person_key(schema, privacy) or None
    built_as = work.vid
    work.vid = _version_of_rows(spec, work.vid, parts)
    if work.vid != built_as:
        stats["built_as"] = built_as
    version = Version(name=name, version=work.vid, spec_hash=spec_hash(spec), spec=spec, inputs=work.identities,
                      partitions=parts, columns=schema.names,
                      rows=sum(p["rows"] for p in parts.values()),
                      built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), stats=stats, privacy=privacy)
    whole = _whole_table(catalog, parts, fresh, schema) if fresh is not None and work.disclosure.published else None
    shown_before = (_previous_table(catalog, work) if work.disclosure.published and _cells(spec)
                    and work.threshold > 0 and previous is not None and previous.version != version.version
                    and _same_question(catalog, work, previous) else None)
    if work.anchors is not None:
        catalog.put_anchors(name, version.version, work.anchors)
    catalog.publish(version, remember=_remembered_columns)
    if work.cells_id and unsuppressed is not None:
        _keep_cells(ws, name, work.cells_id, unsuppressed)
    audit.record(ws, "publish", objects=sorted(p["key"] for p in parts.values()), derivative=name,
                 version=work.vid, status=status, rows=version.rows, disclosure=work.disclosure.kind)
    # a table of cells keeps no version of another question: it was decided apart from this one,
    # so their difference (all classes less one class) is not protected; a new question under a
    # new name is decided together with the old one instead
    warning: str | None = None
    try:
        pruned = catalog.prune(name, ws.keep_versions, question=privacy.get("question") if _cells(spec) else None,
                               remember=_remembered_columns)
    except (OSError, LithotseError) as exc:  # published all the same; what it would drop stays for a later build
        pruned, warning = [], f"older versions not pruned ({type(exc).__name__}: {without_values(exc)})"
    revised = 0
    if work.disclosure.published:
        shown = whole if whole is not None else catalog.read(version)
        get_plugin_manager().version_published(ws, version, shown)
        if shown_before is not None:
            revised = len(revised_cells(spec, work.threshold, shown_before, shown, work.person_key))
    else:
        get_plugin_manager().version_withdrawn(ws, name)
    return BuildResult(name, work.vid, status, version.rows, len(written), len(parts),
                       time.perf_counter() - work.started, pruned, revised=revised, held=work.held, warning=warning)


def _disclose(ws: Workspace, work: _Work, table: pa.Table, keys: list[str]) -> tuple[pa.Table, dict]:
    """The table as its class lets it out (a de-identification profile applied), and what the
    version records of it: its class and the role of every column."""
    spec, disclosure, roles = work.spec, work.disclosure, work.roles
    if work.aggregate_roles is not None:
        return table, describe(disclosure, {c: work.aggregate_roles.get(c) for c in table.column_names})
    if work.sql_cells:
        found = cell_roles(spec, table, roles)
        check_cell_keys(spec, found)
        check_own_picks(spec, table.schema, roles)
        return table, describe(disclosure, found, hidden=HIDDEN_LEFT_OUT, left_out=work.left_out)
    computed: dict[str, frozenset[str]] = {}
    columns = output_roles(spec, table.schema, roles, computed)
    if work.picks is None:
        work.picks = picks(spec, table.schema, roles, work.upstream, work.several)
    profile = spec.get("deidentify")
    if not profile:
        return table, describe(disclosure, columns, **work.picks)
    check_deidentified_picks(spec, work.picks)
    year = reference_year(spec)
    plan = deidentify.actions(profile, columns, {f.name: f.type for f in table.schema}, computed=computed)
    plan.update(_pseudonymized_plan(plan, keys))
    table, report = deidentify.apply(table, plan, reference_year=year or dt.date.today().year,
                                     pseudonymize=lambda t, cols: pseudonymize(ws, t, cols))
    report["pseudonymized"] = sorted(set(report["pseudonymized"]) | {k for k in keys if k in table.column_names})
    kept = {c: ("code" if plan[c] in ("year", "birth_year") else columns[c]) for c in table.column_names}
    return table, describe(disclosure, kept, profile=profile, reference_year=year, **report, **work.picks)


def _pseudonymized_plan(plan: dict[str, str], keys: list[str]) -> dict[str, str]:
    """What a profile does to the columns the build already replaced by their HMAC: a key stays a
    pseudonym; a pseudonym of anything else the profile would remove or generalise is removed, as
    Safe Harbor allows only re-identification codes not derived from the person's information, and
    a pseudonym cannot be cut down to a year or three ZIP digits."""
    out: dict[str, str] = {}
    for column in keys:
        action = plan.get(column)
        if action == "pseudonymize":
            out[column] = "keep"
        elif action is not None and action != "keep":
            out[column] = "remove"
    return out


def _build_unit(ws: Workspace, catalog: Catalog, specs: list[dict], progress: Progress,
                full: bool, engine: str | None = None, published: set[str] | None = None) -> list[BuildResult]:
    """Build one derivative, or the aggregates of one input together: suppression is decided over
    all of them, so the suppressed ones are up to date together or rebuilt together. An aggregate
    that suppresses nothing (``suppress_below`` 0) is rebuilt only when its own inputs change;
    its published cells still count in the decision. ``published`` collects the names of those
    published, as they are (a unit failing while publishing has published some)."""
    streams: dict[tuple[str, str], StreamInput] = {}
    group = [_resolve(ws, catalog, spec, streams) for spec in specs]
    for work in group:
        work.engine = engine_name(ws, work.spec, engine)
        work.vid = version_id(work.spec, work.identities, _privacy_context(ws, work, group))
    stale = [w for w in group if full or w.previous is None or built_as(w.previous) != w.vid]
    results = {w.name: BuildResult(w.name, w.previous.version, "up to date", w.previous.rows, 0,
                                   len(w.previous.partitions))
               for w in group if w not in stale and w.previous is not None}
    if not stale:
        return [results[w.name] for w in group]
    for work in stale:
        _check_decided_alone(ws, catalog, work.spec)
    try:
        plans = {w.name: _plan(ws, w, group, full) for w in stale}
        candidates = [w for w in stale if _shares_input(w, plans[w.name], group)]
        sharing = [w for w in candidates if w.engine == candidates[0].engine]
        if len(sharing) < 2:
            sharing = []
        for work in sharing:  # the first one keeps the input they share (see _load_shared_kept)
            plans[work.name] = replace(plans[work.name], keeps_input=False)
        if sharing:
            # before the others: one session at a time (a Spark server takes one build at a time,
            # and DuckDB's memory limit is per session)
            shared = _load_shared(ws, catalog, sharing, group, progress, full)
            try:
                for work in sharing:
                    _compute(ws, catalog, work, group, progress, full, plans[work.name], shared)
            finally:
                shared.session.close()
        for work in group:
            if work not in stale:
                if work.previous is not None and work.spec["kind"] == "aggregate":
                    work.published = catalog.read(work.previous)
            elif work not in sharing:
                _compute(ws, catalog, work, group, progress, full, plans[work.name])
        hidden = _decide(ws, catalog, group, progress)
        # named by what it publishes, so the same decision made again is the same moment and a
        # version's manifest does not change when it is built again
        decided = hashlib.sha256(json.dumps(sorted((w.name, w.vid) for w in stale)).encode()).hexdigest()[:20]
        for work in stale:
            work.decided = decided
        progress.update(f"writing {', '.join(w.name for w in stale)}")
        with progress.shielded():  # the unit's versions publish together; a cancel stops after them
            for work in stale:
                results[work.name] = _publish(ws, catalog, work, hidden.get(work.name))
                if published is not None:
                    published.add(work.name)
    finally:
        for work in group:
            if work.staged is not None:
                work.staged.discard()
            if work.kept_input is not None:
                work.kept_input.discard()
    return [results[w.name] for w in group]


def build(ws: Workspace, name: str, *, progress: Progress | None = None, full: bool = False,
          engine: str | None = None) -> BuildResult:
    """Build one derivative if its inputs or spec changed (with the aggregates sharing its input,
    see :func:`build_all`); publish the new version."""
    results = build_all(ws, [name], progress=progress, full=full, engine=engine)
    return next(r for r in results if r.name == name)


def dependency_order(specs: list[dict]) -> list[str]:
    """Names so that every derivative comes after the derivatives it reads."""
    by_name = {s["name"]: s for s in specs}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise SpecError("input", f"derivatives read each other in a cycle: {' → '.join(chain + [name])}")
        state[name] = 1
        for item in spec_inputs(by_name[name]).values():
            if "derivative" in item and item["derivative"] in by_name:
                visit(item["derivative"], chain + [name])
        state[name] = 2
        order.append(name)

    for name in sorted(by_name):
        visit(name, [])
    return order


ALONE_RULE = ("a sql cells table is decided alone: publish it from an input no other table publishes, "
              "or as an aggregate")
ONE_INPUT_RULE = ("tables of cells of one raw stream are decided together only when they read the same input: "
                  "publish both from the same input, then they are decided together")


class DecidedAlone(LithotseError):
    """Two tables of cells that would publish cells of the same rows without being decided
    together: sql cells cannot be put in the atoms model (:mod:`.atoms`), and aggregates are
    decided with the aggregates of their own input only, so one's hidden cells would be recovered
    by differencing the other's."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Differenced:
    """A published table of cells another one could be differenced with: its spec, the raw
    streams (``source/stream``) both count rows of, and the rule that keeps them apart."""

    spec: dict
    streams: list[str]
    rule: str


def sql_cells(spec: dict) -> bool:
    return spec.get("kind") == "sql" and bool(spec.get("count_column"))


def question(spec: dict, spec_of: Any, _seen: frozenset[str] = frozenset()) -> str:
    """What a table of cells asks, as a hash: its spec, the questions of the derivatives it reads
    (a row-level sql now keeping only ambulatory visits changes every aggregate over it), and how
    its hidden cells are shown. Versions of another question were decided apart from this one."""
    upstream = []
    for item in spec_inputs(spec).values():
        name = item.get("derivative")
        if name is None or name in _seen:
            continue
        other = spec_of(name)
        upstream.append(question(other, spec_of, _seen | {name}) if other is not None else f"missing:{name}")
    hidden = HIDDEN_LEFT_OUT if sql_cells(spec) else HIDDEN_FLAGGED
    return hashlib.sha256(json.dumps([spec_hash(spec), sorted(upstream), hidden]).encode()).hexdigest()[:20]


def _cells(spec: dict) -> bool:
    return spec.get("kind") == "aggregate" or sql_cells(spec)


def main_inputs(spec: dict) -> dict[str, dict]:
    """The inputs whose rows a spec's output rows come from: a sql's inputs, an aggregate's or a
    view's ``input`` (a join adds columns to its rows and keeps one row per row)."""
    if spec["kind"] == "sql":
        return dict(spec["inputs"])
    return {"input": spec["input"]}


def reached_streams(spec: dict, spec_of: Any, _seen: frozenset[str] = frozenset(), *,
                    main_only: bool = False) -> set[tuple[str, str]]:
    """The raw streams (source, stream) a spec reads, through its derivative inputs; with
    ``main_only`` the streams whose rows it counts (following no join)."""
    found: set[tuple[str, str]] = set()
    for item in (main_inputs(spec) if main_only else spec_inputs(spec)).values():
        if "derivative" not in item:
            found.add((item["source"], item["stream"]))
        elif item["derivative"] not in _seen:
            inner = spec_of(item["derivative"])
            if inner is not None:
                found |= reached_streams(inner, spec_of, _seen | {spec["name"]}, main_only=main_only)
    return found


def cells_kind(spec: dict) -> str:
    return "sql cells" if sql_cells(spec) else str(spec.get("kind"))


def input_label(spec: dict) -> str:
    """A spec's main inputs as the messages name them: ``derivative 'x'`` or ``source/stream``."""
    return ", ".join(f"derivative {item['derivative']!r}" if "derivative" in item
                     else f"{item['source']}/{item['stream']}" for item in main_inputs(spec).values())


def differenced_with(ws: Workspace, catalog: Catalog, spec: dict) -> list[Differenced]:
    """The published tables of cells ``spec`` could be differenced with, where one of the two
    hides cells: sql cells beside any table of cells reaching a raw stream it reaches (through
    any input), and aggregates of different inputs whose main inputs reach a common raw stream.
    Aggregates of the same input are decided together instead."""
    if not _cells(spec):
        return []
    found = []
    for name in catalog.names():
        current = catalog.current(name) if name != spec["name"] else None
        other = current.spec if current is not None else None
        if other is None or not _cells(other):
            continue
        if suppression_threshold(ws, spec) <= 0 and suppression_threshold(ws, other) <= 0:
            continue
        if sql_cells(spec) or sql_cells(other):
            rule, main_only = ALONE_RULE, False
        elif _input_key(spec) != _input_key(other):
            rule, main_only = ONE_INPUT_RULE, True
        else:
            continue
        shared = (reached_streams(spec, catalog.find_spec, main_only=main_only)
                  & reached_streams(other, catalog.find_spec, main_only=main_only))
        if shared:
            found.append(Differenced(other, sorted(f"{source}/{stream}" for source, stream in shared), rule))
    return found


def _check_decided_alone(ws: Workspace, catalog: Catalog, spec: dict) -> None:
    """Refuse to publish a table of cells beside a published one it could be differenced with
    (:func:`differenced_with`), unless neither hides a cell."""
    for pair in differenced_with(ws, catalog, spec):
        other = pair.spec
        inputs = (f" through different inputs ({input_label(spec)}; {input_label(other)})"
                  if pair.rule == ONE_INPUT_RULE else "")
        raise DecidedAlone(f"derivative {spec['name']!r}: {cells_kind(spec)} {spec['name']!r} and the published "
                           f"{cells_kind(other)} {other['name']!r} both count rows of "
                           f"{', '.join(pair.streams)}{inputs}, so one's hidden cells are the difference of the "
                           f"other's; rule: {pair.rule} (or set suppress_below 0 on both, when neither hides a cell)",
                           pair.rule)


def _input_key(spec: dict) -> str | None:
    """What groups aggregates for suppression: the exact input they read."""
    if spec["kind"] != "aggregate":
        return None
    return json.dumps(spec["input"], sort_keys=True)


def _read_together(specs: dict[str, dict], members: list[str], name: str) -> list[str]:
    """Wanted aggregates of one input that suppress nothing, built in one unit so that they may
    read the input once (see :func:`_shares_input`): those reading raw streams only. One that
    reads a derivative (its input, or a join) is built alone, after what it reads, and a failure
    there skips it alone."""
    def streams_only(n: str) -> bool:
        return all("source" in item for item in spec_inputs(specs[n]).values())

    if not streams_only(name):
        return [name]
    return [n for n in members if streams_only(n)]


def _decided_apart(ws: Workspace, specs: list[dict]) -> bool:
    """A unit of several aggregates that only read their input together: none suppresses, so
    each one's result stands alone (a failure is retried member by member)."""
    return len(specs) > 1 and not any(suppression_threshold(ws, spec) > 0 for spec in specs)


def _units(ws: Workspace, catalog: Catalog, specs: dict[str, dict], wanted: set[str]) -> list[list[str]]:
    """What to build, in dependency order: each wanted derivative, with every other aggregate of
    its input that is wanted or already published (the published set suppression covers) when
    one of them suppresses cells; wanted aggregates of one input that suppress nothing together
    (each decides alone, but they may read the input once)."""
    units: dict[str, list[str]] = {}
    unit_of: dict[str, str] = {}
    for name in sorted(wanted):
        key = _input_key(specs[name])
        if key is None:
            units[name], unit_of[name] = [name], name
            continue
        if name in unit_of:
            continue
        members = sorted(n for n, s in specs.items() if _input_key(s) == key
                         and (n in wanted or catalog.current(n) is not None))
        if not any(suppression_threshold(ws, specs[n]) > 0 for n in members):
            members = _read_together(specs, sorted(n for n in members if n in wanted and n not in unit_of), name)
        for n in members:
            unit_of[n] = name
        units[name] = members
    order = {n: i for i, n in enumerate(dependency_order(list(specs.values())))}
    needs: dict[str, set[str]] = {u: set() for u in units}
    for u, members in units.items():
        for n in members:
            for item in spec_inputs(specs[n]).values():
                dep = unit_of.get(item.get("derivative", ""))
                if dep is not None and dep != u:
                    needs[u].add(dep)
    done: list[str] = []
    pending = sorted(units, key=lambda u: min(order[n] for n in units[u]))
    while pending:
        ready = next((u for u in pending if needs[u] <= set(done)), pending[0])
        pending.remove(ready)
        done.append(ready)
    return [units[u] for u in done]


class BuildsFailed(LithotseError):
    """Some derivatives of a run could not be built (the others were): one refused derivative
    does not keep every other one of the workspace out of date."""

    def __init__(self, results: list[BuildResult]) -> None:
        self.results = results
        failed = [r for r in results if r.status in ("failed", "skipped")]
        built = len(results) - len(failed)
        super().__init__(f"{len(failed)} of {len(results)} derivatives not built ({built} built or up to date): "
                         + "; ".join(f"{r.name}: {r.status}: {r.error}" for r in failed))


def build_all(ws: Workspace, names: list[str] | None = None, *, progress: Progress | None = None,
              full: bool = False, engine: str | None = None) -> list[BuildResult]:
    """Build the named derivatives (all without names), inputs first; ``engine`` overrides each
    spec's engine for this run (see :mod:`.engines`). The engine does not enter the version id:
    every engine computes the same cells.

    A derivative that cannot be built (a refusal, a bad spec, an input that fails to read) does
    not stop the others: those that read it are skipped, the rest are built, and then
    :class:`BuildsFailed` names each one not built. A run of one derivative (with the aggregates
    decided with it) raises its error as it is; cancelling stops the run."""
    catalog = Catalog(ws)
    specs = {spec["name"]: spec for spec in catalog.specs()}
    for name in names or []:
        if name not in specs:
            raise NotFound.unknown("derivative", name, set(specs), "defined")
    wanted = set(names) if names else set(specs)
    progress = progress or Progress()
    results: list[BuildResult] = []
    units = _units(ws, catalog, specs, wanted)
    failed_after: set[str] = set()  # published by a unit that failed after publishing them
    try:
        return _build_units(ws, catalog, specs, units, progress, full, engine, results, failed_after)
    except Exception as exc:
        # what units published before the cancel stays: named, so the cancel does not deny it
        built = [f"{r.name} (version {r.version})" for r in results if r.status in ("built", "incremental")]
        built += [f"{name} (version {current.version})" for name in sorted(failed_after)
                  if (current := catalog.current(name)) is not None]
        committed = [f"the build of {', '.join(built)}"] if built else []
        if isinstance(exc, Cancelled):
            raise Cancelled([*committed, *exc.committed]) from None
        if progress.cancelled and interrupted(exc):
            raise Cancelled(committed) from exc
        raise


def _build_units(ws: Workspace, catalog: Catalog, specs: dict[str, dict], units: list[list[str]],
                 progress: Progress, full: bool, engine: str | None, results: list[BuildResult],
                 failed_after: set[str]) -> list[BuildResult]:
    """:func:`build_all`'s run over its units, in order, adding to ``results`` as each ends, and
    to ``failed_after`` what a unit that failed had published before."""
    not_built: dict[str, str] = {}
    for unit in units:
        missing = sorted({item["derivative"] for n in unit for item in spec_inputs(specs[n]).values()
                          if item.get("derivative") in not_built})
        if missing:
            reason = f"it reads {', '.join(missing)}, which was not built"
            results.extend(BuildResult(n, "", "skipped", error=reason) for n in unit)
            not_built.update(dict.fromkeys(unit, reason))
            continue
        apart = _decided_apart(ws, [specs[n] for n in unit])
        pending = [unit]
        published: set[str] = set()  # by a try of the whole unit that then failed
        while pending:
            part = pending.pop(0)
            try:
                built = _build_unit(ws, catalog, [specs[n] for n in part], progress, full, engine,
                                    published if len(part) > 1 else None)
                # the retry one by one finds what the failed try published up to date: this run built it
                results.extend(replace(r, status="built") if r.status == "up to date" and r.name in published
                               else r for r in built)
            except Cancelled:
                raise
            except LithotseError as exc:
                failed_after |= published
                progress.check()  # a failure a cancel caused (an interrupted query) is the cancel
                if apart and len(part) > 1:
                    pending = [[n] for n in part]  # one by one: the others built, the failure its own
                    continue
                if len(units) == 1 and not apart:
                    raise
                results.extend(BuildResult(n, "", "failed", error=str(exc)) for n in part)
                not_built.update(dict.fromkeys(part, str(exc)))
            finally:
                release_freed_memory()
    if not_built:
        raise BuildsFailed(results)
    return results


def build_affected(ws: Workspace, source: str, streams: list[str], *,
                   progress: Progress | None = None) -> list[BuildResult]:
    """Rebuild derivatives reading these streams, then the derivatives reading those."""
    specs = Catalog(ws).specs()
    affected: set[str] = set()
    changed = True
    while changed:
        changed = False
        for spec in specs:
            if spec["name"] in affected:
                continue
            for item in spec_inputs(spec).values():
                hit = (item.get("source") == source and item.get("stream") in streams) or \
                    item.get("derivative") in affected
                if hit:
                    affected.add(spec["name"])
                    changed = True
                    break
    return build_all(ws, sorted(affected), progress=progress) if affected else []
