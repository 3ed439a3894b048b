from __future__ import annotations

import datetime as dt
import re
import shutil
import zipfile

import pytest
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font
from openpyxl.workbook.defined_name import DefinedName

from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.errors import ConfigError
from lithotse_desktop.excel.ops import bind_workbook, refresh_workbook
from lithotse_desktop.excel.workbook import BINDINGS_SHEET, WorkbookRefused, read_bindings
from lithotse_desktop.raw import run_import
from tests.cache.helpers import build_sample, write_rows
from tests.serve.cli_main import main_with_cells


def add_month(ws, lines, month=4, name="b.txt"):
    write_rows(lines, name, [(f"2024-{month:02d}-{d:02d}", d, g, f"{g}{month}-{d}")
                             for g, count in (("a", 15), ("b", 12)) for d in range(1, count + 1)])
    run_import(ws, "vals")
    build(ws, "visits")


def user_workbook(path):
    """A workbook someone made: a sheet with a chart, formulas and a defined name."""
    wb = Workbook()
    notes = wb.active
    notes.title = "Notes"
    notes["A1"] = "Budget"
    notes["B1"] = 100
    notes["B2"] = "=B1*2"
    for i, v in enumerate([3, 5, 7], start=4):
        notes.cell(i, 1, f"x{i}")
        notes.cell(i, 2, v)
    chart = BarChart()
    chart.add_data(Reference(notes, min_col=2, min_row=4, max_row=6))
    notes.add_chart(chart, "D2")
    wb.defined_names["budget"] = DefinedName("budget", attr_text="Notes!$B$1")
    wb.create_sheet("Report")
    wb.save(path)


