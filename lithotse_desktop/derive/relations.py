"""Which published aggregates of one input can be differenced against each other, and how.

Two aggregates over the same input are related when the rows of one (the *inner*) are a subset
of the rows of the other (the *outer*): every filter and date bound of the outer also holds in
the inner. Their *common margin* is what both can be summed to: the dimensions they share (same
column, age bands or code system, not merely the same name) and the coarsest grain both nest in
(day → week; day → month → quarter → year; anything → the whole range). For every cell of that
margin, the inner cells summed plus a *difference* (the outer's rows the inner leaves out) equal
the outer cells summed. The difference is known to be zero when every extra condition of the
inner is a filter on a dimension the outer publishes (then it just selects outer cells) or a
date bound on a period boundary of the outer; otherwise it is an unpublished quantity a reader
learns by subtraction, so it is protected like a cell.

Tables filtered on disjoint values of one column (``a in [x, y]``, ``a in [z]``) are not nested,
but together they are *parts* of a table without that filter (:class:`Partition`): per cell of
the margin all of them share, the parts summed plus a *remainder* (the rows whose value is in no
part's set) equal that table's cells. A reader who knows the column's values knows when the
remainder is zero; when the parts' sets cover the table's own filter on the column, the spec
says so.

Everything here reads specs and published cells only, so the build and ``lithotse privacy
audit`` (which sees what a reader sees) derive the same relations.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .compile import PERIOD
from .spec import dimension_alias

CHAIN = {"day": 0, "month": 1, "quarter": 2, "year": 3}
EVALUABLE_OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "between", "is null", "is not null",
                 "contains")


def period_start(day: dt.date, grain: str) -> dt.date:
    if grain == "day":
        return day
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
    if grain == "year":
        return day.replace(month=1, day=1)
    raise ValueError(grain)


def period_end(start: dt.date, grain: str) -> dt.date:
    """The last day of the period that starts on ``start``."""
    if grain == "day":
        return start
    if grain == "week":
        return start + dt.timedelta(days=6)
    months = {"month": 1, "quarter": 3, "year": 12}[grain]
    month = start.month - 1 + months
    return dt.date(start.year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)


def common_grain(a: str, b: str) -> str:
    """The finest grain both ``a`` and ``b`` periods nest in (``none``: the whole range)."""
    if a == "none" or b == "none":
        return "none"
    if a == b:
        return a
    if "week" in (a, b):
        return b if a == "day" else (a if b == "day" else "none")
    return a if CHAIN[a] > CHAIN[b] else b


def column_identity(spec: dict, column: str) -> tuple:
    """A column as a reader would know it: from the input, or from a named join."""
    join = spec.get("join")
    if join and column in join.get("columns", []):
        return ("joined", json.dumps({"input": join["input"], "on": join["on"]}, sort_keys=True), column)
    return ("input", column)


def dimension_identity(spec: dict, d: Any) -> tuple:
    """What a ``group_by`` entry computes, whatever it is called in the output."""
    if isinstance(d, str):
        return ("column", column_identity(spec, d))
    if "column" in d:
        return ("column", column_identity(spec, d["column"]))
    if "age_band" in d:
        band = d["age_band"]
        return ("age_band", column_identity(spec, band["birth_date"]),
                tuple(band.get("bands", [0, 18, 45, 65, 85])), spec.get("date_field"))
    return ("code", column_identity(spec, d["code"]["column"]), d["code"]["system"])


def additive_quantities(spec: dict) -> dict[tuple, str]:
    """Additive measures of an aggregate (``count`` and ``sum``), by what they add up, to the
    output column publishing them."""
    out: dict[tuple, str] = {}
    for m in spec.get("measures", []):
        if m["fn"] in ("count", "sum"):
            column = column_identity(spec, m["column"]) if "column" in m else None
            out.setdefault((m["fn"], column), m["as"])
    return out


@dataclass(frozen=True)
class _Range:
    date_field: str | None
    start: str | None
    end: str | None
    not_null: bool


def _range(spec: dict) -> _Range:
    bounded = bool(spec.get("from") or spec.get("to"))
    return _Range(spec.get("date_field"), spec.get("from") or None, spec.get("to") or None,
                  bounded or spec.get("grain", "none") != "none")


def _filters(spec: dict) -> dict[str, dict]:
    return {json.dumps(f, sort_keys=True): f for f in spec.get("filters", [])}


def _value_set(f: dict) -> set | None:
    """The values an ``=`` or ``in`` filter keeps (None for other operators)."""
    if f["op"] == "=":
        return {json.dumps(f["value"], sort_keys=True)}
    if f["op"] == "in" and isinstance(f["value"], list):
        return {json.dumps(v, sort_keys=True) for v in f["value"]}
    return None


def _implied(outer_filter: dict, inner_filters: Any) -> bool:
    """Whether every row the inner's filters keep passes ``outer_filter``: the same filter, or
    one keeping a subset of its values on the same column (``a in [x]`` implies ``a in [x, y]``)."""
    wanted = _value_set(outer_filter)
    for f in inner_filters:
        if f == outer_filter:
            return True
        kept = _value_set(f)
        if wanted is not None and kept is not None and f["column"] == outer_filter["column"] and kept <= wanted:
            return True
    return False


def _range_implies(inner: _Range, outer: _Range) -> bool:
    """Whether every row inside ``inner``'s date condition is inside ``outer``'s."""
    if not outer.not_null:
        return True
    if not inner.not_null or inner.date_field != outer.date_field:
        return False
    if outer.start and (not inner.start or inner.start < outer.start):
        return False
    return not (outer.end and (not inner.end or inner.end > outer.end))


@dataclass
class Relation:
    """``inner`` rows are a subset of ``outer`` rows; their cells meet on a common margin."""

    inner: str
    outer: str
    common: list[tuple[str, str]]
    """(inner alias, outer alias) of each shared dimension."""
    grain: str
    selections: list[tuple[str, dict]] = field(default_factory=list)
    """(outer alias, filter) picking the outer cells the inner's extra filters keep."""
    period_range: tuple[dt.date | None, dt.date | None] | None = None
    """Outer periods the inner's narrower date range keeps (on the outer's period boundaries)."""
    difference: bool = False
    """Whether outer rows the inner leaves out remain, unpublished, in each margin cell."""
    inner_periods: tuple[dt.date | None, dt.date | None, str] | None = None
    """(first day, last day, inner grain) when only the inner's periods inside the outer's date
    bounds are a subset of it (the bounds fall on the inner's period edges)."""
    within: tuple[dt.date | None, dt.date | None] | None = None
    """The inner's date bounds when they are all it leaves out: a margin period wholly inside
    them has no difference (a reader knows that as well as the build does)."""

    def describe(self) -> str:
        return f"{self.inner} ⊆ {self.outer}"

    @property
    def tables(self) -> list[str]:
        return [self.inner, self.outer]


