"""The atoms of a group of aggregates over one input: what the disclosure audit solves over.

An atom is a class of input rows that no aggregate of the group tells apart: the same cell (or
"not selected") in every one of them. Every published cell is the sum of its atoms, whatever the
grains (weeks beside months), date ranges and filters, so the audit needs no relation between
the tables to see what a reader can combine (see :func:`.complementary._audit_atoms`).

They are counted by one GROUP BY over the loaded input, each aggregate's cell key computed only
where its own WHERE holds, with the same expressions as the aggregate's query (period, then
dimensions), so the keys are the cells' keys. The input is first grouped by the columns the
members read, a date read only for its period cut to the month where every member's period is
made of months: rows equal there fall in the same atom, and the members' keys are then computed
once per group of rows rather than once per row (5 million rows become ~80 thousand groups in
``bench/privacy.py``).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pyarrow as pa

from ..deferred import pyarrow_compute as pc
from .compile import DUCKDB, Compiled, Dialect, _dimension, _frame, _Params, day_expression


def joined_inputs(specs: list[dict], own: dict | None = None) -> dict[str, dict]:
    """Every input the members join, once each, by the relation the atoms' query reads it from:
    ``joined`` for ``own`` (the input the counting build's own query joins, loaded there under
    that name), else for the first member's; ``joined_1``, ``joined_2``… for the others, in the
    members' order. Joins of one input on other keys or columns read the same relation."""
    distinct: dict[str, dict] = {}
    for item in [*([own] if own is not None else []), *(spec["join"]["input"] for spec in specs if "join" in spec)]:
        distinct.setdefault(json.dumps(item, sort_keys=True), item)
    return {("joined" if i == 0 else f"joined_{i}"): item for i, item in enumerate(distinct.values())}


def compile_atoms(specs: list[dict], schemas: dict[str, pa.Schema], *, timezone: str = "UTC",
                  dialect: Dialect = DUCKDB, own: dict | None = None) -> Compiled:
    """Per atom: for member ``j``, ``__s{j}`` (it selects the rows), and its cell key as ``__c{j}_0``
    (the period, for a grain) and the next columns (its dimensions); with ``__n`` records.

    A join keeps at most one row of the joined input per input row (of a key's rows the one of
    least joined values), so each input row still falls in one cell of every member, whatever it
    joins: the FROM joins the input once to every distinct join of the members (each its own
    right side, taken per its own key and columns as the member's query takes it), and each
    member reads its joined columns from its own. ``schemas`` holds the input's schema and those
    of the relations of :func:`joined_inputs` (with the same ``own``)."""
    q = dialect.quote
    params = _Params(dialect)
    select: list[str] = []
    grouped_input = _grouped_input(specs, schemas["input"], timezone, params, dialect)
    records = "count(*)"
    base = q("input")
    if grouped_input is not None:
        relation, schema = grouped_input
        schemas = {**schemas, "input": schema}
        records = f"CAST(sum({q(RECORDS)}) AS BIGINT)"
        base = f"({relation})"
    relation_of = {json.dumps(item, sort_keys=True): name for name, item in joined_inputs(specs, own).items()}
    joins: dict[str, str] = {}  # each distinct join's part of the FROM, by the join
    for j, spec in enumerate(specs):
        join = spec.get("join")
        key = json.dumps(join, sort_keys=True)
        frame = _frame(spec, schemas, timezone, params, dialect, relation=base,
                       joined=relation_of[json.dumps(join["input"], sort_keys=True)] if join else "joined",
                       right_alias=f"r{list(joins).index(key) if key in joins else len(joins)}")
        if join:
            joins.setdefault(key, frame.join_sql)
        chosen = " AND ".join(f"({w})" for w in frame.where) or "true"
        chosen = f"coalesce(({chosen}), false)"
        select.append(f"{chosen} AS {q(f'__s{j}')}")
        keys = []
        if spec.get("grain", "none") != "none":
            assert frame.day_sql is not None, "a spec with a grain has a date field"
            keys.append(dialect.period(spec["grain"], frame.day_sql))
        keys += [_dimension(d, f"group_by[{i}]", frame, timezone, params, dialect)
                 for i, d in enumerate(spec.get("group_by", []))]
        select += [f"CASE WHEN {chosen} THEN {k} END AS {q(f'__c{j}_{i}')}" for i, k in enumerate(keys)]
    grouped = [s.rsplit(" AS ", 1)[1] for s in select]
    sql = (f"SELECT {', '.join(select)}, {records} AS {q(RECORDS)} FROM {base} AS l{''.join(joins.values())} "
           f"GROUP BY {', '.join(grouped)}")
    return Compiled(sql, params.values)


