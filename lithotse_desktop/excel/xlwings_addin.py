"""The thin Excel layer over xlwings (its open-source part only): ribbon callbacks and UDFs.

Everything that computes lives in plain functions here or in the core (``cache.value``,
``cache.table``, :mod:`.ops`) and is tested without Excel; the functions that touch a live
workbook only move values between those and xlwings. xlwings is imported lazily, so this
module imports anywhere; the UDFs get xlwings' ``func`` decoration when xlwings is present.

Worksheet functions (Windows Excel with the xlwings add-in, "Import Functions")::

    =LITHOTSE_VALUE("visits", "n", "2024-01-01", "2024-03-31", "grp=a")
    =LITHOTSE_TABLE("visits", "2024-01-01", "2024-03-31", "period,grp,n")   (spills)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import ConfigError, LithotseError
from ..workspace import Workspace
from .workbook import BINDINGS_HEADER, BINDINGS_SHEET, Binding, default_table_name

EXCEL_EPOCH = dt.date(1899, 12, 30)
SUPPRESSED = "suppressed"
XL_SHEET_VERY_HIDDEN = 2


# --- plain functions (tested without Excel) ---------------------------------------
def to_date(value: Any) -> str | None:
    """An Excel argument (date, datetime, serial number or ISO text) as ISO text."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (EXCEL_EPOCH + dt.timedelta(days=int(value))).isoformat()
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(f"{value!r} is not a date (use a date cell or YYYY-MM-DD)") from None


def parse_dims(items: tuple | list) -> dict[str, str]:
    """``"grp=a"`` arguments (or a range of them) as a dimension filter."""
    dims: dict[str, str] = {}
    for item in items:
        if isinstance(item, (list, tuple)):
            dims.update(parse_dims(item))
            continue
        if item is None or item == "":
            continue
        text = str(item)
        if "=" not in text:
            raise ConfigError(f"{text!r}: give dimensions as name=value, e.g. \"grp=a\"")
        name, _, val = text.partition("=")
        dims[name.strip()] = val.strip()
    return dims


def _workspace() -> Workspace:
    return Workspace.open()


def udf_value(derivative: str, measure: str, date_from: Any = None, date_to: Any = None, *dims: Any,
              ws: Workspace | None = None) -> Any:
    """LITHOTSE_VALUE: a number, "suppressed", or "error: …" (a cell cannot raise)."""
    from ..cache import lookup

    try:
        cell = lookup(ws or _workspace(), str(derivative), str(measure), to_date(date_from), to_date(date_to),
                      **parse_dims(dims))
    except LithotseError as exc:
        return f"error: {exc}"
    return SUPPRESSED if cell.suppressed else cell.value


def udf_table(derivative: str, date_from: Any = None, date_to: Any = None, columns: Any = None, *,
              ws: Workspace | None = None) -> list[list[Any]]:
    """LITHOTSE_TABLE: header plus rows, suppressed measures shown as "suppressed"."""
    from ..cache import table_of
    from .export import cell_value

    picked = [c.strip() for c in str(columns).split(",") if c.strip()] if columns else None
    try:
        entry, table = table_of(ws or _workspace(), str(derivative), to_date(date_from), to_date(date_to),
                                columns=picked)
    except LithotseError as exc:
        return [[f"error: {exc}"]]
    names = table.column_names
    data = [table.column(i).to_pylist() for i in range(table.num_columns)]
    flags = table.column("suppressed").to_pylist() if "suppressed" in names else [False] * table.num_rows
    measures = set(entry.measures)
    rows: list[list[Any]] = [list(names)]
    for r in range(table.num_rows):
        rows.append([SUPPRESSED if flags[r] and names[c] in measures else cell_value(data[c][r])
                     for c in range(len(names))])
    return rows


def bindings_from_rows(rows: list[list[Any]] | None) -> list[Binding]:
    """Bindings from the values of the ``_lithotse`` sheet (as xlwings reads them)."""
    import json

    out = []
    for row in rows or []:
        if row and len(row) > 1 and row[0] and row[1] and row[0] != BINDINGS_HEADER:
            out.append(Binding.from_json(json.loads(row[1])))
    return out


def bindings_to_rows(bindings: list[Binding]) -> list[list[Any]]:
    import json

    return [[BINDINGS_HEADER, None]] + [[b.table, json.dumps(b.to_json(), sort_keys=True)] for b in bindings]


def with_range(bindings: list[Binding], date_from: Any, date_to: Any) -> list[Binding]:
    """The same bindings over another date range (the ribbon's Date range button)."""
    start, end = to_date(date_from), to_date(date_to)
    if start and end and start > end:
        raise ConfigError(f"from {start} is after to {end}")
    return [Binding(b.table, b.derivative, b.sheet, b.cell, start, end, b.columns) for b in bindings]


