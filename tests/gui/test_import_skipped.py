"""Importing a workbook as it comes from the desktop app: the stray sheet and the rows left out are
shown with the import's summary."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.support.admissions import HEADER_ROW, write_admissions


def test_the_summary_shows_the_skipped_sheet_and_the_rows_left_out(qtbot, window, workspace, tmp_path):
    made = write_admissions(tmp_path / "admissions.xlsx")
    workspace.add_source("adm", "spreadsheet", {"path": str(made.path), "header_row": HEADER_ROW}, {})
    page = window.show_page("sources")
    page.reload(select="adm")
    qtbot.waitUntil(lambda: page.streams.count() == 2, timeout=20000)
    assert "skipped at import" in page.streams.item(1).toolTip()
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None and "Imported" in page.strip.status.text(), timeout=30000)
    assert f"Imported {len(made.rows)} new records from adm" in page.strip.status.text()
    qtbot.mouseClick(page.details_button, Qt.MouseButton.LeftButton)
    assert page.summary.isVisible()
    summary = page.summary.toPlainText().splitlines()
    assert f"{len(made.rows)} records" in summary[0] and "2 rows left out (1 total, 1 blank)" in summary[0]
    assert summary[1] == "adm/Notes: skipped: admissions.xlsx, sheet 'Notes': has no row 3 to take column names from"
