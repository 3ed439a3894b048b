"""Acting like a user on Qt widgets: clicking calendar days, finding the open message box."""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QCalendarWidget, QMessageBox, QTableView


def _day_cells(calendar: QCalendarWidget) -> list[tuple[int, int]]:
    """Model (row, column) of the 42 day cells in reading order, skipping header row/column."""
    view = calendar.findChild(QTableView, "qt_calendar_calendarview")
    model = view.model()
    no_names = QCalendarWidget.HorizontalHeaderFormat.NoHorizontalHeader
    no_weeks = QCalendarWidget.VerticalHeaderFormat.NoVerticalHeader
    first_row = 0 if calendar.horizontalHeaderFormat() == no_names else 1
    first_col = 0 if calendar.verticalHeaderFormat() == no_weeks else 1
    return [(r, c) for r in range(first_row, model.rowCount())
            for c in range(first_col, model.columnCount())]


def click_date(qtbot, calendar: QCalendarWidget, day: dt.date) -> None:
    """Page the calendar to the day's month and click the day's cell with the mouse."""
    calendar.setCurrentPage(day.year, day.month)
    view = calendar.findChild(QTableView, "qt_calendar_calendarview")
    model = view.model()
    cells = _day_cells(calendar)
    texts = [str(model.data(model.index(r, c))) for r, c in cells]
    first = texts.index("1")  # earlier cells hold the previous month's last days (>= 22)
    row, col = cells[first + day.day - 1]
    assert texts[first + day.day - 1] == str(day.day)
    rect = view.visualRect(model.index(row, col))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def open_message_box() -> QMessageBox | None:
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, QMessageBox) and widget.isVisible():
            return widget
    return None


def write_visits(folder, months: int = 6) -> None:
    """Daily records for ``months`` months of 2024 in groups a/b, and rare groups c/d (suppressed).

    Two rare groups per month (3 and 8 records) that together hide 11, so suppression needs no
    complementary cell among a and b.
    """
    lines = []
    for m in range(1, months + 1):
        for d in range(1, 29):
            for g in ("a", "b"):
                lines.append(f"2024-{m:02d}-{d:02d},{d},{g},{g}{m}-{d}")
            if d <= 3:
                lines.append(f"2024-{m:02d}-{d:02d},{d},c,c{m}-{d}")
            if d <= 8:
                lines.append(f"2024-{m:02d}-{d:02d},{d},d,d{m}-{d}")
    (folder / "visits.txt").write_text("\n".join(lines) + "\n")


def visit_records(folder) -> int:
    """How many records :func:`write_visits` wrote into ``folder`` (counted from the file)."""
    return len((folder / "visits.txt").read_text().splitlines())


VISITS_SPEC = {"name": "visits_by_grp", "kind": "aggregate", "input": {"source": "clinic", "stream": "values"},
               "date_field": "day", "grain": "month", "group_by": ["grp"],
               "measures": [{"fn": "count", "as": "visits"}, {"fn": "sum", "column": "value", "as": "total"}]}
SLOW_SPEC = {"name": "visits_slow", "kind": "sql", "inputs": {"m": {"derivative": "visits_by_grp"}},
             "sql": "SELECT grp, visits + (SELECT count(*) FROM range(1000000000000) t(i) WHERE hash(i) % 7 = 1) "
                    "AS visits FROM m"}
"""Built after ``visits_by_grp``; its query would run for an hour in constant memory (for Cancel)."""


def demo_workspace(workspace, folder, build_it: bool = True) -> None:
    """A ``clinic`` lines source with six months imported and, optionally, a built monthly aggregate."""
    from lithotse_desktop.derive.build import build
    from lithotse_desktop.derive.service import add_spec
    from lithotse_desktop.raw import run_import

    folder.mkdir(exist_ok=True)
    write_visits(folder)
    workspace.add_source("clinic", "lines", {"path": str(folder)}, {})
    run_import(workspace, "clinic")
    if build_it:
        add_spec(workspace, VISITS_SPEC)
        build(workspace, "visits_by_grp")
