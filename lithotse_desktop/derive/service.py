"""Derivative operations behind the CLI and the desktop app: add, preview, lineage, export.

:func:`read_table` reads a version wherever its class keeps it (an analyst previewing a view);
:func:`read_published` is the door for everything that leaves the workspace (exports): it
refuses row-level derivatives before touching their data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .. import engine
from ..dates import DateRange
from ..errors import ConfigError, NotFound
from ..raw.index import open_index
from ..raw.sources import make_connector
from ..workspace import Workspace
from . import deidentify
from .build import suppression_threshold
from .catalog import Catalog, Version
from .compile import DIALECTS, DUCKDB, compile_aggregate
from .disclosure import (
    check_aggregate,
    check_cell_keys,
    check_deidentified_picks,
    check_one_row_per_record,
    check_own_picks,
    check_unpicked,
    classify,
    output_roles,
    picks,
    refusal,
    view_roles,
    with_declared,
)
from .engines import check_engine_name
from .inputs import empty_relation, input_picks, input_roles, lock_down, sample_schema, stream_keys
from .kinds import KIND_MODULES
from .kinds.sql import check_counts, check_row_by_row
from .spec import SpecError, spec_inputs, validate_spec


def _input_path(alias: str) -> str:
    return "input" if alias == "input" else ("join.input" if alias == "joined" else f"inputs.{alias}")


def check_spec(ws: Workspace, spec: Any) -> dict:
    """Every check that can run before a build: structure, inputs, columns and types, SQL."""
    validate_spec(spec)
    if spec.get("engine"):
        try:
            check_engine_name(spec["engine"])
        except NotFound as exc:
            raise SpecError("engine", str(exc).removeprefix("engine: ")) from None
    catalog = Catalog(ws)
    schemas: dict[str, pa.Schema | None] = {}
    for alias, item in spec_inputs(spec).items():
        path = _input_path(alias)
        if "derivative" in item:
            if item["derivative"] == spec["name"]:
                raise SpecError(path, "a derivative cannot read itself")
            try:
                catalog.spec(item["derivative"])
            except NotFound as exc:
                raise SpecError(f"{path}.derivative", str(exc)) from None
        else:
            try:
                connector = make_connector(ws, item["source"])
                if not _has_landings(ws, item["source"], item["stream"]):
                    connector.stream(item["stream"])
            except NotFound as exc:
                raise SpecError(f"{path}.source", str(exc)) from None
            except ConfigError as exc:
                raise SpecError(f"{path}.stream", str(exc)) from None
        schemas[alias] = sample_schema(ws, catalog, item)
    kind = KIND_MODULES[spec["kind"]]
    kind.check(spec)
    if spec.get("deidentify") and spec["kind"] == "view":
        found, computed_reads = view_roles(spec)
        deidentify.actions(spec["deidentify"], with_declared(spec, found), {}, computed=computed_reads)
        check_deidentified_picks(spec, picks(spec, pa.schema([]), {}, {}))
    if any(s is None for s in schemas.values()):
        return spec
    known = {alias: schema for alias, schema in schemas.items() if schema is not None}
    roles = {alias: input_roles(catalog, spec, item, known[alias], stream_keys(ws, item))
             for alias, item in spec_inputs(spec).items()}
    upstream = {alias: input_picks(catalog, item) for alias, item in spec_inputs(spec).items()}
    if spec["kind"] == "aggregate" or spec.get("count_column"):
        check_unpicked(spec, upstream)
    if spec["kind"] == "aggregate":
        check_one_row_per_record(spec, upstream, ("input",))
        check_aggregate(spec, roles, {alias: found.get("computed", []) for alias, found in upstream.items()})
        dialect = DIALECTS.get(str(spec.get("engine") or "duckdb"))
        if dialect is not None and dialect is not DUCKDB:  # what that engine refuses (inexact measures)
            compile_aggregate(spec, known, timezone=ws.timezone, dialect=dialect)
    if spec["kind"] == "sql" and spec.get("count_column"):
        check_one_row_per_record(spec, upstream, check_counts(spec, roles).counted)
    if spec["kind"] == "sql" and spec.get("engine", "duckdb") != "duckdb":
        return spec  # SQL in another engine's dialect: that engine checks it when it builds
    con = engine.connect(ws.limits)
    try:
        for alias, schema in known.items():
            empty_relation(con, alias, schema)
        lock_down(con)
        query = kind.query(spec, known, timezone=ws.timezone, threshold=suppression_threshold(ws, spec))
        try:
            probe = con.sql(f"SELECT * FROM ({query.sql}) LIMIT 0", params=query.params or None)
            output = probe.to_arrow_table().schema
        except duckdb.Error as exc:
            raise SpecError(query.field, str(exc).splitlines()[0]) from None
    finally:
        con.close()
    for key in ("count_column", "people_column"):
        if spec.get(key) and spec[key] not in output.names:
            raise SpecError(key, f"no output column {spec[key]!r}; the query gives: {', '.join(output.names)}")
    if spec["kind"] == "sql" and spec.get("count_column"):
        check_cell_keys(spec, output_roles(spec, output, roles))
        check_own_picks(spec, output, roles)
    if spec.get("deidentify"):
        if spec["kind"] == "sql":
            check_row_by_row(spec, known)
        computed: dict[str, frozenset[str]] = {}
        deidentify.actions(spec["deidentify"], output_roles(spec, output, roles, computed),
                           {f.name: f.type for f in output}, computed=computed)
        check_deidentified_picks(spec, picks(spec, output, roles, upstream))
    return spec


def add_spec(ws: Workspace, spec: Any, *, replace: bool = False) -> dict:
    catalog = Catalog(ws)
    if isinstance(spec, dict) and spec.get("name") in catalog.names() and not replace:
        raise ConfigError(f"derivative {spec['name']!r} exists; use --replace to change it")
    check_spec(ws, spec)
    catalog.save_spec(spec)
    return spec


def load_spec_file(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), f"not valid JSON: {exc}") from None


def pick_version(ws: Workspace, name: str, as_of: dt.date | None = None) -> Version:
    catalog = Catalog(ws)
    if as_of is not None:
        return catalog.as_of(name, as_of)
    current = catalog.current(name)
    if current is None:
        catalog.spec(name)
        raise NotFound(f"derivative {name!r} has not been built yet; run: lithotse derive build {name}")
    return current


def read_table(ws: Workspace, name: str, *, rng: DateRange | None = None,
               as_of: dt.date | None = None) -> tuple[Version, pa.Table]:
    version = pick_version(ws, name, as_of)
    rng = rng or DateRange()
    return version, Catalog(ws).read(version, start=rng.start, end=rng.end)


def read_published(ws: Workspace, name: str, door: str, *, rng: DateRange | None = None,
                   as_of: dt.date | None = None) -> tuple[Version, pa.Table]:
    """:func:`read_table` for what leaves the workspace through ``door`` (an export, …): a
    row-level derivative is refused, naming the rule, before any of its data is read."""
    catalog = Catalog(ws)
    disclosure = classify(catalog.spec(name), catalog.find_spec)
    if not disclosure.published:
        raise refusal(name, disclosure, door)
    version, table = read_table(ws, name, rng=rng, as_of=as_of)
    if version.privacy.get("class") == "row-level":
        raise refusal(name, disclosure, door)
    return version, table


def published_batches(ws: Workspace, name: str, door: str, *, rng: DateRange | None = None,
                      ) -> tuple[Version, pa.Schema, Iterator[pa.RecordBatch]]:
    """:func:`read_published` as batches, part by part, for doors that write what they read
    (exports): the same refusals, before any data is read; one batch in memory at a time."""
    catalog = Catalog(ws)
    disclosure = classify(catalog.spec(name), catalog.find_spec)
    if not disclosure.published:
        raise refusal(name, disclosure, door)
    version = pick_version(ws, name)
    if version.privacy.get("class") == "row-level":
        raise refusal(name, disclosure, door)
    rng = rng or DateRange()
    schema, batches = catalog.batches(version, start=rng.start, end=rng.end)
    return version, schema, batches


def counting(version: Version) -> dict:
    """What small-cell suppression of a version counted: ``counts`` is ``people`` (distinct
    values of ``person_key`` per cell) or ``records`` (its input declares no person key);
    None for kinds that are not aggregates. ``person_key`` of a view: its patient column; of sql
    cells: the input column its ``people_column`` counts distinct values of."""
    stats = version.stats or {}
    spec = version.spec or {}
    if spec.get("kind") == "aggregate":
        return {"counts": stats.get("counts", "records"), "person_key": stats.get("counted_by")}
    if spec.get("kind") == "sql" and spec.get("count_column"):  # None: built before its counts were checked
        return {"counts": stats.get("counts"), "person_key": stats.get("counted_by")}
    return {"counts": None, "person_key": stats.get("person_key")}


def lineage(ws: Workspace, name: str) -> dict:
    """The spec and the exact raw objects (with their landings) behind the current version."""
    version = pick_version(ws, name)
    if not ws.can_read_raw():
        # a manager's identity cannot read L1: show the objects the version names, nothing more
        return {"name": name, "version": version.version, "published_at": version.published_at,
                "spec_hash": version.spec_hash, "spec": version.spec, "inputs": version.inputs,
                **counting(version), "raw_readable": False}
    index = open_index(ws)
    try:
        out_inputs = {}
        for alias, ident in version.inputs.items():
            if "derivative" in ident:
                out_inputs[alias] = ident
                continue
            wanted = {tuple(o) for o in ident["objects"]}
            landings = [m for m in index.landings(ident["source"], ident["stream"])
                        if (m.sha256, m.range_from, m.range_to) in wanted]
            out_inputs[alias] = {
                "source": ident["source"], "stream": ident["stream"],
                "connector": ident.get("connector"), "connector_version": ident.get("connector_version"),
                "objects": [{"sha256": m.sha256, "object_key": m.object_key, "landing": m.id,
                             "original_name": m.original_name, "range": [m.range_from, m.range_to],
                             "landed_at": m.landed_at} for m in landings]}
    finally:
        index.close()
    return {"name": name, "version": version.version, "published_at": version.published_at,
            "spec_hash": version.spec_hash, "spec": version.spec, "inputs": out_inputs,
            **counting(version), "raw_readable": True}


def _has_landings(ws: Workspace, source: str, stream: str) -> bool:
    """Whether a stream has landed: then a spec may read it even if its source no longer offers it
    (a folder emptied after import), since builds read the landings."""
    index = open_index(ws)
    try:
        return bool(index.landings(source, stream))
    finally:
        index.close()
