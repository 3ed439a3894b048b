"""Measures that count part of a cell: they pass the threshold as the cell's people do.

A cell of 40 people may publish ``count`` of a column present in 3 of its rows, the ``sum`` of a
0/1 column true in 3 of them, or the ``count_distinct`` of a person's key that a ``sql`` input
kept only for some people (``CASE WHEN … THEN patient_id END``), or of an unclassified column
(a case number filled in for 3 patients; declare it a ``code`` in ``columns`` when it is one):
each is a count of 1 to k-1 individuals, the number small-cell suppression exists to hide, and
so is the rest of the cell when those measures are near its total. Such a measure makes its
cell primary (hidden, with its complements) when it, or the cell's total less it, holds 1 to
k-1. So is a value measure (sum, mean, quantile, min, max) of a column holding two values in a
cell (a yes/no coded 1 and 2: twice the cell's count less the sum is the number of yeses), by the
rows of each value (of text, ``Ja``/``Nein``, both sides count as 1); one of a column only some
rows hold, by those rows and by the rows holding none (a mean of 3 people's lab values; a mean of
whole numbers gives its count, 54/37); and a ``count_distinct`` of a date, an age, a place or an
unclassified column, by the rows holding a value and those holding none (a death date filled in
for 3 people has 3 distinct values). A column holding only 0 and 1 (or true and false) is a count
whatever measure reads it, so ``mean``, ``min``, ``max``, ``median`` and ``percentile`` of one
are refused: they say which cells hold someone it marks.
"""

from __future__ import annotations

import pyarrow as pa

from .compile import PRESENT, TWO_VALUE_PARTS, VALUE_MEASURES, ZERO_ONE
from .identifiers import ROLES
from .spec import SpecError

FLAG_RULE = ("a column of only 0 and 1 counts the rows it marks: group by it (its cells are then suppressed "
             "by their people), or sum it")
SUBCOUNT_RULE = ("a measure counting part of a cell (count of a column, a value measure of a column holding two "
                 "values or held by some rows only, count_distinct of a key other than the person's, of an "
                 "unclassified column, or of a date, age or place) passes the threshold as the cell's people do")


def flag_columns(spec: dict, table: pa.Table, schema: pa.Schema) -> set[str]:
    """The columns a measure other than a count reads that hold only 0 and 1 (true and false,
    yes and no as text: :func:`.compile._flag_test`) in every cell of ``table`` (the query's,
    with its :data:`.compile.ZERO_ONE` columns), or that are boolean."""
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
    cell's rows) or ``people`` (against its people); and the internal columns counting rows
    behind a value measure (:data:`.compile.TWO_VALUE_PARTS`: the rows at each of two values and
    the rows holding a value) or behind a count_distinct of a date, age or place or of an
    unclassified column (:data:`.compile.PRESENT`)."""
    keys = set(person_key or [])
    measures = spec.get("measures", [])
    first: dict[str, int] = {}
    for i, m in enumerate(measures):
        if m["fn"] in VALUE_MEASURES and "column" in m:
            first.setdefault(m["column"], i)
    found: dict[str, str] = {}
    for i, m in enumerate(measures):
        column = m.get("column")
        if column is None or column in keys:
            continue
        role = roles.get(column)
        if m["fn"] == "count" or (m["fn"] == "sum" and column in flags):
            found[m["as"]] = "records"
        elif m["fn"] == "count_distinct" and (role is None or not ROLES[role].cell_dimension):
            found[m["as"]] = "people"  # unclassified: it may be a person's (a case number kept for some)
        if m["fn"] == "count_distinct" and (role is None or not ROLES[role].cell_dimension or ROLES[role].items):
            # unclassified, or a date, an age or a place of one person's life: as many values as
            # people when few hold one, and the rows holding none are the rest
            found[f"{ZERO_ONE}{i}{PRESENT}"] = "records"
        if m["fn"] in VALUE_MEASURES:
            stem = f"{ZERO_ONE}{first[column]}"
            high, low, held = TWO_VALUE_PARTS
            found[stem + high] = found[stem + low] = "records"
            # the rows holding a value: a mean of whole numbers gives them (54/37), so do a
            # quantile's interpolation and a sum of one value (2 for each yes); the rest too
            found[stem + held] = "records"
    return found


def sensitive_rows(values: dict[str, list], totals: dict[str, list[int] | None], kinds: dict[str, str],
                   k: int) -> set[int]:
    """Rows where a part-counting measure, or the cell's total less it, holds 1 to k-1."""
    rows: set[int] = set()
    for alias, kind in kinds.items():
        total = totals.get(kind)
        for i, value in enumerate(values.get(alias, [])):
            part = int(value or 0)
            rest = (total[i] - part) if total is not None and total[i] is not None else 0
            if 0 < part < k or 0 < rest < k:
                rows.add(i)
    return rows
