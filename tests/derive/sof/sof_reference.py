"""Row-by-row ViewDefinition evaluation with fhirpathpy: the slow reference the compiled SQL is checked against.

Only used by tests and the benchmark baseline; it covers columns, nested select, forEach, forEachOrNull,
unionAll and where, which is what the benchmark views use.
"""

from __future__ import annotations

import itertools
from functools import cache

import fhirpathpy
from fhirpathpy.models import models


def _resource_key(inputs: list) -> list:
    return [r["id"] for r in inputs if isinstance(r, dict) and "id" in r]


def _reference_key(inputs: list, type_info: object = None) -> list:
    want = getattr(type_info, "name", None)
    keys = []
    for ref in inputs:
        text = ref.get("reference") if isinstance(ref, dict) else None
        if not text:
            continue
        parts = text.split("/_history/")[0].split("/")
        if len(parts) >= 2 and (want is None or parts[-2] == want):
            keys.append(parts[-1])
    return keys


_FUNCTIONS = {
    "getResourceKey": {"fn": _resource_key, "arity": {0: []}},
    "getReferenceKey": {"fn": _reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
}


@cache
def _compiled(path: str):
    return fhirpathpy.compile(path, model=models["r4"], options={"userInvocationTable": _FUNCTIONS})


def evaluate(node: object, path: str, constants: dict | None = None) -> list:
    return _compiled(path)(node, constants or {})


def _columns(sel: dict) -> list[str]:
    names = [c["name"] for c in sel.get("column", [])]
    for sub in sel.get("select", []):
        names += _columns(sub)
    if sel.get("unionAll"):
        names += _columns(sel["unionAll"][0])
    return names


def _body(sel: dict, node: object, env: dict) -> list[dict]:
    row = {}
    for col in sel.get("column", []):
        values = evaluate(node, col["path"], env)
        if col.get("collection"):
            row[col["name"]] = values
        elif len(values) > 1:
            raise ValueError(f"{col['name']}: more than one value")
        else:
            row[col["name"]] = values[0] if values else None
    parts = [[row]] + [_rows(sub, node, env) for sub in sel.get("select", [])]
    if sel.get("unionAll"):
        parts.append([r for branch in sel["unionAll"] for r in _rows(branch, node, env)])
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*parts)]


def _rows(sel: dict, node: object, env: dict) -> list[dict]:
    path = sel.get("forEach") or sel.get("forEachOrNull")
    if path is None:
        return _body(sel, node, env)
    items = evaluate(node, path, env)
    if not items and "forEachOrNull" in sel:
        return [dict.fromkeys(_columns(sel))]
    return [row for item in items for row in _body(sel, item, env)]


def evaluate_view(view: dict, resources: list[dict]) -> list[dict]:
    """All output rows of `view` over `resources`, evaluated one resource at a time."""
    env = {c["name"]: next(v for k, v in c.items() if k.startswith("value")) for c in view.get("constant", [])}
    out = []
    for resource in resources:
        if resource.get("resourceType") != view["resource"]:
            continue
        if all(evaluate(resource, w["path"], env) == [True] for w in view.get("where", [])):
            out.extend(_rows({"select": view["select"]}, resource, env))
    return out
