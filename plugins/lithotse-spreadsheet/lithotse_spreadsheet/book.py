"""Opening workbooks with calamine and reading one sheet as typed Arrow batches.

calamine is a native parser fed untrusted files, so every call into it is guarded and
any failure, whatever its Python type, becomes an InputError naming the file and sheet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lithotse_desktop.plugin import InputError, deferred_import, header_names, is_total_label

from . import cells

if TYPE_CHECKING:
    import python_calamine as calamine
else:
    calamine = deferred_import("python_calamine")

META_FORMAT = "lithotse-spreadsheet/1"
NAMING = 2
"""The header-naming rule of new landings: 2 is ``header_names``; landings without ``naming``
in their meta were named by rule 1 (trimmed text, repeats numbered case-sensitively)."""
BATCH_ROWS = 5000
SAMPLE_ROWS = 200
# ImportError: calamine is imported at its first use, inside the guard; a broken install is not the file's fault
_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit, InputError, ImportError)


def where(name: str, sheet: str | None = None, row: int | None = None) -> str:
    parts = [name] + ([f"sheet {sheet!r}"] if sheet is not None else []) + \
        ([f"row {row}"] if row is not None else [])
    return ", ".join(parts)


@contextmanager
def guarded(location: str, what: str) -> Iterator[None]:
    """Turn any failure inside calamine (including a Rust panic) into an InputError."""
    try:
        yield
    except _PASS_THROUGH:
        raise
    except OSError as exc:
        raise InputError(location, f"cannot be read: {exc.strerror or exc}") from None
    except BaseException as exc:  # calamine panics surface as pyo3 PanicException(BaseException)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(location, f"{what} ({detail})") from None


PROBE_MEMORY = 6 << 30
_PROBE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
import python_calamine as calamine
try:
    book = calamine.CalamineWorkbook.from_path(sys.argv[1])
    for meta in book.sheets_metadata:
        if meta.typ == calamine.SheetTypeEnum.WorkSheet:
            book.get_sheet_by_name(meta.name)
except MemoryError:
    sys.exit(3)
except BaseException:
    pass
"""
_probed: dict[tuple[str, int, int], bool] = {}


def _check_size(path: Path, name: str) -> None:
    """Load the workbook once in a memory-capped child process first.

    A damaged file can declare a sheet of billions of cells; calamine then allocates for all
    of them, which in this process would exhaust the machine's memory instead of failing.
    """
    if getattr(sys, "frozen", False) or os.name != "posix":
        return
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _probed:
        return
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(PROBE_MEMORY)],
                          capture_output=True, text=True, env={**os.environ, "RUST_BACKTRACE": "0"})
    if proc.returncode != 0:
        raise InputError(name, "declares sheets too large to read in memory; the file looks "
                               "damaged (its dimensions or record sizes are implausible)")
    _probed[key] = True


@contextmanager
def open_book(path: Path, name: str) -> Iterator[Any]:
    _check_size(Path(path), name)
    with guarded(name, "is not a readable spreadsheet (.xlsx, .xlsm, .xls or .ods)"):
        book = calamine.CalamineWorkbook.from_path(str(path))
    try:
        yield book
    finally:
        with guarded(name, "cannot be closed"):
            book.close()


def worksheets(book: Any, name: str) -> list[str]:
    """Names of the sheets that hold cells (not charts or macros), in workbook order."""
    with guarded(name, "has an unreadable list of sheets"):
        return [m.name for m in book.sheets_metadata
                if m.typ == calamine.SheetTypeEnum.WorkSheet]


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def sheet_rows(book: Any, name: str, sheet: str) -> tuple[int, Iterator[tuple[int, list[Any]]]]:
    """(index of the first column, iterator of (1-based row number, cells)) for one sheet.

    calamine pads the rows above the used area with empty rows, so row numbers are the
    ones the spreadsheet program shows; columns start at the used area's first column.
    """
    sheets = worksheets(book, name)
    if sheet not in sheets:
        raise InputError(where(name, sheet), f"no such sheet; sheets: {', '.join(sheets) or 'none'}")
    with guarded(where(name, sheet), "cannot be read"):
        data = book.get_sheet_by_name(sheet)
        start = data.start
        first_column = start[1] if start else 0
        rows = data.iter_rows()

    def generate() -> Iterator[tuple[int, list[Any]]]:
        number = 0
        while True:
            with guarded(where(name, sheet, number + 1), "cannot be read"):
                try:
                    row = next(rows)
                except StopIteration:
                    return
            number += 1
            yield number, list(row)

    return first_column, generate()


