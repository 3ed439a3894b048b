"""Spreadsheets, acting as a user: export a file, bind and refresh a workbook, copy a formula."""

from __future__ import annotations

import csv

from openpyxl import load_workbook
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from lithotse_desktop.derive.build import build
from tests.gui.helpers import demo_workspace


def ready(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in")
    page = window.show_page("spreadsheets")
    page.reload()
    qtbot.waitUntil(lambda: not page.busy and page.derivative.count() == 1, timeout=10000)
    return page


def test_export_writes_the_chosen_range(qtbot, window, workspace, tmp_path):
    page = ready(qtbot, window, workspace, tmp_path)
    qtbot.keyClicks(page.from_edit, "2024-02-01")
    qtbot.keyClicks(page.to_edit, "2024-03-31")
    page.format.setCurrentText("csv")
    assert page.export_to(tmp_path / "out.csv")
    qtbot.waitUntil(lambda: page.job is None, timeout=10000)
    assert "Exported 8 row(s)" in page.strip.status.text()
    with open(tmp_path / "out.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["period"] for r in rows} == {"2024-02-01", "2024-03-01"}


def test_formula_and_power_query_url_go_to_the_clipboard(qtbot, window, workspace, tmp_path):
    page = ready(qtbot, window, workspace, tmp_path)
    assert [page.measure.itemText(i) for i in range(page.measure.count())] == ["visits", "total"]
    page.dimension.setCurrentText("grp")
    assert [page.dim_value.itemText(i) for i in range(page.dim_value.count())] == ["a", "b", "c", "d"]
    page.dim_value.setCurrentText("b")
    qtbot.keyClicks(page.from_edit, "2024-01-01")
    qtbot.keyClicks(page.to_edit, "2024-12-31")
    expected = '=LITHOTSE_VALUE("visits_by_grp","visits","2024-01-01","2024-12-31","grp","b")'
    assert page.formula.text() == expected
    qtbot.mouseClick(page.copy_formula, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == expected
    qtbot.mouseClick(page.copy_url, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == ("http://127.0.0.1:8765/api/v1/derivatives/visits_by_grp/table?"
                                               "format=csv&from=2024-01-01&to=2024-12-31")
    qtbot.mouseClick(page.copy_m, Qt.MouseButton.LeftButton)
    m = QApplication.clipboard().text()
    assert 'Authorization="Bearer " & LithotseToken' in m and "token=" not in m
    page.to_edit.setText("2024-99-01")
    assert "To" in page.range_error.text()


def test_bind_then_refresh_a_workbook(qtbot, window, workspace, tmp_path):
    page = ready(qtbot, window, workspace, tmp_path)
    book = tmp_path / "report.xlsx"
    qtbot.keyClicks(page.workbook, str(book))
    page.cell.setText("B2")
    qtbot.mouseClick(page.bind_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None, timeout=20000)
    assert "Bound table lithotse_visits_by_grp at Lithotse!B2" in page.strip.status.text(), page.result.toPlainText()
    sheet = load_workbook(book)["Lithotse"]
    assert [sheet.cell(2, c).value for c in range(2, 7)] == ["period", "grp", "visits", "total", "suppressed"]
    assert page.books.rowCount() == 1
    assert "lithotse_visits_by_grp ← visits_by_grp at Lithotse!B2" in page.books.item(0, 1).text()
    assert (workspace.root / "desktop-workbooks.json").exists()

    (tmp_path / "in" / "more.txt").write_text("2024-07-01,5,a,new-1\n")
    from lithotse_desktop.raw import run_import

    run_import(workspace, "clinic")
    build(workspace, "visits_by_grp")
    qtbot.mouseClick(page.refresh_all, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None, timeout=20000)
    assert page.strip.status.text() == "Refreshed 1 workbook(s)."
    sheet = load_workbook(book)["Lithotse"]
    periods = [sheet.cell(r, 2).value for r in range(3, sheet.max_row + 1)]
    assert any(str(p).startswith("2024-07-01") for p in periods), periods


def test_refreshing_a_missing_workbook_says_so(qtbot, window, workspace, tmp_path):
    page = ready(qtbot, window, workspace, tmp_path)
    page.add_workbook(str(tmp_path / "gone.xlsx"))
    assert page.books.item(0, 1).text() == "(file missing)"
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None, timeout=20000)
    assert "1 failed" in page.strip.status.text()
    assert "no such workbook" in page.result.toPlainText()
