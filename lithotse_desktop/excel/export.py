"""Exporting a table to .xlsx (formatted), .csv or .parquet, written atomically.

The .xlsx is an Excel table (``lithotse_<name>``) with a bold header, number and date
formats per column, a frozen header row and column widths fitted to the data. It is written
in openpyxl's streaming mode, so large derivatives do not have to fit in memory as cells.
Text that starts with ``=`` is written as text, never as a formula.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import math
import warnings
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..atomic import atomic_write_stream
from ..errors import ConfigError

FORMATS = ("csv", "parquet", "xlsx")
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
MAX_WIDTH = 60
BATCH_ROWS = 10_000


def number_format(typ: pa.DataType) -> str | None:
    if pa.types.is_integer(typ):
        return "#,##0"
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "#,##0.00"
    if pa.types.is_date(typ):
        return DATE_FORMAT
    if pa.types.is_timestamp(typ):
        return DATETIME_FORMAT
    return None


def cell_value(value: object) -> Any:
    """Python values openpyxl writes as real Excel types (no tz: Excel has none; no NaN)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, dict)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def column_width(name: str, typ: pa.DataType, sample: list) -> float:
    """Wide enough for the header and the first rows, within reason."""
    fmt = number_format(typ)
    if fmt == DATE_FORMAT:
        longest = 10
    elif fmt == DATETIME_FORMAT:
        longest = 19
    elif fmt:
        longest = max((len(f"{v:,.2f}" if isinstance(v, float) else f"{v:,}") for v in sample
                       if isinstance(v, (int, float))), default=1)
    else:
        longest = max((len(str(v)) for v in sample if v is not None), default=1)
    return float(min(MAX_WIDTH, max(longest, len(name) + 2) + 2))


def write_xlsx(out: BinaryIO, schema: pa.Schema, batches: Iterable[pa.RecordBatch], sheet: str = "data",
               table_name: str | None = None) -> int:
    """Write the batches as one formatted sheet to ``out``, row by row; returns the rows written.
    Column widths are fitted to the first rows, the only ones looked at twice."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.table import Table, TableColumn, TableStyleInfo

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31])
    fields = list(schema)
    formats = [number_format(f.type) for f in fields]
    pending = iter(batches)
    first = next(pending, None)
    head = first.slice(0, 200) if first is not None else schema.empty_table()
    for i, field in enumerate(fields, start=1):
        sample = head.column(i - 1).to_pylist()
        ws.column_dimensions[get_column_letter(i)].width = column_width(field.name, field.type, sample)
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for name in schema.names:
        cell = WriteOnlyCell(ws, value=str(name))
        cell.font = bold
        cell.data_type = "s"
        header.append(cell)
    ws.append(header)
    rows = 0
    for batch in chain([first] if first is not None else [], pending):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for values in zip(*columns, strict=True):
            row = []
            for value, fmt in zip(values, formats, strict=True):
                cell = WriteOnlyCell(ws, value=cell_value(value))
                if fmt:
                    cell.number_format = fmt
                if isinstance(cell.value, str):
                    cell.data_type = "s"
                row.append(cell)
            ws.append(row)
        rows += batch.num_rows
    if fields:
        ref = f"A1:{get_column_letter(len(fields))}{max(rows, 1) + 1}"
        xl_table = Table(displayName=table_name or "data", ref=ref,
                         tableColumns=[TableColumn(id=i, name=str(n)) for i, n in enumerate(schema.names, 1)])
        xl_table.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
        from openpyxl.worksheet.filters import AutoFilter

        xl_table.autoFilter = AutoFilter(ref=ref)
        with warnings.catch_warnings():  # the columns are set above, as write-only mode needs
            warnings.simplefilter("ignore")
            ws.add_table(xl_table)
    wb.save(out)
    return rows


def xlsx_bytes(table: pa.Table, sheet: str = "data", table_name: str | None = None) -> bytes:
    buf = io.BytesIO()
    write_xlsx(buf, table.schema, table.to_batches(BATCH_ROWS), sheet, table_name)
    return buf.getvalue()


def export_batches(schema: pa.Schema, batches: Iterable[pa.RecordBatch], fmt: str, path: Path, *,
                   name: str = "data") -> int:
    """Write the batches to ``path`` as they come (never the whole table in memory), atomically;
    returns the rows written."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    written = 0

    def write(out: BinaryIO) -> None:
        nonlocal written
        if fmt == "xlsx":
            written = write_xlsx(out, schema, batches, sheet=name, table_name=f"lithotse_{name}")
            return
        writer: pacsv.CSVWriter | pq.ParquetWriter
        writer = pacsv.CSVWriter(out, schema) if fmt == "csv" else pq.ParquetWriter(out, schema, compression="zstd")
        with writer:
            for batch in batches:
                writer.write_batch(batch)
                written += batch.num_rows

    atomic_write_stream(Path(path), write)
    return written


def export_table(table: pa.Table, fmt: str, path: Path, *, name: str = "data") -> Path:
    export_batches(table.schema, table.to_batches(BATCH_ROWS), fmt, path, name=name)
    return Path(path)
