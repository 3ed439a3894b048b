from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import read_table
from lithotse_desktop.excel.export import export_table
from lithotse_desktop.excel.ops import export_derivative
from tests.cache.helpers import build_sample


def sample() -> pa.Table:
    return pa.table({
        "period": pa.array([dt.date(2024, 1, 1), dt.date(2024, 2, 1)], pa.date32()),
        "seen": pa.array([dt.datetime(2024, 1, 1, 12, 30, tzinfo=dt.UTC), None], pa.timestamp("us", "UTC")),
        "department_name": ["cardiology and vascular medicine", "=HYPERLINK(\"http://x\")"],
        "n": pa.array([1234567, None], pa.int64()),
        "avg": [1.25, float("nan")],
        "suppressed": [False, True],
    })


def test_xlsx_is_a_formatted_table(tmp_path):
    path = export_table(sample(), "xlsx", tmp_path / "out.xlsx", name="visits")
    wb = load_workbook(path)
    sheet = wb["visits"]
    assert sheet.freeze_panes == "A2"
    table = sheet.tables["lithotse_visits"]
    assert table.ref == "A1:F3" and [c.name for c in table.tableColumns] == sample().column_names
    assert all(c.font.b for c in sheet[1])
    row = {c.column_letter: c for c in sheet[2]}
    assert row["A"].value == dt.datetime(2024, 1, 1) and row["A"].number_format == "yyyy-mm-dd"
    assert row["B"].value == dt.datetime(2024, 1, 1, 12, 30) and row["B"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert row["D"].value == 1234567 and row["D"].number_format == "#,##0"
    assert row["E"].number_format == "#,##0.00"
    assert sheet["C3"].data_type == "s" and sheet["C3"].value.startswith("=HYPERLINK")
    assert sheet["E3"].value is None and sheet["D3"].value is None
    widths = {k: sheet.column_dimensions[k].width for k in "ABCDEF"}
    assert widths["C"] > widths["A"] >= 12 and widths["C"] <= 60
    assert widths["D"] >= len("1,234,567")


def test_csv_and_parquet_round_trip(tmp_path):
    table = sample().drop_columns(["avg"])
    csv_path = export_table(table, "csv", tmp_path / "out.csv")
    assert csv_path.read_text().splitlines()[0] == '"period","seen","department_name","n","suppressed"'
    parquet_path = export_table(table, "parquet", tmp_path / "out.parquet")
    assert pq.read_table(parquet_path).equals(table)
    assert pq.ParquetFile(parquet_path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_derivative_export_opens_in_libreoffice(workspace, lines, tmp_path, libreoffice):
    build_sample(workspace, lines)
    _version, table = read_table(workspace, "visits")
    path = export_table(table, "xlsx", tmp_path / "visits.xlsx", name="visits")
    converted = libreoffice(path, tmp_path / "lo", "csv")
    lines_out = converted.read_text().splitlines()
    assert lines_out[0] == "period,grp,n,total,avg,ids,suppressed"
    assert lines_out[1].split(",")[:4] == ["2024-01-01", "a", "15", "120"]
    assert len(lines_out) == 1 + table.num_rows


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_derivative_export_writes_part_by_part(workspace, lines, tmp_path, monkeypatch, fmt):
    """An export reads one batch of one part at a time, never the whole table, and writes what
    reading the whole version gives."""
    build_sample(workspace, lines)
    version, table = read_table(workspace, "visits")
    assert len(version.partitions) > 1

    def whole_table(*_args, **_kwargs):
        raise AssertionError("the export read the whole table")

    monkeypatch.setattr(Catalog, "read", whole_table)
    path, rows = export_derivative(workspace, "visits", fmt, tmp_path / f"visits.{fmt}")
    assert rows == table.num_rows
    if fmt == "parquet":
        assert pq.read_table(path).equals(table)
    elif fmt == "csv":
        assert pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=table.schema)).equals(table)
    else:
        sheet = load_workbook(path).worksheets[0]
        values = list(sheet.iter_rows(values_only=True))
        assert list(values[0]) == table.column_names
        assert [row[table.column_names.index("grp")] for row in values[1:]] == table.column("grp").to_pylist()