class NoTable(InputError):
    """A sheet with nothing to take column names from at the header row (a ``Notes`` sheet)."""


def clean_names(raw: list[Any], first_column: int, naming: int = NAMING) -> list[str]:
    """Header cells as column names (see ``header_names``); an empty cell is named by its
    column letter (``column_C``)."""
    texts = ["" if cells.cell_class(value) is None else cells.convert_cell("string", value) for value in raw]
    if naming >= 2:
        return header_names(texts, lambda offset: f"column_{column_letter(first_column + offset)}")
    out: list[str] = []
    seen: set[str] = set()
    for offset, text in enumerate(texts):
        base = text.strip() or f"column_{column_letter(first_column + offset)}"
        candidate, n = base, 2
        while candidate in seen:
            candidate, n = f"{base}_{n}", n + 1
        seen.add(candidate)
        out.append(candidate)
    return out


@dataclass
class SheetLayout:
    """How one sheet was read at import: header row, kept columns and their types, the last
    row of data (rows under it are the blank and total rows left out) and what was left out."""

    sheet: str
    header_row: int
    names: list[str]
    kinds: list[str]
    indices: list[int]
    date_column: str | None
    date_columns: list[str]
    last_row: int | None = None
    left_out: dict[str, int] = field(default_factory=dict)
    naming: int = NAMING

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, cells.ARROW_TYPES[k]) for n, k in zip(self.names, self.kinds, strict=True)])

    def to_meta(self) -> dict[str, Any]:
        return {"format": META_FORMAT, "sheet": self.sheet, "header_row": self.header_row,
                "columns": [[n, k, i] for n, k, i in zip(self.names, self.kinds, self.indices, strict=True)],
                "date_column": self.date_column, "date_columns": list(self.date_columns),
                "naming": self.naming, "last_row": self.last_row, "left_out": dict(self.left_out)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> SheetLayout | None:
        if meta.get("format") != META_FORMAT:
            return None
        try:
            triples = [(str(n), str(k), int(i)) for n, k, i in meta["columns"]]
            last_row = meta.get("last_row")
            layout = cls(str(meta["sheet"]), int(meta["header_row"]), [t[0] for t in triples],
                         [t[1] for t in triples], [t[2] for t in triples],
                         meta.get("date_column"), list(meta.get("date_columns") or []),
                         None if last_row is None else int(last_row),
                         {str(k): int(v) for k, v in dict(meta.get("left_out") or {}).items()},
                         int(meta.get("naming", 1)))
        except (KeyError, TypeError, ValueError):
            return None
        if any(k not in cells.ARROW_TYPES for k in layout.kinds):
            return None
        return layout


def _cell(row: list[Any], index: int) -> Any:
    return row[index] if index < len(row) else None


def _blank(row: list[Any]) -> bool:
    return all(cells.cell_class(v) is None for v in row)


def _header(rows: Iterator[tuple[int, list[Any]]], name: str, sheet: str,
            header_row: int) -> list[Any]:
    for number, row in rows:
        if number == header_row:
            if _blank(row):
                raise NoTable(where(name, sheet, header_row),
                              "the header row is blank: it must name the columns "
                              "(set header_row if the names are on another row)")
            return row
    raise NoTable(where(name, sheet), f"has no row {header_row} to take column names from")


def _total_row(row: list[Any]) -> bool:
    """A row whose first filled cell is a total label (Total, Grand total, Summe…) and that
    holds no date: the totals under a table, not a record."""
    first = next((v for v in row if cells.cell_class(v) is not None), None)
    return is_total_label(first) and not any(cells.cell_class(v) in cells.DATE_CLASSES for v in row)


@dataclass
class _Tail:
    """Rows under the last data row seen so far, held back until another data row shows they are
    inside the table: blank rows (never records) and total rows (records inside the table)."""

    last_row: int
    totals: list[tuple[int, list[Any]]] = field(default_factory=list)
    blank_held: int = 0
    blank_inside: int = 0

    def left_out(self) -> dict[str, int]:
        return {"total": len(self.totals), "blank": self.blank_inside + self.blank_held}


def _data_rows(rows: Iterator[tuple[int, list[Any]]], tail: _Tail) -> Iterator[tuple[int, list[Any]]]:
    """The sheet's records in order; blank rows anywhere and total rows under the data are not."""
    for number, row in rows:
        if _blank(row):
            tail.blank_held += 1
            continue
        if _total_row(row):
            tail.totals.append((number, row))
            continue
        yield from tail.totals
        tail.totals.clear()
        tail.blank_inside += tail.blank_held
        tail.blank_held = 0
        tail.last_row = number
        yield number, row


def _choose_date_column(names: list[str], sample: list[list[Any]]) -> tuple[str | None, list[str]]:
    """The first date-named column starting with a date, else the first all-date column."""
    dated, hinted = [], []
    for index, column in enumerate(names):
        values = [_cell(row, index) for row in sample]
        classes = {c for c in map(cells.cell_class, values) if c is not None}
        if not classes:
            continue
        if classes <= cells.DATE_CLASSES:
            dated.append(column)
        if cells.DATE_NAME_HINT.search(column) and (classes <= cells.DATE_CLASSES
                                                    or cells.starts_with_date(values)):
            hinted.append(column)
    chosen = hinted or dated
    return (chosen[0] if chosen else None), dated


def analyze(book: Any, name: str, sheet: str, header_row: int, *,
            date_column: str | None = None, detect: bool = True,
            seed: Mapping[str, str] | None = None, sample_only: bool = False,
            check: Callable[[], None] = lambda: None) -> SheetLayout:
    """Decide a sheet's columns and types from all its rows (or the first ones, ``sample_only``).

    Every cell of the date column must be a date; the first that is not raises InputError
    naming its row.
    """
    first_column, raw_rows = sheet_rows(book, name, sheet)
    header = _header(raw_rows, name, sheet, header_row)
    names = clean_names(header, first_column)
    tail = _Tail(header_row)
    rows = _data_rows(raw_rows, tail)
    sample: list[tuple[int, list[Any]]] = []
    for number, row in rows:
        sample.append((number, row))
        if len(sample) >= SAMPLE_ROWS:
            break
    detected, dated = _choose_date_column(names, [row for _, row in sample])
    if date_column is None and detect:
        date_column = detected
    elif date_column is not None and date_column not in names:
        raise InputError(where(name, sheet, header_row),
                         f"no column named {date_column!r}; columns: {', '.join(names)}")
    classes: list[set[str]] = [set(cells.SEED_CLASSES.get((seed or {}).get(n, ""), ())) for n in names]
    date_index = names.index(date_column) if date_column is not None else -1

    def take(number: int, row: list[Any]) -> None:
        for index in range(len(names)):
            cls = cells.cell_class(_cell(row, index))
            if cls is None:
                continue
            if index == date_index and cls not in cells.DATE_CLASSES:
                raise InputError(where(name, sheet, number),
                                 f"date column {date_column!r}: {cells.not_a_date(_cell(row, index))}")
            classes[index].add(cls)

    for number, row in sample:
        take(number, row)
    if not sample_only:
        for number, row in rows:
            take(number, row)
            if number % 1000 == 0:
                check()
    keep = [i for i in range(len(names))
            if classes[i] or cells.cell_class(_cell(header, i)) is not None]
    return SheetLayout(sheet, header_row, [names[i] for i in keep],
                       [cells.kind_of(classes[i], i == date_index) for i in keep], keep,
                       date_column, dated, None if sample_only else tail.last_row,
                       {} if sample_only else tail.left_out())


def batches(book: Any, name: str, layout: SheetLayout) -> Iterator[pa.RecordBatch]:
    """The sheet's records as batches of the layout's schema; a cell that does not fit raises."""
    first_column, rows = sheet_rows(book, name, layout.sheet)
    header = _header(rows, name, layout.sheet, layout.header_row)
    names = clean_names(header, first_column, layout.naming)
    found = [names[i] if i < len(names) else None for i in layout.indices]
    if found != layout.names:
        raise InputError(where(name, layout.sheet, layout.header_row),
                         f"the header has changed since import: expected {', '.join(layout.names)}")
    schema = layout.schema()
    columns: list[list[Any]] = [[] for _ in layout.names]
    emitted = False

    def flush() -> pa.RecordBatch:
        arrays = [cells.to_array(kind, values) for kind, values in zip(layout.kinds, columns, strict=True)]
        for values in columns:
            values.clear()
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    for number, row in rows:
        if layout.last_row is not None and number > layout.last_row:
            break
        if _blank(row):
            continue
        for slot, (column, kind, index) in enumerate(zip(layout.names, layout.kinds, layout.indices, strict=True)):
            try:
                columns[slot].append(cells.convert_cell(kind, _cell(row, index)))
            except ValueError as exc:
                raise InputError(where(name, layout.sheet, number), f"column {column!r}: {exc}") from None
        if columns and len(columns[0]) >= BATCH_ROWS:
            emitted = True
            yield flush()
    if columns and (columns[0] or not emitted):
        yield flush()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "sheet"
