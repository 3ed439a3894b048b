"""``lithotse privacy audit``: attack the published aggregates the way a reader could.

Like tau-Argus's audit, it bounds every hidden cell by what is published: for every input, the
current versions of its aggregates (cells, suppression flags, specs) and for each hidden cell
the least and greatest value the published totals allow (:func:`.complementary.audit`). It
judges with the same model as the build: over the group's atoms, the classes of input rows no
published table tells apart (:mod:`.atoms`). Which atoms exist is read from the input itself
(one GROUP BY, nothing else of the rows), so an identity that may not read the input cannot run
the audit of a group of two or more aggregates; it is told so rather than given the weaker
relation-line model. A hidden count narrowed to an interval narrower than its threshold, a
hidden sum determined exactly, or a difference of two published tables pinned to 1..k-1 is a
finding. Tables of different inputs are outside that model: a published sql cells table that
reaches a raw stream another published table of cells reaches, or two published aggregates of
different inputs that count rows of one raw stream (one of them hiding cells), are a refusal, the
pair a build refuses (:func:`.build.differenced_with`). A sql cells table leaves its suppressed
cells out and shows no total of them: it is listed, with how many cells it left out, and judged
by those pairs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import LithotseError
from ..progress import Progress
from ..raw.verify import IntegrityChecks
from ..workspace import Workspace
from .atoms import Atoms, compile_atoms, joined_inputs, read_atoms
from .build import cells_kind, differenced_with, input_label, sql_cells, suppression_threshold
from .catalog import Catalog, Version
from .complementary import Cells, Group, audit
from .engines import engine_name, open_engine
from .inputs import input_identity, resolve_stream
from .relations import relations
from .revisions import revised_cells
from .spec import spec_inputs

if TYPE_CHECKING:
    import pyarrow as pa


def audit_published(ws: Workspace) -> dict[str, Any]:
    """Findings over every input's published aggregates; ``ok`` when there are none."""
    catalog = Catalog(ws)
    by_input: dict[str, list[tuple[dict, Any]]] = {}
    for name in catalog.names():
        current = catalog.current(name)
        if current is None or (current.spec or {}).get("kind") != "aggregate":
            continue
        key = json.dumps(current.spec["input"], sort_keys=True)
        by_input.setdefault(key, []).append((current.spec, current))
    groups: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for key in sorted(by_input):
        members = []
        for spec, version in by_input[key]:
            table = catalog.read(version)
            members.append(Cells.from_table(spec["name"], spec, suppression_threshold(ws, spec), table))
        rels = relations([m.spec for m in members], {m.name: m.types for m in members})
        atoms = input_atoms(ws, catalog, [m.spec for m in members]) if len(members) > 1 else None
        group = (Group(members, rels, atoms=atoms.columns, atom_records=atoms.records) if atoms is not None
                 else Group(members, rels))
        identities: dict[str, Any] = {}
        if atoms is not None and all(_built_from_current_inputs(ws, catalog, spec, version, identities)
                                     for spec, version in by_input[key]):
            group.count_differences()
        found = audit(group)
        groups.append({"kind": "aggregate", "input": json.loads(key), "derivatives": [m.name for m in group.members],
                       "relations": [[r.inner, r.outer] for r in rels],
                       "partitions": [{"whole": p.outer, "parts": p.parts} for p in group.partitions],
                       "hidden_cells": sum(len(m.hidden) for m in members),
                       "atoms": len(group.atoms or []), "findings": len(found)})
        findings.extend(f.to_json() for f in found)
    groups.extend(sql_cells_tables(catalog))
    refusals = decided_alone_pairs(ws, catalog)
    revised = revisions(ws, catalog)
    return {"ok": not findings and not refusals and not revised, "groups": groups, "findings": findings,
            "refusals": refusals, "revisions": revised}


def revisions(ws: Workspace, catalog: Catalog) -> list[dict[str, Any]]:
    """Counts of shown cells that moved by 1 to k-1 from one kept (or pruned and remembered)
    version of an aggregate (or a sql cells table) to any later one of the same question
    (:func:`.revisions.revised_cells`; shown at 50, hidden, then shown at 56: 6): a reader holding
    both learns how many records or people came or went in that cell. Each cell of a version is
    named once, with the nearest earlier version it moved from."""
    found: list[dict[str, Any]] = []
    for name in catalog.names():
        current = catalog.current(name)
        spec = (current.spec if current is not None else None) or {}
        if current is None or not (spec.get("kind") == "aggregate" or sql_cells(spec)):
            continue
        k = suppression_threshold(ws, spec)
        if k <= 0:
            continue
        listed: list[tuple[Version, pa.Table | None]] = [
            (v, None) for v in catalog.versions(name) if _same_question(current, v)]
        ids = {v.version for v, _ in listed}
        listed += [(v, t) for v, t in catalog.remembered(name) if v.version not in ids and _same_question(current, v)]
        listed.sort(key=lambda pair: pair[0].published_at or "")
        kept = [v for v, _ in listed]
        tables = [t if t is not None else catalog.read(v) for v, t in listed]
        for i in range(1, len(kept)):
            seen: set[str] = set()
            for j in range(i - 1, -1, -1):  # every earlier version a reader may hold, the nearest first
                for revised in revised_cells(kept[i].spec or spec, k, tables[j], tables[i],
                                             (kept[i].stats or {}).get("counted_by")):
                    cell = json.dumps([revised["cell"], revised["measure"]], sort_keys=True)
                    if cell not in seen:
                        seen.add(cell)
                        found.append({"derivative": name, **revised, "versions": [kept[j].version, kept[i].version]})
    return found


