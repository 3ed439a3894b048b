"""Column lineage of a ``sql`` derivative: which input columns each output column is computed from.

A renamed or computed identifier is still an identifier (``patient_id AS pt``,
``CAST(substr(mrn, 2) AS INTEGER)``, ``strftime(birth_date, '%Y%m%d')``), so an output column takes
the strongest role (:func:`.identifiers.strongest`) of every input column its expression reads —
through functions, casts, CASE (its conditions too), subqueries, CTEs, joins and ``*``. A count
(``count``, ``count(DISTINCT …)``, ``count_if``) is a number of rows, not the column it counts.

The query is read with DuckDB's own parser (``json_serialize_sql``); where a construct cannot be
followed (a table function, ``COLUMNS(…)``, PIVOT, a name that resolves to nothing known), every
output column it could affect takes the strongest role of every column of every input.

The same walk finds the conditions by which a query picks people out by an identifier
(:func:`sql_picks`): an input with such a condition, or built over one, feeds no cells.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import pyarrow as pa

from .identifiers import ROLES, identifying, strongest, type_role

Reads = frozenset[str | None]
"""The roles of the input columns a value is computed from (empty: from constants only)."""

COUNTED: Reads = frozenset({"value"})
"""A count of one person's rows (grouped or partitioned by a person key): a value of that person."""
ROWS_COUNTED: Reads = frozenset({"count"})
"""A count or any other value of a group of rows that is not one person's (an aggregate or a
window not grouped by a person key, ``row_number()`` and ``sum(1) OVER`` included): as a key of a
published cell it would show what suppression hides (``count(*) OVER (PARTITION BY department,
day)`` beside each row)."""
_AGGREGATE_FUNCTIONS: frozenset[str] | None = None


def aggregate_functions() -> frozenset[str]:
    """DuckDB's aggregate functions, from its catalog (read once)."""
    global _AGGREGATE_FUNCTIONS
    if _AGGREGATE_FUNCTIONS is None:
        with duckdb.connect(":memory:") as con:
            _AGGREGATE_FUNCTIONS = frozenset(r[0] for r in con.execute(
                "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'aggregate'").fetchall())
    return _AGGREGATE_FUNCTIONS | _COUNTS
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
    optional: bool = False
    """An input column's own on the optional side of an outer join: unchanged where the join
    matched, null where it did not (so only whether it is null says anything of the row)."""


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
    per_person: bool = False
    """Whether the SELECT's groups are one person's rows (its GROUP BY reads a person key)."""

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


def _optional(relations: list[_Relation]) -> list[_Relation]:
    """The relations of an outer join's optional side: no column is its input's unchanged (a key
    null on every row groups everyone together)."""
    return [_Relation(r.alias, [replace(c, direct=False, optional=c.direct or c.optional) for c in r.columns],
                      r.opaque) for r in relations]


def _lower(name: Any) -> str | None:
    return name.lower() if isinstance(name, str) and name else None


def _renamed(columns: list[_Column], aliases: Iterable[str]) -> list[_Column]:
    names = [a.lower() for a in aliases]
    return [replace(c, name=names[i]) if i < len(names) else c for i, c in enumerate(columns)]


