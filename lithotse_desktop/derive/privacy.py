"""``lithotse privacy audit``: attack the published aggregates the way a reader could.

Like tau-Argus's audit, it starts from what is published and nothing else: for every input,
the current versions of its aggregates (cells, suppression flags, specs), the relations
between them (:mod:`.relations`), and for each hidden cell the least and greatest value the
published totals allow (:func:`.complementary.audit`). A hidden count narrowed to an interval
narrower than its threshold, a hidden sum determined exactly, or a difference of two
published tables pinned to 1..k-1 is a finding.
"""

from __future__ import annotations

import json
from typing import Any

from ..workspace import Workspace
from .build import suppression_threshold
from .catalog import Catalog
from .complementary import Cells, Group, audit
from .relations import relations


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
        group = Group(members, rels)
        found = audit(group)
        groups.append({"input": json.loads(key), "derivatives": [m.name for m in group.members],
                       "relations": [[r.inner, r.outer] for r in rels],
                       "partitions": [{"whole": p.outer, "parts": p.parts} for p in group.partitions],
                       "hidden_cells": sum(len(m.hidden) for m in members), "findings": len(found)})
        findings.extend(f.to_json() for f in found)
    return {"ok": not findings, "groups": groups, "findings": findings}
