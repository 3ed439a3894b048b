"""Counts of shown cells revised by fewer than the threshold from one version to the next.

Two versions of a table of cells read together tell how each shown count changed: a month built
before its last records landed, then again after, gives the people seen in between (three late
records: 3). A build holds such a cell back (:func:`.complementary.carried_states`); ``lithotse
privacy audit`` and the build still name any revision a kept version shows (one built before
revisions were held, or where the previous version's cells were not on this machine).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pyarrow as pa

from .compile import PERIOD
from .complementary import json_value
from .spec import dimension_alias
from .suppress import FLAG


def revised_cells(spec: dict, k: int, before: pa.Table, after: pa.Table,
                  person_key: list[str] | None = None) -> list[dict[str, Any]]:
    """Each count of a cell shown in both tables that moved by 1 to k-1: its keys, the measure,
    the two values and the change. An aggregate's counts are :func:`counts_of` it, its keys the
    period and its group-bys; a sql cells table's counts are its
    ``count_column`` and ``people_column``, its keys every other column that is not a number."""
    counts = counts_of(spec, person_key)
    if spec.get("kind") == "sql":
        coordinates = [f.name for f in after.schema if f.name in before.column_names and f.name != FLAG
                       and f.name not in counts and not _numeric(f.type)]
    else:
        coordinates = coordinates_of(spec, set(after.column_names) & set(before.column_names))
    if k <= 0 or not counts:
        return []
    earlier = _shown_counts(before, coordinates, counts)
    found = []
    for key, now in _shown_counts(after, coordinates, counts).items():
        then = earlier.get(key)
        if then is None:
            continue
        for measure in counts:
            change = (now[measure] or 0) - (then[measure] or 0)
            if 0 < abs(change) < k:
                found.append({"cell": {c: json_value(v) for c, v in zip(coordinates, key, strict=True)},
                              "measure": measure, "before": then[measure], "after": now[measure],
                              "change": change, "threshold": k})
    return found


def coordinates_of(spec: dict, columns: Collection[str]) -> list[str]:
    """An aggregate's cell keys among ``columns``: its period, then its group-bys."""
    return [c for c in [PERIOD, *(dimension_alias(d) for d in spec.get("group_by", []))] if c in columns]


def counts_of(spec: dict, person_key: list[str] | None = None) -> list[str]:
    """The published columns that count a cell's records or people, which a reader compares
    across versions: an aggregate's ``count`` measures and its ``count_distinct`` of the person
    key (``person_key``: the input's, or None to take every ``count_distinct``), a sql cells
    table's declared counts. A distinct count of something else (wards, codes) counts values."""
    if spec.get("kind") == "sql":
        return [c for c in (spec.get("count_column"), spec.get("people_column")) if c]
    return [m["as"] for m in spec.get("measures", []) if m.get("fn") == "count" or
            (m.get("fn") == "count_distinct" and (person_key is None or m.get("column") in person_key))]


def _shown_counts(table: pa.Table, coordinates: list[str], counts: list[str]) -> dict[tuple, dict[str, Any]]:
    flags = table.column(FLAG).to_pylist() if FLAG in table.column_names else [False] * table.num_rows
    keys = list(zip(*(table.column(c).to_pylist() for c in coordinates), strict=True)) if coordinates \
        else [()] * table.num_rows
    values = {m: table.column(m).to_pylist() for m in counts if m in table.column_names}
    return {key: {m: values[m][i] if m in values else None for m in counts}
            for i, key in enumerate(keys) if not flags[i]}


def _numeric(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)