class _Lineage:
    def __init__(self, inputs: dict[str, dict[str, str | None]]) -> None:
        self.inputs = {alias.lower(): [_Column(c.lower(), frozenset({role}), True) for c, role in roles.items()]
                       for alias, roles in inputs.items()}
        self.outer_refs: list[str] = []
        """Columns a query reads from a query around it (a correlated subquery, a LATERAL join)."""

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
            everywhere = set.intersection(*({c.name for c in branch} for branch in branches))
            return [c if c.name in everywhere else replace(c, direct=False, optional=False) for c in merged.values()]
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
            grown = [replace(c, reads=c.reads | m.reads, direct=False, optional=False)
                     for c, m in zip(columns, more, strict=True)]
            if [c.reads for c in grown] == [c.reads for c in columns]:
                return grown
            columns = grown

    def select(self, node: dict, scope: _Scope) -> list[_Column]:
        scope.relations = self.from_item(node.get("from_table"), scope)
        scope.per_person = self.groups_people(node, scope)
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

    def groups_people(self, node: dict, scope: _Scope) -> bool:
        """Whether a SELECT groups by a person key: a GROUP BY term (by place too) that reads
        one, or with GROUP BY ALL, a plain column of its select list that is one."""
        items = node.get("select_list") or []
        if len(node.get("group_sets") or []) > 1:  # GROUPING SETS, ROLLUP, CUBE: some rows are totals
            return False
        aliases = {str(item["alias"]).lower(): item for item in items
                   if item.get("alias") and item.get("class") == "COLUMN_REF"}
        groups = []
        for term in node.get("group_expressions") or []:
            if isinstance(term, dict) and term.get("class") == "COLUMN_REF" and len(term["column_names"]) == 1 and \
                    scope.lookup([term["column_names"][0].lower()]) is None:
                term = aliases.get(term["column_names"][0].lower(), term)
            literal = term.get("literal") or {} if isinstance(term, dict) else {}
            if term.get("class") == "CONSTANT" and str(literal.get("kind")) in ("INTEGER", "BIGINT"):
                place = int(literal.get("text", 0))
                term = items[place - 1] if 0 < place <= len(items) else term
            groups.append(term)
        if not groups and node.get("aggregate_handling") == "FORCE_AGGREGATES":
            groups = [item for item in items if item.get("class") == "COLUMN_REF"]
        return any(self.is_person_key(term, scope, []) for term in groups)

    def is_person_key(self, term: Any, scope: _Scope, earlier: list[_Column]) -> bool:
        """Whether a GROUP BY or PARTITION BY term is a person key itself: a plain column passing
        one on unchanged (``patient_id IS NULL`` or ``hash(patient_id) % 1`` reads one, but groups
        many people together)."""
        if not isinstance(term, dict) or term.get("class") != "COLUMN_REF":
            return False
        parts = [p.lower() for p in term["column_names"]]
        if scope.lookup(parts) != {"person_key"}:  # a column of this query's own rows, not an outer one
            return False
        try:
            return self.is_direct(term, scope, earlier)
        except Unfollowable:
            return False

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
        kind = str(item.get("join_type", "INNER")).upper()
        if item.get("ref_type") == "NATURAL":
            names = {c.name for r in left for c in r.columns} & {c.name for r in right for c in r.columns}
        else:
            names = {n.lower() for n in item.get("using_columns") or []}
        # the condition compares pairs of rows as the inputs hold them: null-extending comes after
        self.joined(item, left + right, names, scope)
        if kind in ("LEFT", "OUTER", "FULL"):  # the optional side: its columns may be null where the input's are not
            right = _optional(right)
        if kind in ("RIGHT", "OUTER", "FULL"):
            left = _optional(left)
        if not names:
            return left + right
        merged = {name: frozenset().union(*(c.reads for r in left + right for c in r.columns if c.name == name))
                  for name in names}

        def merge(relations: list[_Relation], hide: bool) -> list[_Relation]:
            return [_Relation(r.alias, [replace(c, reads=merged[c.name], direct=False, optional=False, in_star=not hide)
                                        if c.name in merged else c for c in r.columns], r.opaque)
                    for r in relations]
        return merge(left, False) + merge(right, True)

    def joined(self, item: dict, relations: list[_Relation], using: set[str | None], scope: _Scope) -> None:
        """Called with the two sides of a join before USING merges their columns (see :class:`_Picking`)."""

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
        function = str(expr.get("function_name", "")).lower()
        if kind == "WINDOW" or (kind == "FUNCTION" and function in aggregate_functions()):
            if kind == "WINDOW":
                per_person = any(self.is_person_key(term, scope, earlier) for term in expr.get("partitions") or [])
            else:
                per_person = scope.per_person
            if not per_person:  # a value of the group, and of whatever it shows of its rows (max(mrn) is an MRN)
                shown = ("class", "partitions", *(("children", "arguments", "filter") if function in _COUNTS else ()))
                return ROWS_COUNTED | self.reads({k: v for k, v in expr.items() if k not in shown}, scope, earlier)
            if function in _COUNTS:
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
                if here is not scope and here.relations:
                    self.outer_refs.append(".".join(expr["column_names"]))
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