@dataclass
class Partition:
    """``parts`` keep disjoint values of one column of ``outer``'s rows and nothing else differs:
    per margin cell, the parts' cells plus the remainder (outer rows in no part) equal the outer's."""

    outer: str
    parts: list[str]
    column: str
    values: list[Any]
    """Every value some part keeps."""
    common: dict[str, list[str]]
    """Per member, the aliases of the margin's dimensions (in the outer's order)."""
    grain: str
    covered: bool
    """Whether the parts keep every value the outer's own filter on the column keeps (so the
    remainder is zero by the specs alone)."""

    @property
    def tables(self) -> list[str]:
        return [*self.parts, self.outer]

    @property
    def key(self) -> tuple[str, ...]:
        return (self.outer, *self.parts)

    def describe(self) -> str:
        return f"{' + '.join(self.parts)} + rest = {self.outer}"


def _value_kind(typ: pa.DataType) -> str | None:
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return "number"
    if pa.types.is_boolean(typ):
        return "bool"
    return None


def _fits(value: Any, kind: str | None) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return False


def _selectable(f: dict, outer: dict, types: dict[str, pa.DataType]) -> str | None:
    """The outer dimension (alias) a filter can be evaluated on, or None."""
    if f["op"] not in EVALUABLE_OPS:
        return None
    wanted = column_identity(outer, f["column"])
    for d in outer.get("group_by", []):
        if isinstance(d, dict) and "column" not in d:
            continue
        alias = dimension_alias(d)
        if column_identity(outer, d if isinstance(d, str) else d["column"]) != wanted:
            continue
        kind = _value_kind(types.get(alias, pa.null()))
        if f["op"] in ("is null", "is not null"):
            return alias
        values = f["value"] if isinstance(f["value"], list) else [f["value"]]
        if f["op"] == "contains" and kind != "text":
            return None
        return alias if all(_fits(v, kind) for v in values) else None
    return None


