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
publish identifiers, ``sql`` cells read their inputs' identifiers as tokens and are suppressed,
de-identification profiles are applied, and row-level versions are written to the restricted
store. Publishing moves CURRENT, then, for aggregates and de-identified versions only, calls
the ``lithotse_version_published`` hook with the version's table, so the L3 cache (a built-in
plugin) and any other listener get the rows without reading them back; row-level versions are
never handed to a listener.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import audit
from ..errors import LithotseError, NotFound
from ..plugins import get_plugin_manager
from ..progress import Progress
from ..raw.verify import IntegrityChecks
from ..storage import PreconditionFailed
from ..workspace import Workspace
from . import deidentify
from .catalog import Catalog, Version, part_key
from .compile import DUCKDB, PERIOD, period_query
from .disclosure import (
    Disclosure,
    cell_roles,
    check_aggregate,
    check_cells,
    classify,
    describe,
    mask_inputs,
    output_roles,
    suppress_cells,
)
from .inputs import (
    StreamInput,
    connect,
    input_identity,
    input_roles,
    load_derivative,
    load_stream,
    lock_down,
    resolve_stream,
)
from .kinds import KIND_MODULES
from .pseudonymize import patient_key_columns, pseudonymize
from .spec import SpecError, spec_hash, spec_inputs, validate_spec

BUILD_FORMAT = "2"


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

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        if self.status == "up to date":
            return f"derivative {self.name}: up to date (version {self.version})"
        return (f"derivative {self.name}: {self.status} version {self.version}, {self.rows} rows, "
                f"{self.partitions_written}/{self.partitions_total} partitions written "
                f"in {self.seconds:.2f}s")


def version_id(spec: dict, identities: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """``extra``: anything else the result depends on (a de-identification's reference year)."""
    content: dict[str, Any] = {"spec": spec_hash(spec), "inputs": identities, "format": BUILD_FORMAT}
    if extra:
        content["extra"] = extra
    blob = json.dumps(content, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def reference_year(spec: dict) -> int | None:
    """The year Safe Harbor measures ages over 89 against (today's), for specs it applies to."""
    return dt.date.today().year if spec.get("deidentify") == "safe-harbor" else None


def suppression_threshold(ws: Workspace, spec: dict) -> int:
    value = spec.get("suppress_below")
    return ws.suppress_below if value is None else int(value)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], what: str) -> pa.Table:
    try:
        return con.sql(sql, params=params or None).to_arrow_table()
    except duckdb.Error as exc:
        raise LithotseError(f"{what}: {exc}") from None


def _periods(table: pa.Table, grain_split: bool) -> dict[str, pa.Table]:
    """The table cut into its parts: one per period (label: its first day), or one ``all``."""
    if not grain_split:
        return {"all": table}
    if not table.num_rows:
        return {}
    column = table.column(PERIOD)
    return {v.isoformat(): table.filter(pc.equal(column, pa.scalar(v, pa.date32())))
            for v in sorted(pc.unique(column).to_pylist())}


def _write_parts(catalog: Catalog, name: str, groups: dict[str, pa.Table], area: str) -> dict[str, dict]:
    """One zstd Parquet file per part, in the area of the version's class; content-addressed, create-only."""
    parts: dict[str, dict] = {}
    store = catalog.store_of(area)
    for label, part in groups.items():
        buf = io.BytesIO()
        pq.write_table(part, buf, compression="zstd")
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        key = part_key(name, area, label, sha)
        try:
            store.put_bytes(key, data, if_none_match=True)
        except PreconditionFailed:
            pass
        parts[label] = {"key": key, "rows": part.num_rows, "bytes": len(data)}
    return parts


def _whole_table(catalog: Catalog, parts: dict[str, dict], fresh: dict[str, pa.Table],
                 schema: pa.Schema) -> pa.Table:
    """The version's table as :meth:`Catalog.read` gives it: parts in label order, those just
    computed from memory, those kept from the previous version read from L2."""
    tables = [fresh[label] if label in fresh else catalog.read_part(parts[label]["key"])
              for label in sorted(parts)]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="permissive")


def _schema_hex(schema: pa.Schema) -> str:
    return schema.serialize().to_pybytes().hex()