def sql_column_roles(sql: str, schema: pa.Schema, inputs: dict[str, dict[str, str | None]], *,
                     by_type: bool = True, computed: dict[str, frozenset[str]] | None = None,
                     unfollowed: list[str] | None = None) -> dict[str, str | None]:
    """The role of each column of ``schema`` (the query's result) from the columns it reads.

    A column computed from constants only, or an unchanged input column whose role is unclassified,
    takes the role its type gives (:func:`.identifiers.type_role`), as a column of no input would;
    without ``by_type``, such an input column holding numbers stays unclassified (a number may be
    a phone number or an SSN: a de-identification profile needs it declared). Raises :class:`Unparsable` for SQL
    DuckDB cannot parse. ``computed`` (when given) gets the columns whose values are computed from
    input columns, not an input column's own, each with the roles of the columns it reads;
    ``unfollowed`` (when given) what could not be followed (then every column reads everything).
    """
    tree = parse(sql)
    everything: Reads = frozenset(role for roles in inputs.values() for role in roles.values())
    try:
        found = _Lineage(inputs).node(tree, None)
    except Unfollowable as exc:
        found = []
        if unfollowed is not None:
            unfollowed.append(str(exc))
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
        if not column.reads:
            role = type_role(output)
        elif role is None and column.direct:
            role = type_role(output, numbers=by_type)
        out[output.name] = role
        if computed is not None and column.reads and not column.direct:
            computed[output.name] = frozenset(r for r in column.reads if r in ROLES)
    return out


# --- rows chosen by an identifier ------------------------------------------------------------------
_KEY_EQUALITIES = frozenset({"COMPARE_EQUAL", "COMPARE_NOT_DISTINCT_FROM"})
_PREDICATE_OPERATORS = frozenset({"COMPARE_IN", "COMPARE_NOT_IN"})
_PRESENCE_OPERATORS = frozenset({"OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"})
_LOGIC = frozenset({"CONJUNCTION_AND", "CONJUNCTION_OR", "OPERATOR_NOT"})
_PREDICATE_FUNCTIONS = frozenset({
    "~~", "!~~", "~~*", "!~~*", "~~~", "!~~~", "^@", "like_escape", "not_like_escape", "ilike_escape",
    "not_ilike_escape", "glob", "regexp_matches", "regexp_full_match", "starts_with", "prefix", "suffix", "ends_with",
    "contains", "list_contains", "list_has", "array_contains", "array_has", "list_has_any", "list_has_all",
    "array_has_any", "array_has_all", "list_position", "list_indexof", "array_position", "array_indexof",
    "nullif", "greatest", "least", "instr", "strpos", "position", "jaccard", "levenshtein", "damerau_levenshtein",
    "jaro_similarity", "jaro_winkler_similarity", "hamming", "mismatches", "editdist3", "map_extract",
    "element_at", "map_contains", "json_contains", "isnan", "isfinite", "isinf"})
"""Functions that compare their arguments (``LIKE`` is ``~~``): a value of one of them is a test."""
_CONDITIONAL_FUNCTIONS = frozenset({"if", "iif"})
_KEY_SHAPES = frozenset({"lower", "upper", "lcase", "ucase", "||", "concat"})
"""What a join key may go through on its way to an equality and stay the whole key (a prefix added,
its case changed): nothing that could cut it down to a constant."""
_KEY_CUTS = frozenset({"replace", "split_part", "trim"})
"""Cuts a join key may go through when they take the key column itself and constants
(``split_part(subject, '/', 2)``): cut once, the key is still the person's."""


@dataclass(frozen=True)
class Picks:
    """How a ``sql`` query chooses its rows, as far as identifying people goes (:func:`sql_picks`)."""

    conditions: tuple[str, ...]
    """Each condition that compares an identifier with anything but another identifier, roughly as written."""
    computed: frozenset[str]
    """Output columns holding an identifier not passed on unchanged (``nullif(patient_id, 'P1')``)."""
    outer: tuple[str, ...] = ()
    """Columns its subqueries (or LATERAL joins) read from the query around them: a correlated
    subquery compares rows with each other (``NOT EXISTS`` another row of the same day with
    another patient); ``?`` where the query cannot be followed."""


def _unnests(node: Any) -> list[dict]:
    """The ``unnest`` calls of a select list (each makes as many rows as its list holds), not
    looking into subqueries (each is a SELECT of its own)."""
    if isinstance(node, list):
        return [call for item in node for call in _unnests(item)]
    if not isinstance(node, dict) or node.get("class") == "SUBQUERY":
        return []
    if node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() in ("unnest", "unlist"):
        return [node]
    return [call for value in node.values() for call in _unnests(value)]


def _identifying(reads: Reads) -> bool:
    return any(identifying(role) for role in reads)


def _span(sql: str, expr: Any) -> str:
    """The text of an expression, from the query locations of it and everything it holds."""
    spots: list[tuple[int, int]] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            if isinstance(node.get("query_location"), int) and node["query_location"] < len(sql):
                spots.append((node["query_location"], int(node.get("query_location_length") or 0)))
            for value in node.values():
                visit(value)
    visit(expr)
    if not spots:
        return "a condition"
    text = " ".join(sql[min(s for s, _ in spots):max(s + n for s, n in spots)].split())
    return text if len(text) <= 120 else text[:119] + "…"