def matches(f: dict, value: Any) -> bool:
    """A filter evaluated on one published dimension value, as the SQL WHERE would."""
    op = f["op"]
    target: Any = f.get("value")
    if op == "is null":
        return value is None
    if op == "is not null":
        return value is not None
    if value is None:
        return False
    if op == "=":
        return bool(value == target)
    if op == "!=":
        return bool(value != target)
    if op == "in":
        return value in target
    if op == "not in":
        return value not in target
    if op == "between":
        return bool(target[0] <= value <= target[1])
    if op == "contains":
        return str(target) in str(value)
    return bool({"<": value < target, "<=": value <= target, ">": value > target,
                 ">=": value >= target}[op])


def _aligned(rng: _Range, outer: dict) -> tuple[dt.date | None, dt.date | None] | None:
    """``rng``'s date bounds as ``outer``'s periods, when they fall on its period edges."""
    grain = outer.get("grain", "none")
    if grain == "none" or rng.date_field != outer.get("date_field"):
        return None
    start = dt.date.fromisoformat(rng.start) if rng.start else None
    end = dt.date.fromisoformat(rng.end) if rng.end else None
    if start and period_start(start, grain) != start:
        return None
    if end and period_end(period_start(end, grain), grain) != end:
        return None
    return start, end


def relate(inner: dict, outer: dict, outer_types: dict[str, pa.DataType]) -> Relation | None:
    """How ``inner``'s cells sum into ``outer``'s, or None when its rows are not a subset."""
    if json.dumps(inner["input"], sort_keys=True) != json.dumps(outer["input"], sort_keys=True):
        return None
    inner_filters, outer_filters = _filters(inner), _filters(outer)
    if not all(_implied(f, inner_filters.values()) for f in outer_filters.values()):
        return None
    inner_range, outer_range = _range(inner), _range(outer)
    inner_periods = None
    if not _range_implies(inner_range, outer_range):
        inner_periods = _clipped(inner, inner_range, outer_range)
        if inner_periods is None:
            return None
        starts = [b for b in (inner_range.start, outer_range.start) if b]
        ends = [b for b in (inner_range.end, outer_range.end) if b]
        inner_range = _Range(inner_range.date_field, max(starts) if starts else None,
                             min(ends) if ends else None, True)
    extra = [inner_filters[k] for k in inner_filters if k not in outer_filters]
    selections = []
    difference = False
    for f in extra:
        alias = _selectable(f, outer, outer_types)
        if alias is None:
            difference = True
        else:
            selections.append((alias, f))
    period_range = None
    within = None
    if inner_range != outer_range and _range_implies(outer_range, inner_range) is False:
        period_range = _aligned(inner_range, outer) if inner_range.not_null and outer_range.not_null else None
        if period_range is None:
            difference = True
            if not extra and inner_range.date_field == outer.get("date_field"):
                within = (dt.date.fromisoformat(inner_range.start) if inner_range.start else None,
                          dt.date.fromisoformat(inner_range.end) if inner_range.end else None)
    if difference:
        selections, period_range = [], None
    outer_dims = {dimension_identity(outer, d): dimension_alias(d) for d in outer.get("group_by", [])}
    common = []
    for d in inner.get("group_by", []):
        ident = dimension_identity(inner, d)
        if ident in outer_dims:
            common.append((dimension_alias(d), outer_dims[ident]))
    grain = "none"
    if inner.get("date_field") == outer.get("date_field"):
        grain = common_grain(inner.get("grain", "none"), outer.get("grain", "none"))
    return Relation(inner["name"], outer["name"], common, grain, selections, period_range, difference,
                    inner_periods, within if grain != "none" else None)


