"""Counts of shown cells revised by fewer than the threshold from one version to the next.

Two versions of a table of cells read together tell how each shown count changed: a month built
before its last records landed, then again after, gives the people seen in between (three late
records: 3). Revisions are not held back (docs/privacy.md, Limits); the build and ``lithotse
privacy audit`` name each one below the threshold, so whoever publishes knows where it happened.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .compile import PERIOD
from .complementary import json_value
from .spec import dimension_alias
from .suppress import FLAG

COUNTS = ("count", "count_distinct")


def revised_cells(spec: dict, k: int, before: pa.Table, after: pa.Table) -> list[dict[str, Any]]:
    """Each count of a cell shown in both tables that moved by 1 to k-1: its keys, the measure,
    the two values and the change. An aggregate's counts are its ``count`` and ``count_distinct``
    measures, its keys the period and its group-bys; a sql cells table's counts are its
    ``count_column`` and ``people_column``, its keys every other column that is not a number."""
    if spec.get("kind") == "sql":
        counts = [c for c in (spec.get("count_column"), spec.get("people_column")) if c]
        coordinates = [f.name for f in after.schema if f.name in before.column_names and f.name != FLAG
                       and f.name not in counts and not _numeric(f.type)]
    else:
        counts = [m["as"] for m in spec.get("measures", []) if m.get("fn") in COUNTS]
        coordinates = [c for c in [PERIOD, *(dimension_alias(d) for d in spec.get("group_by", []))]
                       if c in after.column_names and c in before.column_names]
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


def _shown_counts(table: pa.Table, coordinates: list[str], counts: list[str]) -> dict[tuple, dict[str, Any]]:
    flags = table.column(FLAG).to_pylist() if FLAG in table.column_names else [False] * table.num_rows
    keys = list(zip(*(table.column(c).to_pylist() for c in coordinates), strict=True)) if coordinates \
        else [()] * table.num_rows
    values = {m: table.column(m).to_pylist() for m in counts if m in table.column_names}
    return {key: {m: values[m][i] if m in values else None for m in counts}
            for i, key in enumerate(keys) if not flags[i]}


def _numeric(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)