class _Picking(_Lineage):
    """Follows a query as :class:`_Lineage` does and notes every condition that picks people out by
    an identifier: a comparison, IN, LIKE, BETWEEN or any function that compares, anywhere (WHERE,
    HAVING, QUALIFY, JOIN ON, a CASE, an aggregate's FILTER, the select list), whose operands read
    a role that is no cell dimension; except ``IS [NOT] NULL`` of an unchanged identifier column and
    an equality of two identifier keys (a join). ORDER BY an identifier is a pick too where LIMIT
    or DISTINCT ON keeps the first rows only."""

    def __init__(self, sql: str, inputs: dict[str, dict[str, str | None]], computed: dict[str, frozenset[str]]):
        super().__init__(inputs)
        for alias, columns in self.inputs.items():
            changed = {c.lower() for c in computed.get(alias, frozenset())}
            self.inputs[alias] = [replace(c, direct=c.direct and c.name not in changed,
                                          optional=c.optional and c.name not in changed) for c in columns]
        self.sql = sql
        self.everything: Reads = frozenset(role for roles in inputs.values() for role in roles.values())
        self.found: dict[str, None] = {}

    def note(self, expr: Any, template: str = "{}") -> None:
        self.found.setdefault(template.format(_span(self.sql, expr)))

    def select(self, node: dict, scope: _Scope) -> list[_Column]:
        out = super().select(node, scope)
        for call in _unnests(node.get("select_list")):
            reads = self.safe_reads(call, scope, out)
            if _identifying(reads) or "count" in reads:
                self.note(call, "{}, whose rows depend on an identifier or a group's size")
        for key in ("where_clause", "having", "qualify"):
            self.scan(node.get(key), scope, out, condition=True)
        for key in ("select_list", "group_expressions", "modifiers", "sample"):
            self.scan(node.get(key), scope, out, condition=False)
        modifiers = node.get("modifiers") or []
        if any(m.get("type") in ("LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER", "DISTINCT_MODIFIER") for m in modifiers):
            for order in (o for m in modifiers if m.get("type") == "ORDER_MODIFIER" for o in m.get("orders", [])):
                reads = self.safe_reads(order.get("expression"), scope, out)
                if _identifying(reads) or "count" in reads:
                    self.note(order.get("expression"), "ORDER BY {} with LIMIT or DISTINCT ON")
        return out

    def from_item(self, item: dict | None, scope: _Scope) -> list[_Relation]:
        """A table function in FROM whose arguments read an identifier makes rows from it (``unnest(CASE
        WHEN patient_id = … THEN [1] ELSE [] END)`` keeps one person's rows): a pick, whatever it compares."""
        relations = super().from_item(item, scope)
        if (item or {}).get("type") == "TABLE_FUNCTION":
            assert item is not None
            reads = self.safe_reads(item.get("function"), scope, [])
            if _identifying(reads) or "count" in reads:
                self.note(item.get("function"), "{} in FROM, whose rows depend on an identifier or a group's size")
        return relations

    def joined(self, item: dict, relations: list[_Relation], using: set[str | None], scope: _Scope) -> None:
        self.scan(item.get("condition"), _Scope(relations, scope, {}, scope.lambdas), [], condition=True)
        for name in using:
            sides = [c for r in relations for c in r.columns if c.name == name]
            if _identifying(frozenset().union(*(c.reads for c in sides))) and \
                    not all(c.direct and _all_identifying(c.reads) for c in sides):
                self.found.setdefault(f"USING ({name})")

    # --- expressions -------------------------------------------------------------------------------
    def safe_reads(self, expr: Any, scope: _Scope, earlier: list[_Column]) -> Reads:
        """What an expression reads; everything when it cannot be followed."""
        try:
            return self.reads(expr, scope, earlier)
        except Unfollowable:
            return self.everything

    def scan(self, expr: Any, scope: _Scope, earlier: list[_Column], condition: bool) -> None:
        """Note the picks in an expression; ``condition``: its value decides which rows are kept."""
        if isinstance(expr, list):
            for item in expr:
                self.scan(item, scope, earlier, condition)
            return
        if not isinstance(expr, dict):
            return
        kind, kind_type = expr.get("class"), expr.get("type")
        if kind is None:
            self.scan(list(expr.values()), scope, earlier, condition=False)
            return
        if kind in _LEAVES or kind == "COLUMN_REF" and not condition:
            return
        if kind == "LAMBDA":
            params = [e["column_names"][0] for e in _column_refs(expr["lhs"])]
            inner = _Scope(scope.relations, scope.parent, scope.ctes, scope.lambdas | {p.lower() for p in params})
            self.scan(expr["expr"], inner, earlier, condition=False)
            return
        if kind == "CASE":
            for check in expr.get("case_checks") or []:
                self.scan(check.get("when_expr"), scope, earlier, condition=True)
                self.scan(check.get("then_expr"), scope, earlier, condition=False)
            self.scan(expr.get("else_expr"), scope, earlier, condition=False)
            return
        if kind_type in _LOGIC:
            if kind_type == "OPERATOR_NOT" and any(
                    isinstance(c, dict) and c.get("class") == "COMPARISON" and c.get("type") in _KEY_EQUALITIES
                    and _identifying(self.safe_reads(c, scope, earlier)) for c in expr.get("children") or []):
                self.note(expr)  # NOT (w.encounter_id = v.encounter_id): every other row, no join
                return
            self.scan(expr.get("children"), scope, earlier, condition)
            return
        if kind == "SUBQUERY":
            columns = self.subquery(expr, scope)
            if expr.get("child") is not None:
                self.test_any(expr, columns, scope, earlier)
                self.scan(expr.get("child"), scope, earlier, condition=False)
            return
        name = str(expr.get("function_name", "")).lower()
        if kind in ("FUNCTION", "WINDOW"):
            self.scan(expr.get("filter") or expr.get("filter_expr"), scope, earlier, condition=True)
            arguments = _arguments(expr)
            if name in _CONDITIONAL_FUNCTIONS and arguments:
                self.scan(arguments[0], scope, earlier, condition=True)
                self.scan(arguments[1:], scope, earlier, condition=False)
                return
        if kind == "COMPARISON" or kind == "BETWEEN" or kind_type in _PREDICATE_OPERATORS or \
                kind_type in _PRESENCE_OPERATORS or (kind == "FUNCTION" and name in _PREDICATE_FUNCTIONS) or condition:
            self.test(expr, scope, earlier)
        for key, value in expr.items():
            if key not in ("class", "filter", "filter_expr"):
                self.scan(value, scope, earlier, condition=False)

    def subquery(self, expr: dict, scope: _Scope) -> list[_Column]:
        try:
            return self.node(expr["subquery"]["node"], scope)
        except Unfollowable:
            return [_Column(None, self.everything)]

    def test(self, expr: dict, scope: _Scope, earlier: list[_Column]) -> None:
        """Note a test (or a kept row's condition) that reads an identifier, unless it is exempt, or
        a value of a group of rows (``QUALIFY count(*) OVER (PARTITION BY department, day) = 1``
        keeps the days of one visit)."""
        reads = self.safe_reads({k: v for k, v in expr.items() if k != "class"}, scope, earlier)
        if not _identifying(reads):
            if "count" in reads:
                self.note(expr, "{} (a test of a group's size or value)")
            return
        kind_type = expr.get("type")
        if kind_type in _PRESENCE_OPERATORS:  # a key's presence, or whether an outer join matched on it
            child = (expr.get("children") or [None])[0]
            if isinstance(child, dict) and child.get("class") == "COLUMN_REF" and \
                    self.direct_column(child, scope, earlier, matched=True):
                return
        if expr.get("class") == "COMPARISON" and kind_type in _KEY_EQUALITIES and \
                self.is_key(expr["left"], scope, earlier) and self.is_key(expr["right"], scope, earlier):
            return
        self.note(expr)

    def test_any(self, expr: dict, columns: list[_Column], scope: _Scope, earlier: list[_Column]) -> None:
        """``x IN (SELECT …)`` and ``x = ANY (…)``: a semi-join on keys, or a pick."""
        reads = frozenset().union(self.safe_reads(expr["child"], scope, earlier), *(c.reads for c in columns))
        if not _identifying(reads):
            if "count" in reads:
                self.note(expr, "{} (a test of a group's size or value)")
            return
        key_column = len(columns) == 1 and columns[0].direct and _all_identifying(columns[0].reads)
        if expr.get("comparison_type") in _KEY_EQUALITIES and key_column and \
                self.is_key(expr["child"], scope, earlier):
            return
        self.note(expr)

    def is_key(self, expr: Any, scope: _Scope, earlier: list[_Column], cut: bool = True) -> bool:
        """Whether an operand is a whole identifier key: an unchanged identifier column, perhaps cast,
        its case changed, concatenated with constants or cut once (:data:`_KEY_CUTS`)."""
        if not isinstance(expr, dict):
            return False
        kind = expr.get("class")
        if kind == "COLUMN_REF":
            return self.direct_column(expr, scope, earlier)
        if kind == "CAST":
            return self.is_key(expr.get("child"), scope, earlier, cut)
        if kind != "FUNCTION":
            return False
        name = str(expr.get("function_name", "")).lower()
        arguments = _arguments(expr)
        if name in _KEY_SHAPES:
            keys = [a for a in arguments if not (isinstance(a, dict) and a.get("class") == "CONSTANT")]
            return bool(keys) and all(self.is_key(a, scope, earlier, cut=False) for a in keys)
        if name in _KEY_CUTS and cut and arguments and (name != "trim" or len(arguments) == 1):
            first = arguments[0]
            while isinstance(first, dict) and first.get("class") == "CAST":
                first = first.get("child")
            return isinstance(first, dict) and first.get("class") == "COLUMN_REF" and \
                self.direct_column(first, scope, earlier) and \
                all(isinstance(a, dict) and a.get("class") == "CONSTANT" for a in arguments[1:])
        return False

    def direct_column(self, expr: dict, scope: _Scope, earlier: list[_Column], matched: bool = False) -> bool:
        """Whether a column reference is an input's identifier column, unchanged (or, ``matched``,
        also one on the optional side of an outer join)."""
        parts = [p.lower() for p in expr["column_names"]]
        if parts[0] in scope.lambdas:
            return False

        def unchanged(columns: list[_Column]) -> bool:
            return bool(columns) and all((c.direct or matched and c.optional) and _all_identifying(c.reads)
                                         for c in columns)
        here: _Scope | None = scope
        while here is not None:
            found = _candidates(here, parts)
            if found is not None:
                return unchanged(found)
            here = here.parent
        return unchanged([c for c in earlier if c.name == parts[0]])