def test_bind_writes_a_table_and_records_the_query(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    path = tmp_path / "book.xlsx"
    placed = bind_workbook(workspace, path, "visits", sheet="Data", cell="B3", from_="2024-02-01",
                           columns=["period", "grp", "n", "suppressed"])
    assert placed.ref == "B3:E7" and placed.rows == 4
    wb = load_workbook(path)
    sheet = wb["Data"]
    table = sheet.tables["lithotse_visits"]
    assert table.ref == "B3:E7"
    assert [c.name for c in table.tableColumns] == ["period", "grp", "n", "suppressed"]
    assert [c.value for c in sheet["B3:E3"][0]] == ["period", "grp", "n", "suppressed"]
    assert sheet["B4"].value == dt.datetime(2024, 2, 1) and sheet["B4"].number_format == "yyyy-mm-dd"
    assert (sheet["C4"].value, sheet["D4"].value, sheet["D4"].number_format) == ("a", 15, "#,##0")
    assert wb[BINDINGS_SHEET].sheet_state == "veryHidden"
    [binding] = read_bindings(wb)
    assert (binding.derivative, binding.sheet, binding.cell, binding.from_, binding.to) == \
        ("visits", "Data", "B3", "2024-02-01", None)


def test_refresh_resizes_and_keeps_everything_else(workspace, lines, tmp_path, libreoffice):
    build_sample(workspace, lines)
    path = tmp_path / "book.xlsx"
    user_workbook(path)
    bind_workbook(workspace, path, "visits", sheet="Data", cell="A1", columns=["period", "grp", "n"])
    wb = load_workbook(path)
    wb["Data"]["C2"].font = Font(bold=True, color="FFFF0000")
    wb["Data"]["C2"].number_format = "0.0"
    wb["Report"]["A1"] = "=SUM(lithotse_visits[n])"
    wb["Report"]["A2"] = "=COUNTA(lithotse_visits[grp])"
    wb["Report"]["A3"] = "=budget+1"
    wb.save(path)

    add_month(workspace, lines)
    [placed] = refresh_workbook(workspace, path)
    assert placed.rows == 8 and placed.ref == "A1:C9"
    assert placed.version == Catalog(workspace).current("visits").version

    wb = load_workbook(path)
    data = wb["Data"]
    assert data.tables["lithotse_visits"].ref == "A1:C9"
    assert [data.cell(r, 3).value for r in range(2, 10)] == [15, 12] * 4
    assert data["C9"].font.b and data["C9"].number_format == "0.0"  # the user's format spread to new rows
    assert wb["Report"]["A1"].value == "=SUM(lithotse_visits[n])"
    assert wb["Notes"]["B2"].value == "=B1*2" and len(wb["Notes"]._charts) == 1
    assert wb.defined_names["budget"].attr_text == "Notes!$B$1"
    assert wb.calculation.fullCalcOnLoad
    with zipfile.ZipFile(path) as archive:
        assert any(n.startswith("xl/charts/chart") for n in archive.namelist())

    recalculated = libreoffice(path, tmp_path / "lo")
    values = load_workbook(recalculated, data_only=True)
    assert values["Report"]["A1"].value == 4 * (15 + 12)
    assert values["Report"]["A2"].value == 8
    assert values["Report"]["A3"].value == 101
    assert values["Notes"]["B2"].value == 200


def test_workbook_saved_by_another_application_refreshes_again(workspace, lines, tmp_path, libreoffice):
    build_sample(workspace, lines)
    path = tmp_path / "book.xlsx"
    bind_workbook(workspace, path, "visits", sheet="Data", columns=["grp", "n"])
    saved = libreoffice(path, tmp_path / "lo")
    assert [b.derivative for b in read_bindings(load_workbook(saved))] == ["visits"]
    add_month(workspace, lines)
    [placed] = refresh_workbook(workspace, saved)
    assert placed.rows == 8
    assert load_workbook(saved)["Data"].tables["lithotse_visits"].ref == "A1:B9"


def test_shrinking_clears_the_rows_left_behind(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    path = tmp_path / "book.xlsx"
    bind_workbook(workspace, path, "visits", columns=["grp", "n"])
    wb = load_workbook(path)
    bindings = read_bindings(wb)
    bindings[0].from_ = "2024-03-01"
    from lithotse_desktop.excel.workbook import write_bindings

    write_bindings(wb, bindings)
    wb.save(path)
    [placed] = refresh_workbook(workspace, path)
    sheet = load_workbook(path)["Lithotse"]
    assert placed.ref == "A1:B3"
    assert [sheet.cell(r, 2).value for r in range(1, 8)] == ["n", 15, 12, None, None, None, None]


def _with_part(src, dest, part, data=b"<x/>"):
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dest, "w") as new:
        for item in old.infolist():
            new.writestr(item, old.read(item.filename))
        new.writestr(part, data)


@pytest.mark.parametrize("part, words", [
    ("xl/connections.xml", "data connections (Power Query"),
    ("customXml/item1.xml", "custom XML parts"),
    ("xl/vbaProject.bin", "VBA macros"),
    ("xl/pivotCache/pivotCacheDefinition1.xml", "pivot cache"),
    ("xl/something/new.xml", "rewriting the workbook would lose it"),
])
def test_parts_openpyxl_would_drop_are_refused(workspace, lines, tmp_path, part, words):
    build_sample(workspace, lines)
    plain = tmp_path / "plain.xlsx"
    bind_workbook(workspace, plain, "visits")
    path = tmp_path / "book.xlsx"
    _with_part(plain, path, part)
    before = path.read_bytes()
    with pytest.raises(WorkbookRefused, match=f"holds {re.escape(part)}.*{re.escape(words)}"):
        refresh_workbook(workspace, path)
    with pytest.raises(WorkbookRefused, match=re.escape(part)):
        bind_workbook(workspace, path, "visits", sheet="Other")
    assert path.read_bytes() == before


def test_sheet_features_openpyxl_would_drop_are_refused(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    plain = tmp_path / "plain.xlsx"
    bind_workbook(workspace, plain, "visits")
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(plain) as old, zipfile.ZipFile(path, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</worksheet>", b"<extLst><ext uri='x'><x14:sparklineGroups "
                                    b"xmlns:x14='http://schemas.microsoft.com/office/spreadsheetml/2009/9/main'/>"
                                    b"</ext></extLst></worksheet>")
            new.writestr(item, data)
    with pytest.raises(WorkbookRefused, match="sheet1.xml uses sparklineGroups"):
        refresh_workbook(workspace, path)


def test_growing_into_other_cells_is_refused_and_nothing_is_written(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    path = tmp_path / "book.xlsx"
    bind_workbook(workspace, path, "visits", columns=["grp", "n"])
    wb = load_workbook(path)
    wb["Lithotse"]["A9"] = "my note"
    wb.save(path)
    before = path.read_bytes()
    add_month(workspace, lines)
    with pytest.raises(WorkbookRefused, match=r"overwrite Lithotse!A9 \('my note'\)"):
        refresh_workbook(workspace, path)
    assert path.read_bytes() == before


def test_failed_refresh_leaves_the_workbook_as_it_was(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    path = tmp_path / "book.xlsx"
    bind_workbook(workspace, path, "visits")
    before = path.read_bytes()
    Catalog(workspace).remove("visits")
    workspace.config["cache"] = {"revalidate_seconds": 0}
    workspace.save()
    with pytest.raises(Exception, match="no derivative named 'visits'"):
        refresh_workbook(workspace, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []


def test_refusals_for_other_files_and_names(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    text = tmp_path / "notes.xlsx"
    text.write_text("not a zip")
    with pytest.raises(WorkbookRefused, match="not an .xlsx workbook"):
        refresh_workbook(workspace, text)
    macro = tmp_path / "book.xlsm"
    shutil.copy(text, macro)
    with pytest.raises(WorkbookRefused, match="only .xlsx"):
        bind_workbook(workspace, macro, "visits")
    with pytest.raises(ConfigError, match="not a cell reference"):
        bind_workbook(workspace, tmp_path / "n.xlsx", "visits", table="AB12")
    with pytest.raises(ConfigError, match="no Lithotse tables here"):
        path = tmp_path / "empty.xlsx"
        Workbook().save(path)
        refresh_workbook(workspace, path)


def test_excel_cli_bind_and_refresh(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    runner = CliRunner()
    group = main_with_cells()
    path = tmp_path / "cli.xlsx"
    out = runner.invoke(group, ["excel", "bind", str(path), "visits", "--sheet", "S", "--cell", "C2",
                                "--from", "2024-03-01", "--columns", "grp,n"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "table lithotse_visits at S!C2:D4, 2 rows" in out.output
    add_month(workspace, lines)
    out = runner.invoke(group, ["excel", "refresh", str(path)], catch_exceptions=False)
    assert out.exit_code == 0 and "lithotse_visits: 4 rows" in out.output
    bad = runner.invoke(group, ["excel", "bind", str(path), "ghost"])
    assert bad.exit_code == 1 and "no derivative named 'ghost'" in bad.output
    from lithotse_desktop import audit

    assert [e["details"]["table"] for e in audit.entries(workspace, action="excel-refresh")] == \
        ["lithotse_visits", "lithotse_visits"]
