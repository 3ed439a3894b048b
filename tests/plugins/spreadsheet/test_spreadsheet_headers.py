"""Sheets as people keep them: header cells with any text, totals and blank rows under the data,
stray sheets beside the table, and landings made before these rules still reading as they did."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest

from lithotse_desktop.connectors import FetchRequest, RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_spreadsheet import SpreadsheetConnector
from lithotse_spreadsheet.book import SheetLayout


def save(path: Path, sheets: dict[str, list[list]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(r, c, value)
    book.save(path)
    return path


def fetch(path: Path, **settings) -> tuple[FetchRequest, dict[str, dict], dict[str, list[dict]]]:
    conn = SpreadsheetConnector({"path": str(path), **settings})
    request = FetchRequest("t", [i.name for i in conn.streams()], DateRange(), {})
    metas, rows = {}, {}
    for payload in conn.fetch(request):
        metas[payload.stream] = payload.meta
        obj = RawObject(payload.path, payload.stream, payload.name, payload.media_type, payload.meta)
        rows[payload.stream] = [r for batch in conn.read(obj) for r in batch.to_pylist()]
    return request, metas, rows


def test_header_cells_hold_any_text(tmp_path):
    path = save(tmp_path / "h.xlsx", {"S": [
        ["LOS\n(days)", "Name", "name", None, 2024, "% Readmit", "_row"],
        [3, "a", "b", "c", 1, 0.1, "r"]]})
    _, metas, rows = fetch(path)
    assert list(rows["S"][0]) == ["LOS (days)", "Name", "name_2", "column_D", "2024", "% Readmit", "_row_2"]


def test_totals_in_another_language_leave_the_id_column_numeric(tmp_path):
    data = [[1000 + i, dt.date(2024, 3, 1 + i), i * 1.5] for i in range(5)]
    path = save(tmp_path / "g.xlsx", {"Fälle": [["Fall-Nr.", "Aufnahme", "Kosten (€)"], *data, [None],
                                                ["Gesamt", None, 15.0], ["Summe:", None, 15.0]]})
    _, metas, rows = fetch(path)
    [(stream, meta)] = metas.items()
    assert meta["left_out"] == {"total": 2, "blank": 1} and meta["last_row"] == 6
    assert [c[:2] for c in meta["columns"]] == [["Fall-Nr.", "int64"], ["Aufnahme", "date32"],
                                                 ["Kosten (€)", "float64"]]
    assert [[r["Fall-Nr."], r["Aufnahme"], r["Kosten (€)"]] for r in rows[stream]] == data


def test_a_total_row_inside_the_data_is_a_record(tmp_path):
    path = save(tmp_path / "t.xlsx", {"Labs": [["Test", "Value"], ["Total cholesterol", 5.2], ["Total", 9.9],
                                               ["HDL", 1.3], ["Total", 6.5]]})
    _, metas, rows = fetch(path)
    assert [r["Test"] for r in rows["Labs"]] == ["Total cholesterol", "Total", "HDL"]
    assert metas["Labs"]["left_out"] == {"total": 1, "blank": 0}
    dated = save(tmp_path / "d.xlsx", {"S": [["When", "n"], [dt.date(2024, 1, 1), 1], ["Total", 1],
                                             [dt.date(2024, 1, 2), 2]]})
    with pytest.raises(InputError, match=r"^d.xlsx, sheet 'S', row 3: date column 'When': 'Total' is not a date"):
        fetch(dated)


def test_stray_sheets_are_skipped_with_the_reason_and_the_data_sheet_lands(tmp_path):
    data = [["Seen on", "Patient #", "Ward/Bed"]] + [[dt.date(2024, 1, d), f"P{d}", "W1/3"] for d in (1, 2, 3)]
    path = save(tmp_path / "w.xlsx", {
        "Read me": [["About this export"], ["Made by the PAS"]],
        "Visits": [["Visits report"], [None], *data],
        "Notes": [["Note"], ["Free text, line 2"], ["Free text, line 3"], ["line 4"]],
        "Blank header": [["x"], [None], [None], ["value under a blank row 3"]]})
    request, metas, rows = fetch(path, header_row=3, date_column="Seen on")
    assert list(metas) == ["Visits"]
    assert [r["Patient #"] for r in rows["Visits"]] == ["P1", "P2", "P3"]
    assert request.skipped == [
        ("Read_me", "w.xlsx, sheet 'Read me': has no row 3 to take column names from"),
        ("Notes", "w.xlsx, sheet 'Notes', row 3: no date column 'Seen on'; columns: Free text, line 3"),
        ("Blank_header", "w.xlsx, sheet 'Blank header', row 3: the header row is blank: it must name the "
                         "columns (set header_row if the names are on another row)")]
    infos = {i.name: i for i in SpreadsheetConnector({"path": str(path), "header_row": 3}).streams()}
    assert infos["Read_me"].description == ("w.xlsx, sheet 'Read me' (no table: has no row 3 to take column "
                                            "names from; skipped at import)")


def test_settings_name_columns_as_written_case_aside(tmp_path):
    path = save(tmp_path / "k.xlsx", {"S": [["Admission ID", "Admit Date, local", "x"],
                                            ["A1", dt.date(2024, 1, 1), 1]]})
    [info] = SpreadsheetConnector({"path": str(path), "key": "admission id",
                                   "date_column": "admit date, local"}).streams()
    assert (info.key, info.date_field) == (("Admission ID",), "Admit Date, local")


def test_a_landing_made_before_these_rules_reads_as_it_did(tmp_path):
    path = save(tmp_path / "old.xlsx", {"S": [["A  B", "Name", "name"], [1, "x", "y"], ["Total", None, None]]})
    old_meta = {"format": "lithotse-spreadsheet/1", "sheet": "S", "header_row": 1,
                "columns": [["A  B", "string", 0], ["Name", "string", 1], ["name", "string", 2]],
                "date_column": None, "date_columns": []}
    layout = SheetLayout.from_meta(old_meta)
    assert layout is not None and (layout.naming, layout.last_row) == (1, None)
    conn = SpreadsheetConnector({"path": str(path)})
    rows = [r for b in conn.read(RawObject(path, "S", "old.xlsx", "x", old_meta)) for r in b.to_pylist()]
    assert rows == [{"A  B": "1", "Name": "x", "name": "y"}, {"A  B": "Total", "Name": None, "name": None}]
    _, metas, new_rows = fetch(path)
    assert new_rows["S"] == [{"A B": 1, "Name": "x", "name_2": "y"}]