def _all_identifying(reads: Reads) -> bool:
    return bool(reads) and all(identifying(role) for role in reads)


def _candidates(scope: _Scope, parts: list[str]) -> list[_Column] | None:
    """The columns a reference may name in one scope (None: none here; [] where one is opaque)."""
    if len(parts) >= 2:
        for qualifier, column in ((parts[0], parts[1]), *(((parts[1], parts[2]),) if len(parts) >= 3 else ())):
            for relation in scope.relations:
                if relation.alias == qualifier:
                    if relation.opaque is not None:
                        return []
                    found = [c for c in relation.columns if c.name == column]
                    if found:
                        return found
    found = [c for r in scope.relations for c in r.columns if c.name == parts[0]]
    if found:
        return found
    return [] if any(r.opaque is not None for r in scope.relations) else None


def _arguments(expr: dict) -> list[Any]:
    """A function's argument expressions (DuckDB keeps them as ``arguments`` or ``children``)."""
    if "arguments" in expr:
        return [a.get("expression") if isinstance(a, dict) and "expression" in a else a
                for a in expr.get("arguments") or []]
    return list(expr.get("children") or [])


def sql_picks(sql: str, schema: pa.Schema, inputs: dict[str, dict[str, str | None]],
              computed: dict[str, frozenset[str]] | None = None) -> Picks:
    """The conditions by which a query picks people out by an identifier, and which of its output
    columns hold an identifier it computed (``computed`` names the inputs' own such columns, which
    are not unchanged here either). A query that cannot be followed picks by every identifier it
    could read. Raises :class:`Unparsable` for SQL DuckDB cannot parse."""
    tree = parse(sql)
    picking = _Picking(sql, inputs, computed or {})
    try:
        found = picking.node(tree, None)
    except Unfollowable as exc:
        if not _identifying(picking.everything):
            return Picks((), frozenset(), ("?",))
        return Picks((f"a query that cannot be followed ({exc})",),
                     frozenset(f.name for f in schema), ("?",))
    if len(found) == len(schema):
        pairs = list(zip(schema, found, strict=True))
    else:
        by_name = {c.name: c for c in found}
        pairs = [(f, by_name.get(f.name.lower(), _Column(f.name, picking.everything))) for f in schema]
    computed_here = frozenset(f.name for f, c in pairs if _identifying(c.reads) and not c.direct)
    return Picks(tuple(picking.found), computed_here, tuple(picking.outer_refs))
