"""Column lineage of a ``sql`` derivative: which input columns each output column is computed from.

A renamed or computed identifier is still an identifier (``patient_id AS pt``,
``CAST(substr(mrn, 2) AS INTEGER)``, ``strftime(birth_date, '%Y%m%d')``), so an output column takes
the strongest role (:func:`.identifiers.strongest`) of every input column its expression reads —
through functions, casts, CASE (its conditions too), subqueries, CTEs, joins and ``*``. A count
(``count``, ``count(DISTINCT …)``, ``count_if``) is a number of rows, not the column it counts.

The query is read with DuckDB's own parser (``json_serialize_sql``); where a construct cannot be
followed (a table function, ``COLUMNS(…)``, PIVOT, a name that resolves to nothing known), every
output column it could affect takes the strongest role of every column of every input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import pyarrow as pa

from .identifiers import ROLES, strongest, type_role

Reads = frozenset[str | None]
"""The roles of the input columns a value is computed from (empty: from constants only)."""

COUNTED: Reads = frozenset({"value"})
_COUNTS = frozenset({"count", "count_star", "count_if", "countif", "approx_count_distinct"})
_ORDER = {name: i for i, name in enumerate([None, *sorted(ROLES, key=lambda n: ROLES[n].safe_harbor != "remove")])}
"""The order roles are offered to :func:`.identifiers.strongest`: of two equally strong, the one
Safe Harbor removes wins (``mrn || birth_date`` is an MRN), and the same one every time."""
_LEAVES = frozenset({"CONSTANT", "PARAMETER", "DEFAULT", "TYPE"})


class Unfollowable(Exception):
    """A construct whose columns' sources cannot be told from the query alone."""


class Unparsable(Exception):
    """The SQL is not DuckDB's (a Spark query DuckDB's parser refuses)."""


@dataclass(frozen=True)
class _Column:
    name: str | None
    reads: Reads
    direct: bool = False
    """Whether the value is an input column's own, unchanged (so its type still says what it is)."""
    in_star: bool = True


@dataclass
class _Relation:
    alias: str | None
    columns: list[_Column]
    opaque: Reads | None = None
    """For a table function: what its arguments read (its columns are unknown)."""


@dataclass
class _Scope:
    relations: list[_Relation] = field(default_factory=list)
    parent: _Scope | None = None
    ctes: dict[str, list[_Column]] = field(default_factory=dict)
    lambdas: frozenset[str] = frozenset()

    def cte(self, name: str) -> list[_Column] | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None

    def lookup(self, parts: list[str]) -> Reads | None:
        """What a (lower-case) column reference reads here, or None if nothing here has it."""
        if len(parts) >= 2:
            for qualifier, column in ((parts[0], parts[1]), *(((parts[1], parts[2]),) if len(parts) >= 3 else ())):
                for relation in self.relations:
                    if relation.alias == qualifier:
                        if relation.opaque is not None:
                            return relation.opaque
                        found = [c.reads for c in relation.columns if c.name == column]
                        if found:
                            return frozenset().union(*found)
        found = [c.reads for r in self.relations for c in r.columns if c.name == parts[0]]
        if found:
            return frozenset().union(*found)
        opaque = [r.opaque for r in self.relations if r.opaque is not None]
        return frozenset().union(*opaque) if opaque else None


def _lower(name: Any) -> str | None:
    return name.lower() if isinstance(name, str) and name else None


def _renamed(columns: list[_Column], aliases: Iterable[str]) -> list[_Column]:
    names = [a.lower() for a in aliases]
    return [replace(c, name=names[i]) if i < len(names) else c for i, c in enumerate(columns)]


