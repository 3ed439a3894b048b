"""Applying a suppression decision to an aggregate's table, in L2 before anything reaches a cell.

What is hidden is decided in :mod:`.complementary`, over every published aggregate of the same
input (people per cell, complementary cells along each table's lines and across the related
tables, an exact audit). Suppressed cells keep their dimensions; every measure becomes null and
``suppressed`` is true; the internal record and people counts never leave this function.
"""

from __future__ import annotations

import pyarrow as pa

from ..deferred import pyarrow_compute as pc
from .compile import CELL_COUNT, PEOPLE, ZERO_ONE
from .complementary import DEFAULT_ZERO_RULE, Cells, Group, decide

FLAG = "suppressed"


def row_mask(rows: int, marked: set[int]) -> pa.BooleanArray:
    """A boolean array true at the ``marked`` rows, built as its bitmap: converting Python values
    makes pyarrow import pandas when it is installed, a third of a second of a command's time."""
    bits = bytearray((rows + 7) // 8)
    for i in marked:
        if not 0 <= i < rows:
            raise IndexError(f"row {i} is not among the table's {rows} rows")
        bits[i >> 3] |= 1 << (i & 7)
    mask = pa.Array.from_buffers(pa.bool_(), rows, [None, pa.py_buffer(bytes(bits))])
    assert isinstance(mask, pa.BooleanArray)
    return mask


def publish_cells(table: pa.Table, measures: list[str], hidden: set[int]) -> pa.Table:
    """Null the measures of the ``hidden`` rows, add the flag column, drop the internal counts."""
    mask = row_mask(table.num_rows, hidden)
    out = table.drop_columns([c for c in table.column_names if c in (CELL_COUNT, PEOPLE) or c.startswith(ZERO_ONE)])
    for name in measures:
        idx = out.schema.get_field_index(name)
        column = out.column(idx)
        if hidden:  # else left as it is, without importing pyarrow.compute; either way a nullable field
            column = pc.if_else(mask, pa.nulls(len(column), column.type), column)
        out = out.set_column(idx, name, column)
    return out.append_column(FLAG, mask)


def suppress_table(table: pa.Table, spec: dict, k: int, zero_cells: str = DEFAULT_ZERO_RULE) -> pa.Table:
    """One aggregate on its own (no other table shares its input): decide and apply."""
    cells = Cells.from_table(spec["name"], spec, k, table)
    hidden = decide(Group([cells], []), zero_cells)[spec["name"]]
    return publish_cells(table, [m["as"] for m in spec["measures"]], hidden)