def _same_question(current: Version, other: Version) -> bool:
    question = (current.privacy or {}).get("question")
    if question is None:
        return other.spec_hash == current.spec_hash
    return (other.privacy or {}).get("question") == question


def sql_cells_tables(catalog: Catalog) -> list[dict[str, Any]]:
    """Each published sql cells table, as a group of its own: its suppressed cells are left out,
    keys and all, and it shows no total of its cells, so nothing in it bounds them; what could
    (another table of cells counting rows of the same raw streams) is a refused pair. Listed so
    that the audit says what it covered, with how many cells the build left out (None for
    versions built before it was recorded)."""
    found = []
    for name in catalog.names():
        current = catalog.current(name)
        spec = (current.spec or {}) if current is not None else {}
        if current is None or not sql_cells(spec):
            continue
        found.append({"kind": "sql cells", "input": spec.get("inputs") or {}, "derivatives": [name],
                      "relations": [], "partitions": [], "hidden_cells": (current.privacy or {}).get("left_out"),
                      "atoms": 0, "findings": 0})
    return found


def decided_alone_pairs(ws: Workspace, catalog: Catalog) -> list[dict[str, Any]]:
    """Each pair of published tables of cells a build would refuse to publish together (once per
    pair), with the raw streams both count rows of, their inputs and the rule."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for name in catalog.names():
        current = catalog.current(name)
        spec = (current.spec or {}) if current is not None else {}
        if not (spec.get("kind") == "aggregate" or sql_cells(spec)):
            continue
        for pair in differenced_with(ws, catalog, spec):
            key = (min(name, pair.spec["name"]), max(name, pair.spec["name"]))
            first, second = (spec, pair.spec) if name == key[0] else (pair.spec, spec)
            pairs.setdefault(key, {"derivatives": list(key), "kinds": [cells_kind(first), cells_kind(second)],
                                   "inputs": [input_label(first), input_label(second)],
                                   "streams": pair.streams, "rule": pair.rule})
    return [pairs[key] for key in sorted(pairs)]


def _built_from_current_inputs(ws: Workspace, catalog: Catalog, spec: dict, version: Any,
                               identities: dict[str, Any]) -> bool:
    """Whether a version was built from its inputs as they are now (the same objects, or the
    same input versions): then the atoms' records counted now are the records it was built from.
    ``identities`` keeps each input's identity as found, for the group's other versions."""
    try:
        for alias, item in spec_inputs(spec).items():
            known = json.dumps(item, sort_keys=True)
            if known not in identities:
                identities[known] = json.loads(json.dumps(input_identity(ws, catalog, item)))
            if identities[known] != version.inputs.get(alias):
                return False
        return True
    except LithotseError:
        return False


def input_atoms(ws: Workspace, catalog: Catalog, specs: list[dict]) -> Atoms:
    """The atoms of aggregates reading one input, counted from the input's rows."""
    names = ", ".join(sorted(s["name"] for s in specs))
    item = specs[0]["input"]
    where = f"derivative {item['derivative']}" if "derivative" in item else f"{item['source']}/{item['stream']}"
    progress = Progress()
    session = open_engine(ws, engine_name(ws, specs[0])).session(progress)
    checks = IntegrityChecks()
    try:
        schemas = {}
        joined = joined_inputs(specs)
        for alias, entry in {"input": item, **joined}.items():
            if "derivative" in entry:
                schemas[alias] = session.load_derivative(catalog, alias, entry["derivative"])
            else:
                # a joined input may be read by several joins of the one query: held in a table
                schemas[alias] = session.load_stream(ws, alias, resolve_stream(ws, entry["source"], entry["stream"],
                                                                             with_key=False), progress, checks,
                                                     rescanned=alias in joined)
        compiled = compile_atoms(specs, schemas, timezone=ws.timezone, dialect=session.dialect)
        found = session.run(compiled.sql, compiled.params, f"privacy audit of {names}", progress)
        checks.finish()
    except LithotseError as exc:
        raise LithotseError(f"privacy audit of {names} needs to read their input {where} (which of their "
                            f"cells share rows is what a reader attacks); it could not: {exc}") from None
    finally:
        checks.close()
        session.close()
    return read_atoms(specs, found)