def _clipped(inner: dict, inner_range: _Range,
             outer_range: _Range) -> tuple[dt.date | None, dt.date | None, str] | None:
    """The outer's date bounds as a run of the inner's periods, when the inner has a grain and
    those bounds fall on its period edges: inside them the inner's cells are a subset."""
    edges = _aligned(outer_range, inner) if inner_range.not_null else None
    return None if edges is None else (*edges, inner["grain"])


def in_inner_periods(relation: Relation, key: dict[str, Any]) -> bool:
    """Whether an inner cell takes part in the relation (see :attr:`Relation.inner_periods`)."""
    if relation.inner_periods is None:
        return True
    start, end, grain = relation.inner_periods
    period = key.get(PERIOD)
    if period is None:
        return False
    return (start is None or period >= start) and (end is None or period_end(period, grain) <= end)


def relations(specs: list[dict], types: dict[str, dict[str, pa.DataType]]) -> list[Relation]:
    """Every related ordered pair among aggregates of one input (equal row sets: once)."""
    out = []
    ordered = sorted(specs, key=lambda s: s["name"])
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            ab = relate(a, b, types[b["name"]])
            if ab is not None:
                out.append(ab)
                if ab.difference or ab.selections or ab.period_range or ab.inner_periods:
                    continue
            ba = relate(b, a, types[a["name"]])
            if ba is not None and ab is None:
                out.append(ba)
    return out


def _rows(spec: dict) -> tuple:
    """What decides which input rows a table reads."""
    return (sorted(_filters(spec)), _range(spec), json.dumps(spec.get("join"), sort_keys=True))


def _selected(relation: Relation, by_name: dict[str, dict]) -> tuple[frozenset, frozenset] | None:
    """The relation's selections (as filters, and as the outer's dimensions they read), or None
    when its equations are not "inner cells = selected outer cells" (a difference, a date range)."""
    if relation.difference or relation.period_range or relation.inner_periods:
        return None
    outer = by_name[relation.outer]
    aliases = {dimension_alias(d): d for d in outer.get("group_by", [])}
    return (frozenset(json.dumps(f, sort_keys=True) for _, f in relation.selections),
            frozenset(dimension_identity(outer, aliases[a]) for a, _ in relation.selections))


def _margin(relation: Relation, by_name: dict[str, dict]) -> frozenset:
    inner = by_name[relation.inner]
    aliases = {dimension_alias(d): d for d in inner.get("group_by", [])}
    return frozenset(dimension_identity(inner, aliases[a]) for a, _ in relation.common)


