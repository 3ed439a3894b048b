"""Exporting a table to .xlsx (formatted), .csv or .parquet, written atomically."""

from __future__ import annotations

import datetime as dt
import decimal
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..atomic import atomic_write_bytes
from ..errors import ConfigError

FORMATS = ("csv", "parquet", "xlsx")
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


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


def cell_value(value: object) -> object:
    """Python values openpyxl writes as real Excel types (no tz: Excel has none)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (list, dict)):
        return str(value)
    return value


def xlsx_bytes(table: pa.Table, sheet: str = "data", table_name: str | None = None) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.table import Table, TableStyleInfo

    wb = Workbook()
    ws = wb.active
    ws.title = sheet[:31]
    ws.append(table.column_names)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for row in zip(*columns):
        ws.append([cell_value(v) for v in row])
    for i, field in enumerate(table.schema, start=1):
        letter = get_column_letter(i)
        fmt = number_format(field.type)
        if fmt:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.number_format = fmt
        sample = [len(field.name)] + [len(str(v)) for v in columns[i - 1][:200] if v is not None]
        ws.column_dimensions[letter].width = min(60, max(sample) + 3 if fmt != DATE_FORMAT else 12)
    ws.freeze_panes = "A2"
    if table.num_columns:
        ref = f"A1:{get_column_letter(table.num_columns)}{max(table.num_rows, 1) + 1}"
        xl_table = Table(displayName=table_name or "data", ref=ref)
        xl_table.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
        ws.add_table(xl_table)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_table(table: pa.Table, fmt: str, path: Path, *, name: str = "data") -> Path:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        data = buf.getvalue()
    elif fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
    else:
        data = xlsx_bytes(table, sheet=name, table_name=f"lithotse_{name}")
    atomic_write_bytes(path, data)
    return path