def _same_reader(current: dict, previous: dict | None) -> bool:
    """Whether a stream input is still read by the same connector name and version."""
    return previous is not None and all(current.get(k) == previous.get(k)
                                        for k in ("source", "stream", "connector", "connector_version"))


def _touched_periods(con: duckdb.DuckDBPyConnection, ws: Workspace, spec: dict, schema: pa.Schema,
                     resolved: StreamInput, previous: Version) -> list[Any] | None:
    """Periods that new landings can change, or None when a full rebuild is needed."""
    old = {tuple(x) for x in previous.inputs.get("input", {}).get("objects", [])}
    new = {tuple(x) for x in (list(t) for t in resolved.identities)}
    if not old <= new:
        return None
    fresh_ids = [m.id for m in resolved.manifests if (m.sha256, m.range_from, m.range_to) not in old]
    con.register("__fresh", pa.table({"id": pa.array(fresh_ids, pa.string())}))
    con.execute("CREATE TABLE __fresh_ids AS SELECT id FROM __fresh")
    con.unregister("__fresh")
    q = DUCKDB.quote
    landed = q("input__landed")
    condition = "_landing_id IN (SELECT id FROM __fresh_ids)"
    key = resolved.key or (["resourceType", "id"] if "resource" in schema.names else [])
    if key:
        cols = ", ".join(q(k) for k in key)
        condition = f"({cols}) IN (SELECT ({cols}) FROM {landed} WHERE {condition})"
    landed_schema = con.sql(f"SELECT * FROM {landed} LIMIT 0").to_arrow_table().schema
    compiled = period_query(spec, landed_schema, landed, condition, timezone=ws.timezone)
    return [row[0] for row in con.execute(compiled.sql, compiled.params).fetchall()]


def build(ws: Workspace, name: str, *, progress: Progress | None = None, full: bool = False) -> BuildResult:
    """Build one derivative if its inputs or spec changed; publish the new version."""
    catalog = Catalog(ws)
    return _build(ws, catalog, catalog.spec(name), progress or Progress(), full)