def essential(rels: list[Relation], by_name: dict[str, dict]) -> list[Relation]:
    """The relations whose equations are not sums of other kept ones'.

    A relation without a difference or date clipping says, per cell of its margin, inner cells =
    the outer cells its selections keep. ``i``–``o`` follows from ``i``–``b`` and ``b``–``o``
    when both margins are at least as fine as its own (their dimensions include its dimensions,
    their grains nest in its grain) and either ``b`` reads the same rows as ``i`` (``i`` = ``b``
    plainly, ``b``'s cells selected as ``o``'s are) or the same rows as ``o`` (``i`` = ``b``'s
    selected cells, and ``b`` = ``o`` on a margin that includes the selected dimensions): summing
    the supporting equations over the cells of each of its margin cells gives it. Dropping such a
    relation leaves the values a reader can reconstruct exactly as they were (each drop keeps
    the span of the equations). The middle table must publish every additive quantity the two
    share, since the audit relates each quantity only through tables publishing it. Of the 190
    related pairs of ``bench/privacy.py``'s 20 tables, 41 are kept. Relations with a difference
    or clipped dates are all kept."""
    rows = {name: _rows(spec) for name, spec in by_name.items()}
    selected = {id(r): _selected(r, by_name) for r in rels}
    margins = {id(r): _margin(r, by_name) for r in rels}
    kept = {id(r) for r in rels}
    directed: dict[tuple[str, str], Relation] = {}
    for r in rels:
        directed.setdefault((r.inner, r.outer), r)

    def usable(r: Relation | None, target: Relation, selections: frozenset, within: frozenset) -> bool:
        chosen = selected[id(r)] if r is not None else None
        if r is None or id(r) not in kept or chosen is None:
            return False
        return (chosen[0] == selections and within <= margins[id(r)]
                and common_grain(r.grain, target.grain) == target.grain)

    def plain(a: str, b: str, target: Relation, within: frozenset) -> bool:
        if rows[a] != rows[b]:
            return False
        empty: frozenset = frozenset()
        return (usable(directed.get((a, b)), target, empty, within)
                or usable(directed.get((b, a)), target, empty, within))

    quantities = {name: set(additive_quantities(spec)) for name, spec in by_name.items()}

    def implied(r: Relation) -> bool:
        chosen = selected[id(r)]
        if chosen is None:
            return False
        filters, dims = chosen
        margin = margins[id(r)]
        shared = quantities[r.inner] & quantities[r.outer]
        for middle in sorted(by_name):
            if middle in (r.inner, r.outer) or not shared <= quantities[middle]:
                continue  # the audit ties each quantity only through tables publishing it
            if plain(r.inner, middle, r, margin) and usable(directed.get((middle, r.outer)), r, filters, margin):
                return True
            if plain(middle, r.outer, r, margin | dims) and usable(directed.get((r.inner, middle)), r, filters,
                                                                    margin):
                return True
        return False

    def coarse_first(r: Relation) -> tuple:
        return (-CHAIN.get(r.grain, 4) if r.grain != "none" else -5, len(margins[id(r)]), r.inner, r.outer)

    for r in sorted((r for r in rels if selected[id(r)] is not None), key=coarse_first):
        if implied(r):
            kept.discard(id(r))
    return [r for r in rels if id(r) in kept]


def _part_filter(part: dict, outer: dict, types: dict[str, pa.DataType]) -> dict | None:
    """The one ``=``/``in`` filter that is all ``part`` adds to ``outer``'s conditions, on a column
    the outer does not publish as a dimension, or None."""
    rel = relate(part, outer, types)
    if rel is None or not rel.difference or rel.inner_periods is not None:
        return None
    inner_range, outer_range = _range(part), _range(outer)
    if not (_range_implies(inner_range, outer_range) and _range_implies(outer_range, inner_range)):
        return None
    extra = [f for k, f in _filters(part).items() if k not in _filters(outer)]
    if len(extra) != 1 or _value_set(extra[0]) is None or _selectable(extra[0], outer, types) is not None:
        return None
    return extra[0]


def _disjoint_families(sets: list[set]) -> list[list[int]]:
    """Maximal families (two or more) of pairwise disjoint sets (Bron–Kerbosch on the graph of
    disjoint pairs); every smaller family's equation follows from a maximal one's."""
    apart = {i: {j for j in range(len(sets)) if j != i and not sets[i] & sets[j]} for i in range(len(sets))}
    found: list[list[int]] = []

    def grow(chosen: list[int], candidates: set[int], excluded: set[int]) -> None:
        if not candidates and not excluded:
            if len(chosen) > 1:
                found.append(sorted(chosen))
            return
        for i in sorted(candidates):
            grow(chosen + [i], candidates & apart[i], excluded & apart[i])
            candidates = candidates - {i}
            excluded = excluded | {i}

    grow([], set(range(len(sets))), set())
    return found