class _Lineage:
    def __init__(self, inputs: dict[str, dict[str, str | None]]) -> None:
        self.inputs = {alias.lower(): [_Column(c.lower(), frozenset({role}), True) for c, role in roles.items()]
                       for alias, roles in inputs.items()}

    # --- query nodes -------------------------------------------------------------------------------
    def node(self, node: dict, parent: _Scope | None, aliases: Iterable[str] = ()) -> list[_Column]:
        """The columns of a query node; ``aliases`` name them (a CTE's ``name(a, b)``)."""
        scope = _Scope(parent=parent)
        for entry in (node.get("cte_map") or {}).get("map", []):
            value = entry["value"]
            scope.ctes[entry["key"].lower()] = self.node(value["query_node"], scope, value.get("aliases") or [])
        kind = node.get("type")
        if kind == "SELECT_NODE":
            return _renamed(self.select(node, scope), aliases)
        if kind == "SET_OPERATION_NODE":
            return _renamed(self.set_operation(node, scope), aliases)
        if kind == "RECURSIVE_CTE_NODE":
            return self.recursive(node, scope, list(aliases))
        raise Unfollowable(f"a {kind}")

    def set_operation(self, node: dict, scope: _Scope) -> list[_Column]:
        branches = [self.node(child, scope) for child in node.get("children") or [node["left"], node["right"]]]
        if node.get("setop_type") == "UNION_BY_NAME":
            merged: dict[str | None, _Column] = {}
            for column in (c for branch in branches for c in branch):
                known = merged.get(column.name)
                merged[column.name] = column if known is None else \
                    replace(known, reads=known.reads | column.reads, direct=known.direct and column.direct)
            return list(merged.values())
        if len({len(b) for b in branches}) != 1:
            raise Unfollowable("set operation branches of different widths")
        return [replace(first, reads=frozenset().union(*(b[i].reads for b in branches)),
                        direct=all(b[i].direct for b in branches)) for i, first in enumerate(branches[0])]

    def recursive(self, node: dict, scope: _Scope, aliases: list[str]) -> list[_Column]:
        """A recursive CTE: its columns read what its first part reads, and whatever its recursive
        part adds, until nothing more is added."""
        name = str(node.get("cte_name", "")).lower()
        columns = self.node(node["left"], scope, aliases)
        while True:
            inner = _Scope(parent=scope, ctes={name: columns})
            more = self.node(node["right"], inner, aliases)
            if len(more) != len(columns):
                raise Unfollowable("a recursive CTE of changing width")
            grown = [replace(c, reads=c.reads | m.reads, direct=False) for c, m in zip(columns, more, strict=True)]
            if [c.reads for c in grown] == [c.reads for c in columns]:
                return grown
            columns = grown

    def select(self, node: dict, scope: _Scope) -> list[_Column]:
        scope.relations = self.from_item(node.get("from_table"), scope)
        out: list[_Column] = []
        for expr in node.get("select_list") or []:
            if expr.get("class") == "STAR":
                out.extend(self.star(expr, scope))
                continue
            name = _lower(expr.get("alias"))
            if name is None and expr.get("class") == "COLUMN_REF":
                name = expr["column_names"][-1].lower()
            direct = expr.get("class") == "COLUMN_REF" and self.is_direct(expr, scope, out)
            out.append(_Column(name, self.reads(expr, scope, out), direct))
        return out

    def is_direct(self, expr: dict, scope: _Scope, earlier: list[_Column]) -> bool:
        parts = [p.lower() for p in expr["column_names"]]
        candidates = [c for r in scope.relations for c in r.columns if c.name == parts[-1]] + \
            [c for c in earlier if c.name == parts[-1]]
        return bool(candidates) and all(c.direct for c in candidates)

    # --- FROM --------------------------------------------------------------------------------------
    def from_item(self, item: dict | None, scope: _Scope) -> list[_Relation]:
        kind = (item or {}).get("type", "EMPTY")
        if kind == "EMPTY":
            return []
        assert item is not None
        alias = _lower(item.get("alias"))
        if kind == "BASE_TABLE":
            table = str(item["table_name"]).lower()
            columns = scope.cte(table) if not item.get("schema_name") else None
            if columns is None:
                columns = self.inputs.get(table)
            if columns is None:
                raise Unfollowable(f"table {item['table_name']!r}")
            return [_Relation(alias or table, _renamed(columns, item.get("column_name_alias") or []))]
        if kind == "SUBQUERY":
            columns = self.node(item["subquery"]["node"], scope)
            return [_Relation(alias, _renamed(columns, item.get("column_name_alias") or []))]
        if kind == "JOIN":
            return self.join(item, scope)
        if kind == "EXPRESSION_LIST":
            rows = item.get("values") or []
            width = len(rows[0]) if rows else 0
            return [_Relation(alias, [_Column(f"col{i}", self.reads([r[i] for r in rows], scope, []))
                                      for i in range(width)])]
        if kind == "TABLE_FUNCTION":
            return [_Relation(alias, [], self.reads(item["function"], scope, []))]
        raise Unfollowable(f"a {kind} in FROM")

    def join(self, item: dict, scope: _Scope) -> list[_Relation]:
        left = self.from_item(item["left"], scope)
        lateral = _Scope(left, scope, {}, scope.lambdas)
        right = self.from_item(item["right"], lateral)
        if item.get("ref_type") == "NATURAL":
            names = {c.name for r in left for c in r.columns} & {c.name for r in right for c in r.columns}
        else:
            names = {n.lower() for n in item.get("using_columns") or []}
        if not names:
            return left + right
        merged = {name: frozenset().union(*(c.reads for r in left + right for c in r.columns if c.name == name))
                  for name in names}

        def merge(relations: list[_Relation], hide: bool) -> list[_Relation]:
            return [_Relation(r.alias, [replace(c, reads=merged[c.name], direct=False, in_star=not hide)
                                        if c.name in merged else c for c in r.columns], r.opaque)
                    for r in relations]
        return merge(left, False) + merge(right, True)

    def star(self, expr: dict, scope: _Scope) -> list[_Column]:
        if expr.get("expr") is not None:
            raise Unfollowable("COLUMNS(…)")
        qualifier = _lower(expr.get("relation_name"))
        relations = [r for r in scope.relations if qualifier is None or r.alias == qualifier]
        if not relations or any(r.opaque is not None for r in relations):
            raise Unfollowable("* over a relation of unknown columns")
        excluded = {(e if isinstance(e, str) else str(e.get("column", ""))).lower()
                    for e in [*(expr.get("exclude_list") or []), *(expr.get("qualified_exclude_list") or [])]}
        replaced = {str(e["key"]).lower(): e["value"] for e in expr.get("replace_list") or []}
        renamed = {str((e["key"] or {}).get("column", "")).lower(): str(e["value"]).lower()
                   for e in expr.get("rename_list") or []}
        out = []
        for column in (c for r in relations for c in r.columns if c.in_star or qualifier is not None):
            if column.name in excluded:
                continue
            if column.name in replaced:
                column = _Column(column.name, self.reads(replaced[column.name], scope, []))
            out.append(replace(column, name=renamed.get(column.name or "", column.name), in_star=True))
        return out

    # --- expressions -------------------------------------------------------------------------------
    def reads(self, expr: Any, scope: _Scope, earlier: list[_Column]) -> Reads:
        """The roles an expression's value is computed from."""
        if isinstance(expr, list):
            return frozenset().union(*(self.reads(e, scope, earlier) for e in expr))
        if not isinstance(expr, dict):
            return frozenset()
        kind = expr.get("class")
        if kind is None:
            return frozenset().union(*(self.reads(v, scope, earlier) for v in expr.values()))
        if kind in _LEAVES:
            return frozenset()
        if kind == "COLUMN_REF":
            return self.column(expr, scope, earlier)
        if kind in ("FUNCTION", "WINDOW") and str(expr.get("function_name", "")).lower() in _COUNTS:
            return COUNTED
        if kind == "WINDOW":
            return self.reads({k: v for k, v in expr.items() if k not in ("class", "partitions")}, scope, earlier)
        if kind == "SUBQUERY":
            columns = self.node(expr["subquery"]["node"], scope)
            return frozenset().union(*(c.reads for c in columns), self.reads(expr.get("child"), scope, earlier))
        if kind == "LAMBDA":
            params = [e["column_names"][0] for e in _column_refs(expr["lhs"])]
            inner = _Scope(scope.relations, scope.parent, scope.ctes, scope.lambdas | {p.lower() for p in params})
            return self.reads(expr["expr"], inner, earlier)
        if kind == "STAR":
            if expr.get("expr") is not None:
                raise Unfollowable("COLUMNS(…)")
            qualifier = _lower(expr.get("relation_name"))
            found = [c.reads for r in scope.relations if qualifier is None or r.alias == qualifier
                     for c in r.columns] + [r.opaque for r in scope.relations if r.opaque is not None]
            return frozenset().union(*found)
        if kind == "POSITIONAL_REFERENCE":
            flat = [c for r in scope.relations for c in r.columns]
            index = int(expr.get("index", 0))
            if not 0 < index <= len(flat):
                raise Unfollowable(f"#{index}")
            return flat[index - 1].reads
        return frozenset().union(*(self.reads(v, scope, earlier) for k, v in expr.items() if k != "class"))

    def column(self, expr: dict, scope: _Scope, earlier: list[_Column]) -> Reads:
        parts = [p.lower() for p in expr["column_names"]]
        if parts[0] in scope.lambdas:
            return frozenset()
        here: _Scope | None = scope
        while here is not None:
            found = here.lookup(parts)
            if found is not None:
                return found
            here = here.parent
        lateral = [c.reads for c in earlier if c.name == parts[0]]
        if lateral:
            return frozenset().union(*lateral)
        raise Unfollowable(f"column {'.'.join(expr['column_names'])!r}")