def _build(ws: Workspace, catalog: Catalog, spec: dict, progress: Progress, full: bool) -> BuildResult:
    started = time.perf_counter()
    name = validate_spec(spec)["name"]
    kind = KIND_MODULES[spec["kind"]]
    disclosure = classify(spec, catalog.find_spec)
    inputs = spec_inputs(spec)
    resolved = {alias: resolve_stream(ws, item["source"], item["stream"], with_key=False)
                for alias, item in inputs.items() if "source" in item}
    identities = {alias: input_identity(ws, catalog, item, resolved.get(alias))
                  for alias, item in inputs.items()}
    year = reference_year(spec)
    vid = version_id(spec, identities, {"reference_year": year} if year else None)
    previous = catalog.current(name)
    if previous is not None and previous.version == vid and not full:
        return BuildResult(name, vid, "up to date", previous.rows, 0, len(previous.partitions))
    progress.update(f"building {name}")
    con = connect(ws)
    checks = IntegrityChecks()
    try:
        schemas: dict[str, pa.Schema] = {}
        grain_split = spec["kind"] == "aggregate" and spec.get("grain", "none") != "none"
        incremental = (grain_split and not full and previous is not None
                       and previous.spec_hash == spec_hash(spec) and "source" in inputs["input"]
                       and _same_reader(identities["input"], previous.inputs.get("input"))
                       and all(identities[a] == previous.inputs.get(a) for a in inputs if a != "input"))
        for alias, item in inputs.items():
            if "derivative" in item:
                schemas[alias] = load_derivative(con, catalog, alias, item["derivative"])
            else:
                resolved[alias].read_key(ws)
                schemas[alias] = load_stream(con, ws, alias, resolved[alias], progress, checks,
                                             materialize=incremental and alias == "input")
        roles = {alias: input_roles(catalog, spec, item, schemas[alias]) for alias, item in inputs.items()}
        aggregate_roles = check_aggregate(spec, roles) if spec["kind"] == "aggregate" else None
        cells = spec["kind"] == "sql" and bool(spec.get("count_column"))
        tags = mask_inputs(con, roles) if cells else {}
        periods = None
        if incremental and previous is not None:
            periods = _touched_periods(con, ws, spec, schemas["input"], resolved["input"], previous)
        lock_down(con)
        progress.update(f"computing {name}")
        threshold = suppression_threshold(ws, spec)
        try:
            query = kind.query(spec, schemas, timezone=ws.timezone, threshold=threshold, periods=periods)
            table = query.finish(_run(con, query.sql, query.params, f"derivative {name}"))
        except LithotseError:
            checks.raise_found()
            raise
        checks.finish()
        if cells:
            check_cells(name, table, tags)
            table = suppress_cells(spec, table, threshold)
        keys = patient_key_columns(spec)
        if keys:
            table = pseudonymize(ws, table, keys)
        table, privacy = _disclose(ws, spec, disclosure, table, roles, aggregate_roles, keys, year)
    finally:
        checks.close()
        con.close()
    progress.update(f"writing {name}")
    fresh = _periods(table, grain_split)
    written = _write_parts(catalog, name, fresh, disclosure.area)
    if periods is not None and previous is not None:
        parts = {k: v for k, v in previous.partitions.items()
                 if k not in {p.isoformat() for p in periods}}
        parts.update(written)
        status = "incremental"
    else:
        parts = written
        status = "built"
    version = Version(name=name, version=vid, spec_hash=spec_hash(spec), spec=spec, inputs=identities,
                      partitions=parts, columns=table.column_names,
                      rows=sum(p["rows"] for p in parts.values()),
                      built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      stats={"schema": _schema_hex(table.schema),
                             "recomputed_periods": None if periods is None else
                             [p.isoformat() for p in periods]},
                      privacy=privacy)
    whole = _whole_table(catalog, parts, fresh, table.schema)
    catalog.publish(version)
    audit.record(ws, "publish", objects=sorted(p["key"] for p in parts.values()), derivative=name,
                 version=vid, status=status, rows=version.rows, disclosure=disclosure.kind)
    pruned = catalog.prune(name, ws.keep_versions)
    if disclosure.published:
        get_plugin_manager().version_published(ws, version, whole)
    else:
        get_plugin_manager().version_withdrawn(ws, name)
    return BuildResult(name, vid, status, version.rows, len(written), len(parts),
                       time.perf_counter() - started, pruned)


def _disclose(ws: Workspace, spec: dict, disclosure: Disclosure, table: pa.Table,
              roles: dict[str, dict[str, str | None]], aggregate_roles: dict[str, str | None] | None,
              keys: list[str], year: int | None) -> tuple[pa.Table, dict]:
    """The table as its class lets it out (a de-identification profile applied), and what the
    version records of it: its class and the role of every column."""
    if aggregate_roles is not None:
        return table, describe(disclosure, {c: aggregate_roles.get(c) for c in table.column_names})
    if spec["kind"] == "sql" and spec.get("count_column"):
        return table, describe(disclosure, cell_roles(spec, table, roles))
    columns = output_roles(spec, table.schema, roles)
    profile = spec.get("deidentify")
    if not profile:
        return table, describe(disclosure, columns)
    plan = deidentify.actions(profile, columns, {f.name: f.type for f in table.schema})
    plan.update(_pseudonymized_plan(plan, keys))
    table, report = deidentify.apply(table, plan, reference_year=year or dt.date.today().year,
                                     pseudonymize=lambda t, cols: pseudonymize(ws, t, cols))
    report["pseudonymized"] = sorted(set(report["pseudonymized"]) | {k for k in keys if k in table.column_names})
    kept = {c: ("code" if plan[c] in ("year", "birth_year") else columns[c]) for c in table.column_names}
    return table, describe(disclosure, kept, profile=profile, reference_year=year, **report)


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


def build_all(ws: Workspace, names: list[str] | None = None, *, progress: Progress | None = None,
              full: bool = False) -> list[BuildResult]:
    catalog = Catalog(ws)
    specs = {spec["name"]: spec for spec in catalog.specs()}
    for name in names or []:
        if name not in specs:
            raise NotFound.unknown("derivative", name, set(specs), "defined")
    wanted = set(names) if names else None
    progress = progress or Progress()
    return [_build(ws, catalog, specs[n], progress, full) for n in dependency_order(list(specs.values()))
            if wanted is None or n in wanted]


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