def partitions(specs: list[dict], types: dict[str, dict[str, pa.DataType]]) -> list[Partition]:
    """Every maximal family of aggregates of one input that split another's rows on disjoint
    values of one column (see :class:`Partition`)."""
    ordered = sorted(specs, key=lambda s: s["name"])
    return [p for outer in ordered for p in partitions_of(outer, ordered, types[outer["name"]])]


def partitions_of(outer: dict, specs: list[dict], outer_types: dict[str, pa.DataType]) -> list[Partition]:
    """The partitions whose whole is ``outer``."""
    by_column: dict[tuple, list[tuple[dict, dict]]] = {}
    for part in sorted(specs, key=lambda s: s["name"]):
        if part["name"] == outer["name"]:
            continue
        f = _part_filter(part, outer, outer_types)
        if f is not None:
            by_column.setdefault(column_identity(outer, f["column"]), []).append((part, f))
    out: list[Partition] = []
    for candidates in by_column.values():
        sets = [_value_set(f) or set() for _part, f in candidates]
        out.extend(_partition(outer, [candidates[i] for i in family]) for family in _disjoint_families(sets))
    return out


def _partition(outer: dict, members: list[tuple[dict, dict]]) -> Partition:
    column = members[0][1]["column"]
    kept: dict[str, Any] = {}
    for _part, f in members:
        for v in (f["value"] if f["op"] == "in" else [f["value"]]):
            kept.setdefault(json.dumps(v, sort_keys=True), v)
    own = [_value_set(f) for f in outer.get("filters", []) if f["column"] == column]
    covered = any(s is not None and s <= set(kept) for s in own)
    specs = [outer, *(p for p, _f in members)]
    shared = None
    for spec in specs:
        idents = [dimension_identity(spec, d) for d in spec.get("group_by", [])]
        shared = idents if shared is None else [i for i in shared if i in idents]
    common = {}
    for spec in specs:
        alias_of = {dimension_identity(spec, d): dimension_alias(d) for d in spec.get("group_by", [])}
        common[spec["name"]] = [alias_of[i] for i in shared or []]
    grain = outer.get("grain", "none")
    for spec in specs[1:]:
        grain = (common_grain(grain, spec.get("grain", "none"))
                 if spec.get("date_field") == outer.get("date_field") else "none")
    return Partition(outer["name"], [p["name"] for p, _f in members], column, list(kept.values()), common, grain,
                     covered)


def no_difference(relation: Relation, mkey: tuple) -> bool:
    """Whether a margin cell of a relation with a difference holds none of it for sure: its
    period lies wholly inside the inner's date bounds, which are all the inner leaves out."""
    if relation.within is None or mkey[0] is None:
        return False
    start, end = relation.within
    first, last = mkey[0], period_end(mkey[0], relation.grain)
    return (start is None or first >= start) and (end is None or last <= end)


def margin_key(key: dict[str, Any], aliases: list[str], grain: str) -> tuple:
    """A cell's key on a margin: its period coarsened to ``grain`` and the shared dimensions."""
    period = key.get(PERIOD)
    coarse = _period_start(period, grain) if grain != "none" and period is not None else None
    return (coarse, *map(key.get, aliases))


@functools.lru_cache(maxsize=1 << 16)
def _period_start(day: dt.date, grain: str) -> dt.date:
    """:func:`period_start` remembered: a group's hundreds of thousands of cells share a few
    hundred periods."""
    return period_start(day, grain)


def row_context(spec: dict) -> tuple:
    """What makes two tables' cells sums of the same rows per period: the rows they read and
    their grain. Tables sharing it share every margin of their common dimensions."""
    filters, rows_range, join = _rows(spec)
    return (tuple(filters), rows_range, join, spec.get("grain", "none"))
