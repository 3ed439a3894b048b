"""Measures that count part of a cell: they pass the threshold as the cell's people do.

A cell of 40 people may publish ``count`` of a column present in 3 of its rows, the ``sum`` of a
0/1 column true in 3 of them, or the ``count_distinct`` of a person's key that a ``sql`` input
kept only for some people (``CASE WHEN … THEN patient_id END``), or of an unclassified column
(a case number filled in for 3 patients; declare it a ``code`` in ``columns`` when it is one):
each is a count of 1 to k-1 individuals, the number small-cell suppression exists to hide, and
so is the rest of the cell when those measures are near its total. Such a measure makes its
cell primary (hidden, with its complements) when it, or the cell's total less it, holds 1 to
k-1. So is a ``sum`` or ``mean`` of a column holding two values in a cell (a yes/no coded 1 and 2:
twice the cell's count less the sum is the number of yeses), by the rows of each value, and a
``count_distinct`` of a date, an age or a place by the rows holding a value (a death date filled in
for 3 people has 3 distinct values). A column holding only 0 and 1 (or true and false) is a
count whatever measure reads it, so ``mean``, ``min``, ``max``, ``median`` and ``percentile`` of
one are refused: they say which cells hold someone it marks.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .compile import PRESENT, TWO_VALUE_PARTS, TWO_VALUES, ZERO_ONE
from .identifiers import ROLES
from .spec import SpecError

FLAG_RULE = ("a column of only 0 and 1 counts the rows it marks: group by it (its cells are then suppressed "
             "by their people), or sum it")
SUBCOUNT_RULE = ("a measure counting part of a cell (count of a column, sum or mean of a column holding two "
                 "values, count_distinct of a key other than the person's, of an unclassified column, or of a "
                 "date, age or place few rows hold) passes the threshold as the cell's people do")


def flag_columns(spec: dict, table: pa.Table, schema: pa.Schema) -> set[str]:
    """The columns a measure other than a count reads that hold only 0 and 1 in every cell of
    ``table`` (the query's, with its :data:`.compile.ZERO_ONE` columns), or that are boolean."""
    flags: set[str] = set()
    for i, m in enumerate(spec.get("measures", [])):
        column = m.get("column")
        if column is None or m["fn"] in ("count", "count_distinct"):
            continue
        if column in schema.names and pa.types.is_boolean(schema.field(column).type):
            flags.add(column)
        elif f"{ZERO_ONE}{i}" in table.column_names:
            seen = [v for v in table.column(f"{ZERO_ONE}{i}").to_pylist() if v is not None]
            if seen and max(seen) == 0:
                flags.add(column)
    return flags


def with_two_values(table: pa.Table) -> pa.Table:
    """``table`` with :data:`.compile.TWO_VALUES` columns beside the :data:`.compile.TWO_VALUE_PARTS`
    of each sum or mean: the rows of a cell holding its column's higher and lower value, where it
    holds two (the sum less the count times the lower value, over the two values' difference).
    Computed on Arrow arrays: a Python value handed to pyarrow would import pandas."""
    for name in table.column_names:
        if not (name.startswith(ZERO_ONE) and name.endswith(TWO_VALUE_PARTS[0])):
            continue
        stem = name[:-len(TWO_VALUE_PARTS[0])]
        two, lowest, highest, total, held = (table.column(stem + s) for s in TWO_VALUE_PARTS)
        lowest, highest = pc.cast(lowest, pa.float64()), pc.cast(highest, pa.float64())
        ratio = pc.divide(pc.subtract(total, pc.multiply(pc.cast(held, pa.float64()), lowest)),
                          pc.subtract(highest, lowest))
        # where a cell holds one value the ratio divides by zero: left out before it is cast
        kept = pc.if_else(two, ratio, pa.nulls(table.num_rows, pa.float64()))
        high = pc.cast(pc.round(kept), pa.int64())
        table = table.append_column(stem + TWO_VALUES[0], high)
        table = table.append_column(stem + TWO_VALUES[1], pc.subtract(pc.cast(held, pa.int64()), high))
    return table


def check_flags(spec: dict, flags: set[str]) -> None:
    """Refuse a measure that reads a 0/1 column other than by counting or summing it."""
    for i, m in enumerate(spec.get("measures", [])):
        if m.get("column") in flags and m["fn"] not in ("count", "count_distinct", "sum"):
            raise SpecError(f"measures[{i}]", f"derivative {spec['name']!r}: {m['fn']} of {m['column']!r}, a column "
                                              f"holding only 0 and 1, says which cells hold someone it marks; "
                                              f"rule: {FLAG_RULE}")


def subcounts(spec: dict, roles: dict[str, str | None], person_key: list[str] | None,
              flags: set[str]) -> dict[str, str]:
    """The measures counting part of a cell, by output column: ``records`` (set against the
    cell's rows) or ``people`` (against its people); and the internal columns counting the rows
    behind a sum or mean of two values (:data:`.compile.TWO_VALUES`) or a count_distinct
    (:data:`.compile.PRESENT`, a ``part``)."""
    keys = set(person_key or [])
    found: dict[str, str] = {}
    for i, m in enumerate(spec.get("measures", [])):
        column = m.get("column")
        if column is None or column in keys:
            continue
        role = roles.get(column)
        if m["fn"] == "count" or (m["fn"] == "sum" and column in flags):
            found[m["as"]] = "records"
        elif m["fn"] == "count_distinct" and (role is None or not ROLES[role].cell_dimension):
            found[m["as"]] = "people"  # unclassified: it may be a person's (a case number kept for some)
        if m["fn"] in ("sum", "mean"):
            for side in TWO_VALUES:
                found[f"{ZERO_ONE}{i}{side}"] = "records"
        elif m["fn"] == "count_distinct" and role is not None and ROLES[role].items:
            # a date, an age or a place of one person's life: as many values as people, when few hold one
            found[f"{ZERO_ONE}{i}{PRESENT}"] = "part"
    return found


def sensitive_rows(values: dict[str, list], totals: dict[str, list[int] | None], kinds: dict[str, str],
                   k: int) -> set[int]:
    """Rows where a part-counting measure, or the cell's total less it, holds 1 to k-1 (of a
    ``part``, only itself: the rows a ``count_distinct`` read a value in, which it does not publish)."""
    rows: set[int] = set()
    for alias, kind in kinds.items():
        total = totals.get(kind)
        for i, value in enumerate(values.get(alias, [])):
            part = int(value or 0)
            rest = (total[i] - part) if total is not None and total[i] is not None and kind != "part" else 0
            if 0 < part < k or 0 < rest < k:
                rows.add(i)
    return rows