RECORDS = "__n"
MONTHS_MAKE = ("month", "quarter", "year", "none")
"""Grains whose periods are made of whole months (``none``: the date is not read for a period)."""


def _grouped_input(specs: list[dict], schema: pa.Schema, timezone: str, params: _Params,
                   dialect: Dialect) -> tuple[str, pa.Schema] | None:
    """The input grouped by what the members read (see the module's docstring), with its records
    as ``__n``; None where a member joins another input (its columns are not the input's)."""
    q = dialect.quote
    if any("join" in spec for spec in specs):
        return None
    read: set[str] = set()
    by_day: set[str] = set()
    for spec in specs:
        for d in spec.get("group_by", []):
            if isinstance(d, str):
                read.add(d)
            elif "column" in d:
                read.add(d["column"])
            elif "code" in d:
                read.add(d["code"]["column"])
            else:
                read.add(d["age_band"]["birth_date"])
                by_day.add(spec.get("date_field", ""))
        read.update(f["column"] for f in spec.get("filters", []))
        if spec.get("grain", "none") not in MONTHS_MAKE or spec.get("from") or spec.get("to"):
            by_day.add(spec.get("date_field", ""))
    dates = sorted({spec["date_field"] for spec in specs if spec.get("date_field")} - read)
    if not read <= set(schema.names) or not set(dates) <= set(schema.names) or RECORDS in schema.names:
        return None
    columns = [(q(name), schema.field(name)) for name in sorted(read)]
    for name in dates:
        reader = next(spec for spec in specs if spec.get("date_field") == name)
        day = day_expression(reader, lambda column, path: (q(column), schema.field(column).type),
                             timezone, params, dialect)
        columns.append((day if name in by_day else dialect.period("month", day), pa.field(name, pa.date32())))
    if not columns:
        return None
    listed = ", ".join(sql for sql, _ in columns)
    chosen = ", ".join(f"{sql} AS {q(f.name)}" for sql, f in columns)
    return (f"SELECT {chosen}, count(*) AS {q(RECORDS)} FROM {q('input')} GROUP BY {listed}",
            pa.schema([f for _, f in columns]))


class Atoms(NamedTuple):
    """The atoms of a :func:`compile_atoms` result, as :class:`.complementary.Group` takes them:
    per member name, each atom's cell key (period, then dimensions), None where the member does
    not select it; and each atom's records, a point where every published record count holds,
    from which the audit shows most hidden cells wide in a smaller model (see :mod:`.bounds`)."""

    columns: dict[str, list[tuple | None]]
    records: list[int]

    @property
    def keys(self) -> list[dict[str, tuple]]:
        """Per atom, member name → cell key, for the members that select it."""
        out: list[dict[str, tuple]] = [{} for _ in self.records]
        for name, column in self.columns.items():
            for atom, key in zip(out, column, strict=True):
                if key is not None:
                    atom[name] = key
        return out


def read_atoms(specs: list[dict], found: pa.Table) -> Atoms:
    """The atoms of ``found`` (the atoms query's result) that some member selects. Read with
    pyarrow's own functions: its conversions to numpy import pandas (a third of a second)."""
    if not specs:
        return Atoms({}, [])
    widths = [(1 if spec.get("grain", "none") != "none" else 0) + len(spec.get("group_by", [])) for spec in specs]
    chosen = [found.column(f"__s{j}") for j in range(len(specs))]
    selected = chosen[0]
    for more in chosen[1:]:
        selected = pc.or_(selected, more)
    kept = pc.indices_nonzero(selected)
    columns: dict[str, list[tuple | None]] = {}
    for j, (spec, width) in enumerate(zip(specs, widths, strict=True)):
        keys = (list(zip(*(_python_values(found.column(f"__c{j}_{i}").take(kept)) for i in range(width)),
                         strict=True)) if width else [()] * len(kept))
        selects = chosen[j].take(kept).to_pylist()
        columns[spec["name"]] = [key if selects[r] else None for r, key in enumerate(keys)]
    records = pc.cast(found.column(RECORDS).take(kept), pa.int64()).to_pylist()
    return Atoms(columns, records)


def _python_values(column: pa.ChunkedArray) -> list[Any]:
    """A column's values as Python objects, each distinct value made once: periods and
    categories repeat over thousands of atoms, and making a date object per row was most of
    the time of reading them."""
    encoded = column.combine_chunks().dictionary_encode()
    values = encoded.dictionary.to_pylist()
    return [None if i is None else values[i] for i in encoded.indices.to_pylist()]