def new_binding(derivative: str, sheet: str, cell: str, existing: list[Binding]) -> Binding:
    """A binding for Insert aggregate, with a table name not used yet in the workbook."""
    name = default_table_name(derivative)
    taken = {b.table.lower() for b in existing}
    n = 2
    candidate = name
    while candidate.lower() in taken:
        candidate = f"{name}_{n}"
        n += 1
    return Binding(candidate, derivative, sheet, cell.replace("$", ""))


def refresh_plan(ws: Workspace, bindings: list[Binding]) -> list[tuple[Binding, str, list[list[Any]]]]:
    """What Refresh ranges writes: each binding with its version and rows (header first)."""
    from .ops import binding_rows

    return [(b, *binding_rows(ws, b)) for b in bindings]


# --- the live-Excel layer (needs xlwings and Excel) --------------------------------
def _xlwings() -> Any:
    try:
        import xlwings
    except Exception:
        return None
    return xlwings


def _book() -> Any:
    xw = _xlwings()
    if xw is None:
        raise LithotseError("xlwings is not installed in the Python that Excel runs: pip install xlwings")
    return xw.Book.caller()


def _live_bindings(book: Any) -> list[Binding]:
    names = [s.name for s in book.sheets]
    if BINDINGS_SHEET not in names:
        return []
    return bindings_from_rows(book.sheets[BINDINGS_SHEET].used_range.value)


def _save_live_bindings(book: Any, bindings: list[Binding]) -> None:
    names = [s.name for s in book.sheets]
    sheet = book.sheets[BINDINGS_SHEET] if BINDINGS_SHEET in names else book.sheets.add(BINDINGS_SHEET)
    sheet.clear_contents()
    sheet.range("A1").value = bindings_to_rows(bindings)
    sheet.api.Visible = XL_SHEET_VERY_HIDDEN


def _write_live(book: Any, binding: Binding, rows: list[list[Any]]) -> None:
    sheet = book.sheets[binding.sheet]
    tables = {t.name: t for t in sheet.tables}
    target = sheet.range(binding.cell).resize(max(len(rows), 2), len(rows[0]))
    if binding.table in tables:
        table = tables[binding.table]
        if table.data_body_range is not None:
            table.data_body_range.clear_contents()
        sheet.range(binding.cell).value = rows
        table.resize(target)
    else:
        sheet.range(binding.cell).value = rows
        sheet.tables.add(source=target, name=binding.table)


def refresh_ranges() -> None:
    """Ribbon: Refresh ranges — rewrite every bound table of the calling workbook."""
    book = _book()
    for binding, _version, rows in refresh_plan(_workspace(), _live_bindings(book)):
        _write_live(book, binding, rows)


def _ask(book: Any, prompt: str, default: str = "") -> str | None:
    answer = book.app.api.InputBox(prompt, "Lithotse", default)
    return None if answer is False or answer == "" else str(answer)


def insert_aggregate() -> None:
    """Ribbon: Insert aggregate — bind a derivative at the selected cell."""
    book = _book()
    derivative = _ask(book, "Derivative to insert (see: lithotse derive list)")
    if not derivative:
        return
    selection = book.app.selection
    bindings = _live_bindings(book)
    binding = new_binding(derivative, selection.sheet.name, selection.address, bindings)
    _b, _version, rows = refresh_plan(_workspace(), [binding])[0]
    _write_live(book, binding, rows)
    _save_live_bindings(book, bindings + [binding])


def set_date_range() -> None:
    """Ribbon: Date range — one range for every bound table of the workbook, then refresh."""
    book = _book()
    bindings = _live_bindings(book)
    if not bindings:
        return
    start = _ask(book, "From (YYYY-MM-DD, empty for open)", bindings[0].from_ or "")
    end = _ask(book, "To (YYYY-MM-DD, empty for open)", bindings[0].to or "")
    changed = with_range(bindings, start, end)
    _save_live_bindings(book, changed)
    for binding, _version, rows in refresh_plan(_workspace(), changed):
        _write_live(book, binding, rows)


def LITHOTSE_VALUE(derivative, measure, date_from=None, date_to=None, *dims):  # noqa: N802 (Excel name)
    """One aggregate: =LITHOTSE_VALUE("visits","n","2024-01-01","2024-03-31","grp=a")."""
    return udf_value(derivative, measure, date_from, date_to, *dims)


def LITHOTSE_TABLE(derivative, date_from=None, date_to=None, columns=None):  # noqa: N802 (Excel name)
    """A derivative as a spilled range: =LITHOTSE_TABLE("visits","2024-01-01","2024-03-31")."""
    return udf_table(derivative, date_from, date_to, columns)


_xw = _xlwings()
if _xw is not None:
    LITHOTSE_VALUE = _xw.func(LITHOTSE_VALUE)
    LITHOTSE_TABLE = _xw.func(LITHOTSE_TABLE)
