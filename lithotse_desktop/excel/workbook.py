"""Workbook ranges bound to derivatives: write a derivative as an Excel table, refresh it later.

A binding (table name, derivative, date range, columns, sheet, top-left cell) is kept inside
the workbook, on a very hidden sheet ``_lithotse`` (one JSON per row), which Excel and
LibreOffice keep when they save. ``refresh`` rewrites every bound table with the current
aggregates: it resizes the table, keeps the cells' formatting, and leaves every other cell,
formula, chart, defined name and sheet as they were; formulas over the tables
(``=SUM(lithotse_visits[n])``) are recalculated when the workbook is next opened.

openpyxl reads and writes the cells; what it would drop is carried over or refused by
:mod:`.package`, which also checks the rewritten package before it replaces the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from copy import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import ConfigError
from . import package
from .export import cell_value, number_format
from .package import WorkbookRefused

BINDINGS_SHEET = "_lithotse"
BINDINGS_HEADER = "Lithotse bindings (managed by lithotse excel bind; do not edit)"
TABLE_NAME = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.]{0,254}$")


@dataclass
class Binding:
    """A table in a workbook and the query that fills it."""

    table: str
    derivative: str
    sheet: str
    cell: str
    from_: str | None = None
    to: str | None = None
    columns: list[str] | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["from"] = data.pop("from_")
        return data

    @classmethod
    def from_json(cls, data: dict) -> Binding:
        return cls(table=data["table"], derivative=data["derivative"], sheet=data["sheet"],
                   cell=data["cell"], from_=data.get("from"), to=data.get("to"), columns=data.get("columns"))


@dataclass
class Placed:
    binding: Binding
    version: str
    rows: int
    ref: str
    details: dict = field(default_factory=dict)


Fetch = Callable[[Binding], tuple[str, pa.Table]]


# --- bindings sheet -------------------------------------------------------------------
def read_bindings(wb: Any) -> list[Binding]:
    if BINDINGS_SHEET not in wb.sheetnames:
        return []
    out = []
    for row in wb[BINDINGS_SHEET].iter_rows(min_row=2, max_col=2, values_only=True):
        if row[0] and row[1]:
            try:
                out.append(Binding.from_json(json.loads(row[1])))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"sheet {BINDINGS_SHEET}: binding {row[0]!r} cannot be read: {exc}") from None
    return out


def write_bindings(wb: Any, bindings: list[Binding]) -> None:
    if BINDINGS_SHEET in wb.sheetnames:
        sheet = wb[BINDINGS_SHEET]
        sheet.delete_rows(1, sheet.max_row)
    else:
        sheet = wb.create_sheet(BINDINGS_SHEET)
    sheet.sheet_state = "veryHidden"
    sheet["A1"] = BINDINGS_HEADER
    for i, b in enumerate(bindings, start=2):
        sheet.cell(i, 1, b.table)
        sheet.cell(i, 2, json.dumps(b.to_json(), sort_keys=True)).data_type = "s"


# --- placing a table ---------------------------------------------------------------
def _find_table(wb: Any, name: str) -> tuple[Any, Any] | None:
    for sheet in wb.worksheets:
        for key in list(sheet.tables.keys()):
            if key.lower() == name.lower():
                return sheet, sheet.tables[key]
    return None


def _bounds(ref: str) -> tuple[int, int, int, int]:
    from openpyxl.utils import range_boundaries

    left, top, right, bottom = range_boundaries(ref)
    if left is None or top is None or right is None or bottom is None:
        raise WorkbookRefused(f"{ref} is not a block of cells")
    return left, top, right, bottom


def _inside(row: int, col: int, bounds: tuple[int, int, int, int] | None) -> bool:
    if bounds is None:
        return False
    min_col, min_row, max_col, max_row = bounds
    return min_row <= row <= max_row and min_col <= col <= max_col


def _write(cell: Any, value: Any) -> None:
    cell.value = cell_value(value)
    if isinstance(cell.value, str) and cell.value.startswith("="):
        cell.data_type = "s"


def _remove_table(sheet: Any, table: Any) -> None:
    min_col, min_row, max_col, max_row = _bounds(table.ref)
    for row in sheet.iter_rows(min_row=min_row, max_row=max_row, min_col=min_col, max_col=max_col):
        for cell in row:
            cell.value = None
    del sheet.tables[table.displayName]


def place(wb: Any, binding: Binding, data: pa.Table) -> str:
    """Write ``data`` as the table of ``binding``; returns the new table reference."""
    from openpyxl.utils import get_column_letter
    from openpyxl.utils.cell import column_index_from_string, coordinate_from_string
    from openpyxl.worksheet.filters import AutoFilter
    from openpyxl.worksheet.table import Table, TableColumn, TableStyleInfo

    if binding.sheet not in wb.sheetnames:
        wb.create_sheet(binding.sheet)
    sheet = wb[binding.sheet]
    try:
        letters, top = coordinate_from_string(binding.cell.upper())
        left = column_index_from_string(letters)
    except ValueError:
        raise ConfigError(f"--cell {binding.cell!r} is not a cell such as A1") from None
    found = _find_table(wb, binding.table)
    if found is not None and found[0] is not sheet:
        _remove_table(*found)
        found = None
    old = found[1] if found else None
    if old is not None and old.totalsRowCount:
        raise WorkbookRefused(f"table {binding.table} has a totals row; remove it in Excel (Table Design > "
                              "Total Row) and refresh again, or put totals in formulas below the table")
    if old is not None and _bounds(old.ref)[:2] != (left, top):
        _remove_table(sheet, old)
        old = None
    old_bounds = _bounds(old.ref) if old is not None else None
    width = max(data.num_columns, 1)
    height = max(data.num_rows, 1)
    right, bottom = left + width - 1, top + height
    ref = f"{get_column_letter(left)}{top}:{get_column_letter(right)}{bottom}"

    for other in sheet.tables.values():
        if other is old:
            continue
        o_left, o_top, o_right, o_bottom = _bounds(other.ref)
        if not (o_right < left or o_left > right or o_bottom < top or o_top > bottom):
            raise WorkbookRefused(f"table {binding.table} would grow to {ref} and overlap table "
                                  f"{other.displayName} ({other.ref}) on sheet {sheet.title}")
    for row in range(top, bottom + 1):
        for col in range(left, right + 1):
            if _inside(row, col, old_bounds):
                continue
            existing = sheet._cells.get((row, col))
            if existing is not None and existing.value not in (None, ""):
                raise WorkbookRefused(
                    f"table {binding.table} would grow to {ref} and overwrite {sheet.title}!"
                    f"{existing.coordinate} ({existing.value!r}); move what is there or bind the table elsewhere")

    templates: dict[int, Any] = {}
    header_styles: dict[int, Any] = {}
    old_names: list[str] = []
    if old is not None and old_bounds is not None:
        o_left, o_top, o_right, o_bottom = old_bounds
        old_names = [c.name for c in old.tableColumns]
        for col in range(o_left, o_right + 1):
            header_styles[col - o_left] = copy(sheet.cell(o_top, col)._style)
            if o_bottom > o_top:
                templates[col - o_left] = copy(sheet.cell(o_top + 1, col)._style)
        for row in sheet.iter_rows(min_row=o_top, max_row=o_bottom, min_col=o_left, max_col=o_right):
            for cell in row:
                cell.value = None

    names = data.column_names or ["(empty)"]
    columns = [data.column(i).to_pylist() for i in range(data.num_columns)]
    for j, name in enumerate(names):
        header = sheet.cell(top, left + j)
        _write(header, str(name))
        if j in header_styles:
            header._style = copy(header_styles[j])
        default_format = number_format(data.schema.field(j).type) if data.num_columns else None
        for i in range(height):
            cell = sheet.cell(top + 1 + i, left + j)
            if j in templates:
                cell._style = copy(templates[j])
            if default_format and cell.number_format == "General":
                cell.number_format = default_format
            _write(cell, columns[j][i] if i < data.num_rows and columns else None)

    kept = {c.name: c for c in old.tableColumns} if old is not None else {}
    table_columns = []
    for j, name in enumerate(names, start=1):
        column = copy(kept[name]) if name in kept else TableColumn(id=j, name=str(name))
        column.id = j
        table_columns.append(column)
    if old is not None:
        old.ref = ref
        old.tableColumns = table_columns
        old.sortState = None
        if old.autoFilter is not None:
            if old_names == [str(n) for n in names]:
                old.autoFilter.ref = ref
            else:
                old.autoFilter = AutoFilter(ref=ref)
    else:
        table = Table(displayName=binding.table, ref=ref, tableColumns=table_columns,
                      autoFilter=AutoFilter(ref=ref))
        table.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
        sheet.add_table(table)
        for j, field_ in enumerate(data.schema):
            letter = get_column_letter(left + j)
            if letter not in sheet.column_dimensions:
                sample = [len(str(field_.name))] + [len(str(v)) for v in columns[j][:200] if v is not None]
                sheet.column_dimensions[letter].width = min(60, max(sample) + 4)
    return ref


# --- the operations ---------------------------------------------------------------------
def default_table_name(derivative: str) -> str:
    return f"lithotse_{derivative}"


def bind(path: Path, binding: Binding, fetch: Fetch) -> Placed:
    """Write the binding's table into the workbook (created if missing) and remember the binding."""
    from openpyxl import Workbook

    path = Path(path)
    if not TABLE_NAME.match(binding.table) or re.match(r"^[A-Za-z]{1,3}\d+$", binding.table):
        raise ConfigError(f"table name {binding.table!r}: use letters, digits and _ (not a cell reference)")
    carry = None
    if path.exists():
        wb, carry = package.load(path)
    else:
        if path.suffix.lower() != ".xlsx":
            raise ConfigError(f"{path}: the workbook must be an .xlsx file")
        wb = Workbook()
        wb.worksheets[0].title = binding.sheet
    if binding.table in wb.defined_names:
        raise WorkbookRefused(f"{path}: the name {binding.table} is already a defined name; pick "
                              "another table name with --table")
    bindings = [b for b in read_bindings(wb) if b.table.lower() != binding.table.lower()]
    found = _find_table(wb, binding.table)
    if found is not None and binding.table.lower() not in {b.table.lower() for b in read_bindings(wb)}:
        raise WorkbookRefused(f"{path}: a table named {binding.table} exists and is not a Lithotse table; "
                              "pick another name with --table")
    version, data = fetch(binding)
    ref = place(wb, binding, data)
    write_bindings(wb, bindings + [binding])
    package.save(wb, path, carry)
    return Placed(binding, version, data.num_rows, ref)


def refresh(path: Path, fetch: Fetch) -> list[Placed]:
    """Rewrite every bound table with current data; nothing is written if any binding fails."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such workbook")
    wb, carry = package.load(path)
    bindings = read_bindings(wb)
    if not bindings:
        raise ConfigError(f"{path}: no Lithotse tables here; add one with: lithotse excel bind {path} DERIVATIVE")
    placed = []
    for binding in bindings:
        version, data = fetch(binding)
        placed.append(Placed(binding, version, data.num_rows, place(wb, binding, data)))
    package.save(wb, path, carry)
    return placed
