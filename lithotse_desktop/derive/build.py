"""Building derivatives: inputs → DuckDB → suppression → Parquet parts → published version.

A version id is a hash of the spec and the exact inputs read (raw objects with their ranges and
the name and version of the connector reading them, or input derivatives' versions), so the
same inputs give the same version on any machine, an up-to-date derivative is not rebuilt, and
a changed connector never leaves a version that claims to be current. Every raw object is
hashed as it is read and compared with its landed sha256 before anything is published.
Aggregates with a time grain rebuild incrementally: when only new landings were added, just
the periods those records (and older records with the same keys) fall in are recomputed; the
others are reused from the previous version.
"""

from __future__ import annotations

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
from ..progress import Progress
from ..raw.verify import IntegrityChecks
from ..storage import PreconditionFailed
from ..workspace import Workspace
from .catalog import Catalog, Version
from .compile import DUCKDB, PERIOD, compile_aggregate, period_query
from .inputs import (StreamInput, connect, input_identity, load_derivative, load_stream, lock_down,
                     resolve_stream)
from .pseudonymize import patient_key_columns, pseudonymize
from .spec import SpecError, spec_hash, spec_inputs, validate_spec
from .suppress import apply_suppression

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


def version_id(spec: dict, identities: dict[str, Any]) -> str:
    blob = json.dumps({"spec": spec_hash(spec), "inputs": identities, "format": BUILD_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def suppression_threshold(ws: Workspace, spec: dict) -> int:
    value = spec.get("suppress_below")
    return ws.suppress_below if value is None else int(value)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], what: str) -> pa.Table:
    try:
        return con.sql(sql, params=params or None).to_arrow_table()
    except duckdb.Error as exc:
        raise LithotseError(f"{what}: {exc}") from None


def check_sql(sql: str) -> str:
    """A single read-only SELECT, or a SpecError naming the ``sql`` field."""
    try:
        statements = duckdb.connect(":memory:").extract_statements(sql)
    except duckdb.Error as exc:
        raise SpecError("sql", f"does not parse: {exc}") from None
    if len(statements) != 1:
        raise SpecError("sql", f"must be exactly one statement, found {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise SpecError("sql", f"must be a SELECT, not {statements[0].type.name}")
    return sql.strip().rstrip(";")


def _view_sql(spec: dict) -> tuple[str, list[Any]]:
    from .sof import compile_view

    try:
        return compile_view(spec["view"], "(SELECT CAST(resource AS JSON) AS resource FROM \"input\")")
    except Exception as exc:
        raise SpecError("view", str(exc)) from None


def _query(spec: dict, ws: Workspace, con: duckdb.DuckDBPyConnection, schemas: dict[str, pa.Schema],
           periods: list[Any] | None) -> pa.Table:
    name = spec["name"]
    kind = spec["kind"]
    if kind == "aggregate":
        compiled = compile_aggregate(spec, schemas, timezone=ws.timezone, periods=periods)
        table = _run(con, compiled.sql, compiled.params, f"derivative {name}")
        return apply_suppression(table, compiled.dimensions, compiled.measures,
                                 suppression_threshold(ws, spec))
    if kind == "view":
        if "resource" not in schemas["input"].names:
            raise SpecError("input", "a view needs a FHIR stream (a 'resource' column)")
        sql, params = _view_sql(spec)
        return _run(con, sql, params, f"derivative {name}")
    return _run(con, f"SELECT * FROM ({check_sql(spec['sql'])})", [], f"derivative {name}")


def _write_parts(catalog: Catalog, name: str, table: pa.Table, grain_split: bool) -> dict[str, dict]:
    """One zstd Parquet file per period (or one ``all`` part); content-addressed, create-only."""
    parts: dict[str, dict] = {}
    if grain_split and table.num_rows:
        values = pc.unique(table.column(PERIOD)).to_pylist()
        groups = [(v.isoformat(), table.filter(pc.equal(table.column(PERIOD), pa.scalar(v, pa.date32()))))
                  for v in sorted(values)]
    elif grain_split:
        groups = []
    else:
        groups = [("all", table)]
    for label, part in groups:
        buf = io.BytesIO()
        pq.write_table(part, buf, compression="zstd")
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        key = f"derived/{name}/parts/period={label}/{sha}.parquet"
        try:
            catalog.store.put_bytes(key, data, if_none_match=True)
        except PreconditionFailed:
            pass
        parts[label] = {"key": key, "rows": part.num_rows, "bytes": len(data)}
    return parts


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
    progress = progress or Progress()
    started = time.perf_counter()
    catalog = Catalog(ws)
    spec = validate_spec(catalog.spec(name))
    inputs = spec_inputs(spec)
    identities = {alias: input_identity(ws, catalog, item) for alias, item in inputs.items()}
    vid = version_id(spec, identities)
    previous = catalog.current(name)
    if previous is not None and previous.version == vid and not full:
        return BuildResult(name, vid, "up to date", previous.rows, 0, len(previous.partitions))
    progress.update(f"building {name}")
    con = connect(ws)
    checks = IntegrityChecks()
    try:
        schemas: dict[str, pa.Schema] = {}
        resolved: dict[str, StreamInput] = {}
        grain_split = spec["kind"] == "aggregate" and spec.get("grain", "none") != "none"
        incremental = (grain_split and not full and previous is not None
                       and previous.spec_hash == spec_hash(spec) and "source" in inputs["input"]
                       and _same_reader(identities["input"], previous.inputs.get("input"))
                       and all(identities[a] == previous.inputs.get(a) for a in inputs if a != "input"))
        for alias, item in inputs.items():
            if "derivative" in item:
                schemas[alias] = load_derivative(con, catalog, alias, item["derivative"])
            else:
                resolved[alias] = resolve_stream(ws, item["source"], item["stream"])
                schemas[alias] = load_stream(con, ws, alias, resolved[alias], progress, checks,
                                             materialize=incremental and alias == "input")
        periods = None
        if incremental:
            periods = _touched_periods(con, ws, spec, schemas["input"], resolved["input"], previous)
        lock_down(con)
        progress.update(f"computing {name}")
        try:
            table = _query(spec, ws, con, schemas, periods)
        except LithotseError:
            checks.raise_found()
            raise
        checks.finish()
        keys = patient_key_columns(spec)
        if keys:
            table = pseudonymize(ws, table, keys)
    finally:
        checks.close()
        con.close()
    progress.update(f"writing {name}")
    written = _write_parts(catalog, name, table, grain_split)
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
                             [p.isoformat() for p in periods]})
    catalog.publish(version)
    audit.record(ws, "publish", objects=sorted(p["key"] for p in parts.values()), derivative=name,
                 version=vid, status=status, rows=version.rows)
    pruned = catalog.prune(name, ws.keep_versions)
    for hook in PUBLISH_HOOKS:
        hook(ws, version)
    return BuildResult(name, vid, status, version.rows, len(written), len(parts),
                       time.perf_counter() - started, pruned)


PUBLISH_HOOKS: list[Any] = []
"""Callables ``(workspace, version)`` run after a version is published (the L3 cache uses it)."""


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
    specs = catalog.specs()
    wanted = set(names) if names else None
    defined = {spec["name"] for spec in specs}
    for name in names or []:
        if name not in defined:
            raise NotFound.unknown("derivative", name, defined, "defined")
    return [build(ws, n, progress=progress, full=full) for n in dependency_order(specs)
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

from ..cache import publish_to_cache  # noqa: E402  (imported last: the cache reads derive.catalog)

PUBLISH_HOOKS.append(publish_to_cache)
