"""A new user's first session on an empty workspace: the checklist leads from adding a source to a
chart and a formula for Excel, ticking each step off as the workspace gains what the step makes."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.gui.checklist import STATE_FILE
from lithotse_desktop.gui.pages.sources import AddSourceDialog
from tests.gui.helpers import click_date, visit_records, write_visits
from tests.gui.test_aggregate_form import items, pick


def ticked(window) -> list[str]:
    return [key for key, box in window.checklist.boxes.items() if box.isChecked()]


def click(qtbot, widget) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def test_checklist_leads_from_an_empty_workspace_to_a_chart_and_a_formula(qtbot, window, workspace, tmp_path):
    checklist = window.checklist
    assert checklist.isVisible()
    assert ticked(window) == []
    assert "4 of 4 steps" in checklist.title.text()
    assert checklist.buttons["source"].isDefault(), "the next step is the one to click"

    folder = tmp_path / "exports"
    folder.mkdir()
    write_visits(folder)
    click(qtbot, checklist.buttons["source"])
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, AddSourceDialog) and w.isVisible())
    qtbot.keyClicks(dialog.name_edit, "clinic")
    dialog.select_connector("lines")
    qtbot.keyClicks(dialog.form.editor("path"), str(folder))
    click(qtbot, dialog.ok)
    qtbot.waitUntil(lambda: not shiboken6.isValid(dialog) or not dialog.isVisible(), timeout=10000)
    qtbot.waitUntil(lambda: ticked(window) == ["source"], timeout=5000)
    assert checklist.buttons["import"].isDefault()

    click(qtbot, checklist.buttons["import"])
    page = window.sources
    assert window.stack.currentWidget() is page
    click_date(qtbot, page.picker.calendar, dt.date(2024, 1, 1))
    click_date(qtbot, page.picker.calendar, dt.date(2024, 6, 30))
    click(qtbot, page.import_button)
    qtbot.waitUntil(lambda: page.job is None and "Imported" in page.strip.status.text(), timeout=20000)
    qtbot.waitUntil(lambda: ticked(window) == ["source", "import"], timeout=10000)

    click(qtbot, checklist.buttons["aggregate"])
    derivatives = window.derivatives
    assert window.stack.currentWidget() is derivatives
    form = derivatives.dialog
    qtbot.waitExposed(form)
    qtbot.waitUntil(lambda: form.schema_known, timeout=20000)
    assert items(form.input_box) == [f"clinic › values ({visit_records(folder)} records)"]
    qtbot.keyClicks(form.name_edit, "visits_by_group")
    pick(form.date_field, "day")
    click(qtbot, form.group_rows.add_button)
    [group] = form.group_rows.rows
    pick(group.column, "grp")
    qtbot.waitUntil(lambda: "grp" in form.preview_model.table.column_names and form.preview_job is None,
                    timeout=10000)
    click(qtbot, form.save_button)
    qtbot.waitUntil(lambda: derivatives.dialog is None, timeout=20000)
    qtbot.waitUntil(lambda: ticked(window) == ["source", "import", "aggregate"], timeout=30000)
    assert Catalog(workspace).spec("visits_by_group")["group_by"] == ["grp"]

    chart = derivatives.chart
    qtbot.waitUntil(lambda: derivatives.shown is not None and derivatives.shown.name == "visits_by_group"
                    and chart.table is not None, timeout=10000)
    assert derivatives.tabs.currentWidget() is chart, "a new aggregate opens on its chart"
    assert chart.series_names() == ["a", "b", "c", "d"]
    assert chart.axis.ticks[0].text == "Jan 2024"
    lines = (folder / "visits.txt").read_text().split()
    per_month = Counter((line[:7], line.split(",")[2]) for line in lines)
    months = [dt.date(2024, m, 1) for m in range(1, 7)]
    by_label = {line.label: line for line in chart.lines}
    for group in ("a", "b"):
        assert by_label[group].segments() == [[(m, per_month[(m.isoformat()[:7], group)]) for m in months]]
    for group in ("c", "d"):
        assert by_label[group].suppressed == set(months), "fewer than 11 records a month: shaded, not drawn"
        assert by_label[group].segments() == []

    click(qtbot, checklist.buttons["excel"])
    sheets = window.spreadsheets
    assert window.stack.currentWidget() is sheets
    qtbot.waitUntil(lambda: "visits_by_group" in items(sheets.derivative), timeout=10000)
    pick(sheets.derivative, "visits_by_group")
    qtbot.waitUntil(lambda: sheets.copy_formula.isEnabled(), timeout=5000)
    click(qtbot, sheets.copy_formula)
    assert QApplication.clipboard().text() == sheets.formula.text()
    assert ticked(window) == ["source", "import", "aggregate", "excel"]
    assert "all four steps done" in checklist.title.text()

    click(qtbot, checklist.hide_button)
    assert not checklist.isVisible()
    assert json.loads((workspace.root / STATE_FILE).read_text()) == {"started": True, "excel": True, "hidden": True}


def test_a_workspace_with_sources_opens_without_the_checklist(qtbot, workspace, test_plugins, tmp_path):
    from lithotse_desktop.gui.window import MainWindow

    (tmp_path / "in").mkdir()
    workspace.add_source("clinic", "lines", {"path": str(tmp_path / "in")}, {})
    win = MainWindow(workspace)
    qtbot.addWidget(win)
    win.show()
    assert not win.checklist.isVisible()
    assert not (workspace.root / STATE_FILE).exists()