def _column_refs(expr: Any) -> Iterator[dict]:
    if isinstance(expr, list):
        for item in expr:
            yield from _column_refs(item)
    elif isinstance(expr, dict):
        if expr.get("class") == "COLUMN_REF":
            yield expr
        else:
            for value in expr.values():
                yield from _column_refs(value)


def parse(sql: str) -> dict:
    """DuckDB's syntax tree of one query (Unparsable where DuckDB's parser refuses it)."""
    con = duckdb.connect(":memory:")
    try:
        row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        tree = json.loads(row[0]) if row else {}
    finally:
        con.close()
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise Unparsable(str(tree.get("error_message", "not one statement")))
    return tree["statements"][0]["node"]


def sql_column_roles(sql: str, schema: pa.Schema, inputs: dict[str, dict[str, str | None]]) -> dict[str, str | None]:
    """The role of each column of ``schema`` (the query's result) from the columns it reads.

    A column computed from constants only, or an unchanged input column whose role is unclassified,
    takes the role its type gives (:func:`.identifiers.type_role`), as a column of no input would.
    Raises :class:`Unparsable` for SQL DuckDB cannot parse.
    """
    tree = parse(sql)
    everything: Reads = frozenset(role for roles in inputs.values() for role in roles.values())
    try:
        found = _Lineage(inputs).node(tree, None)
    except Unfollowable:
        found = []
    if len(found) == len(schema):
        pairs = list(zip(schema, found, strict=True))
    else:
        by_name: dict[str | None, list[_Column]] = {}
        for column in found:
            by_name.setdefault(column.name, []).append(column)
        pairs = [(f, only[0] if len(only := by_name.get(f.name.lower(), [])) == 1 else _Column(f.name, everything))
                 for f in schema]
    out: dict[str, str | None] = {}
    for output, column in pairs:
        role = strongest(*sorted(column.reads, key=_ORDER.__getitem__)) if column.reads else None
        if not column.reads or (role is None and column.direct):
            role = type_role(output)
        out[output.name] = role
    return out
