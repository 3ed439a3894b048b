"""The thin Excel layer over xlwings (its open-source part only): ribbon callbacks and UDFs.

Worksheet functions and ribbon buttons read through the local API (the desktop app serves it,
or ``lithotse serve``), the one door every spreadsheet client uses; the port and token come
from the workspace (``LITHOTSE_WORKSPACE`` or the default one). Everything that computes is a
plain function here, tested without Excel; the functions that touch a live workbook only move
values between those and xlwings. xlwings is imported lazily, so this module imports anywhere;
the UDFs get xlwings' ``func`` decoration when xlwings is present.

Worksheet functions (Windows Excel with the xlwings add-in, "Import Functions"), in the format
:mod:`.formula` writes and reads (dimensions as pairs; an older ``"grp=a"`` still reads)::

    =LITHOTSE_VALUE("visits", "n", "2024-01-01", "2024-03-31", "grp", "a")
    =LITHOTSE_TABLE("visits", "2024-01-01", "2024-03-31", "period,grp,n")   (spills)
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from ..errors import ConfigError, LithotseError
from ..serve.client import ApiClient, ApiError, NotServing
from ..workspace import Workspace
from .export import cell_value
from .formula import dims_from_args
from .workbook import BINDINGS_HEADER, BINDINGS_SHEET, Binding, default_table_name

EXCEL_EPOCH = dt.date(1899, 12, 30)
SUPPRESSED = "suppressed"
XL_SHEET_VERY_HIDDEN = 2
UNAUTHORISED = 401


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


_clients: dict[str, ApiClient] = {}
_clients_lock = threading.Lock()


def _client(fresh: bool = False) -> ApiClient:
    """The client for the add-in's workspace, kept between calls (Excel calls a UDF per cell)."""
    ws = Workspace.open()
    key = str(ws.root)
    with _clients_lock:
        if fresh or key not in _clients:
            _clients[key] = ApiClient.for_workspace(ws)
        return _clients[key]


def _call(client: ApiClient | None, request: Any) -> Any:
    """Run ``request(client)``; with the workspace's own client, retry once with the token and
    port read again when the kept ones fail (after ``lithotse token --rotate``, or a changed
    ``[serve] port``)."""
    if client is not None:
        return request(client)
    try:
        return request(_client())
    except NotServing:
        return request(_client(fresh=True))
    except ApiError as exc:
        if exc.status != UNAUTHORISED:
            raise
        return request(_client(fresh=True))


def udf_value(derivative: Any, measure: Any, date_from: Any = None, date_to: Any = None, *dims: Any,
              client: ApiClient | None = None) -> Any:
    """LITHOTSE_VALUE: a number, "suppressed", or "error: …" (a cell cannot raise)."""
    def dimension_names() -> list[str]:
        listed = _call(client, lambda c: c.derivatives())
        return next((list(d.get("dimensions") or []) for d in listed if d.get("name") == str(derivative)), [])

    try:
        query = (str(derivative), str(measure), to_date(date_from), to_date(date_to),
                 dims_from_args(dims, dimension_names))
        answer = _call(client, lambda c: c.value(*query))
    except LithotseError as exc:
        return f"error: {exc}"
    return SUPPRESSED if answer.get("suppressed") else answer.get("value")


def _columns(columns: Any) -> list[str] | None:
    """The columns argument as one text: the API splits it at commas, keeping those inside a
    column's own name."""
    return [str(columns)] if columns else None


def udf_table(derivative: Any, date_from: Any = None, date_to: Any = None, columns: Any = None, *,
              client: ApiClient | None = None) -> list[list[Any]]:
    """LITHOTSE_TABLE: header plus rows, suppressed measures shown as "suppressed"."""
    try:
        query = (str(derivative), to_date(date_from), to_date(date_to), _columns(columns))
        answer = _call(client, lambda c: c.table(*query))
    except LithotseError as exc:
        return [[f"error: {exc}"]]
    names, measures = answer.names, set(answer.measures)
    rows: list[list[Any]] = [list(names)]
    for row in answer.rows:
        hidden = bool(row.get("suppressed"))
        rows.append([SUPPRESSED if hidden and name in measures else cell_value(row[name]) for name in names])
    return rows


def binding_rows(client: ApiClient | None, binding: Binding) -> tuple[str, list[list[Any]]]:
    """A binding's current table through the API: its version and rows (header first), with
    suppressed cells empty as in a refreshed workbook file."""
    answer = _call(client, lambda c: c.table(binding.derivative, binding.from_, binding.to, binding.columns))
    names = answer.names
    return answer.version, [list(names)] + [[cell_value(row[n]) for n in names] for row in answer.rows]


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


def refresh_plan(bindings: list[Binding], client: ApiClient | None = None
                 ) -> list[tuple[Binding, str, list[list[Any]]]]:
    """What Refresh ranges writes: each binding with its version and rows (header first)."""
    return [(b, *binding_rows(client, b)) for b in bindings]


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
        raise LithotseError("xlwings is missing from the Python that Excel runs; Lithotse installs it on "
                            "Windows and macOS: reinstall Lithotse, then run lithotse excel install-addin")
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
    for binding, _version, rows in refresh_plan(_live_bindings(book)):
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
    _b, _version, rows = refresh_plan([binding])[0]
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
    for binding, _version, rows in refresh_plan(changed):
        _write_live(book, binding, rows)


def LITHOTSE_VALUE(derivative, measure, date_from=None, date_to=None, *dims):  # noqa: N802 (Excel name)
    """One aggregate: =LITHOTSE_VALUE("visits","n","2024-01-01","2024-03-31","grp","a")."""
    return udf_value(derivative, measure, date_from, date_to, *dims)


def LITHOTSE_TABLE(derivative, date_from=None, date_to=None, columns=None):  # noqa: N802 (Excel name)
    """A derivative as a spilled range: =LITHOTSE_TABLE("visits","2024-01-01","2024-03-31")."""
    return udf_table(derivative, date_from, date_to, columns)


_xw = _xlwings()
if _xw is not None:
    LITHOTSE_VALUE = _xw.func(LITHOTSE_VALUE)
    LITHOTSE_TABLE = _xw.func(LITHOTSE_TABLE)
