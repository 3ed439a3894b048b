"""Small-cell suppression with complementary suppression, applied in L2 before anything reaches a cell.

A cell whose record count is below k is suppressed (primary). Then, within each period,
every line of the cross-table (all cells that share the values of all dimensions but one,
and the whole period for a single dimension) that holds exactly one suppressed cell gets a
second one: its smallest remaining cell. Repeat until no line has a lone suppressed cell, so
no suppressed value can be recovered by subtracting the others from a row or column total.
Suppressed cells keep their dimensions; every measure becomes null and ``suppressed`` is true.
"""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc

from .compile import CELL_COUNT, PERIOD

FLAG = "suppressed"


def suppressed_cells(cells: list[tuple[tuple, int]], k: int) -> set[int]:
    """Indices of suppressed cells among ``(dimension values, count)`` pairs of one period."""
    hidden = {i for i, (_dims, n) in enumerate(cells) if 0 < n < k}
    if not hidden or not cells:
        return hidden
    width = len(cells[0][0])
    lines: list[list[int]] = []
    for j in range(max(width, 1)):
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, (dims, _n) in enumerate(cells):
            groups[dims[:j] + dims[j + 1:]].append(i)
        lines.extend(members for members in groups.values() if len(members) > 1)
    changed = True
    while changed:
        changed = False
        for members in lines:
            inside = [i for i in members if i in hidden]
            if len(inside) == 1:
                candidates = [i for i in members if i not in hidden]
                if candidates:
                    hidden.add(min(candidates, key=lambda i: (cells[i][1], i)))
                    changed = True
    return hidden


def apply_suppression(table: pa.Table, dimensions: list[str], measures: list[str], k: int) -> pa.Table:
    """Null the measures of suppressed cells, add the flag column, drop the internal cell count."""
    counts = table.column(CELL_COUNT).to_pylist()
    has_period = PERIOD in table.column_names
    periods = table.column(PERIOD).to_pylist() if has_period else [None] * table.num_rows
    dim_values = list(zip(*(table.column(d).to_pylist() for d in dimensions), strict=True)) if dimensions \
        else [()] * table.num_rows
    by_period: dict[object, list[int]] = defaultdict(list)
    for row, period in enumerate(periods):
        by_period[period].append(row)
    flags = [False] * table.num_rows
    if k and k > 0:
        for rows in by_period.values():
            cells = [(dim_values[r], counts[r]) for r in rows]
            for i in suppressed_cells(cells, k):
                flags[rows[i]] = True
    mask = pa.array(flags, pa.bool_())
    out = table.drop_columns([CELL_COUNT])
    for name in measures:
        idx = out.schema.get_field_index(name)
        column = out.column(idx)
        nulls = pa.nulls(len(column), column.type)
        out = out.set_column(idx, name, pc.if_else(mask, nulls, column))
    return out.append_column(FLAG, mask)
