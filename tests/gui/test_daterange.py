"""The date-range picker, driven by mouse clicks on calendar cells, presets and typing."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QTableView

from lithotse_desktop.dates import DateRange
from lithotse_desktop.gui.daterange import DateRangePicker
from tests.gui.helpers import click_date

TODAY = dt.date(2024, 5, 15)


@pytest.fixture
def picker(qtbot):
    widget = DateRangePicker(today=lambda: TODAY)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def highlighted(picker: DateRangePicker, day: dt.date) -> bool:
    fmt = picker.calendar.dateTextFormat(QDate(day.year, day.month, day.day))
    return fmt.background().style() != Qt.BrushStyle.NoBrush


def test_clicking_first_and_last_day_selects_and_highlights_span(qtbot, picker):
    seen = []
    picker.rangeChanged.connect(seen.append)
    click_date(qtbot, picker.calendar, dt.date(2024, 3, 4))
    assert picker.range() == DateRange(dt.date(2024, 3, 4), dt.date(2024, 3, 4))
    click_date(qtbot, picker.calendar, dt.date(2024, 3, 20))
    assert picker.range() == DateRange(dt.date(2024, 3, 4), dt.date(2024, 3, 20))
    assert seen[-1] == picker.range()
    assert (picker.from_edit.text(), picker.to_edit.text()) == ("2024-03-04", "2024-03-20")
    assert all(highlighted(picker, dt.date(2024, 3, d)) for d in range(4, 21))
    assert not highlighted(picker, dt.date(2024, 3, 3))
    assert not highlighted(picker, dt.date(2024, 3, 21))
    ends = picker.calendar.dateTextFormat(QDate(2024, 3, 4))
    assert ends.background().color() == picker.calendar.palette().color(QPalette.ColorRole.Highlight)


def test_clicks_in_reverse_order_and_across_months(qtbot, picker):
    click_date(qtbot, picker.calendar, dt.date(2024, 2, 10))
    click_date(qtbot, picker.calendar, dt.date(2023, 12, 28))
    assert picker.range() == DateRange(dt.date(2023, 12, 28), dt.date(2024, 2, 10))
    click_date(qtbot, picker.calendar, dt.date(2024, 7, 1))
    assert picker.range() == DateRange(dt.date(2024, 7, 1), dt.date(2024, 7, 1)), "third click restarts"


@pytest.mark.parametrize("preset, expected", [
    ("Last 7 days", DateRange(dt.date(2024, 5, 9), TODAY)),
    ("Last month", DateRange(dt.date(2024, 4, 1), dt.date(2024, 4, 30))),
    ("This quarter", DateRange(dt.date(2024, 4, 1), TODAY)),
    ("Year to date", DateRange(dt.date(2024, 1, 1), TODAY)),
    ("All dates", DateRange()),
])
def test_presets_chosen_from_the_combo(qtbot, picker, preset, expected):
    picker.preset.setFocus()
    index = picker.preset.findText(preset)
    picker.preset.setCurrentIndex(index)
    picker.preset.activated.emit(index)
    assert picker.range() == expected
    assert picker.from_edit.text() == (expected.start.isoformat() if expected.start else "")
    assert picker.to_edit.text() == (expected.end.isoformat() if expected.end else "")


def test_typed_dates_drive_the_calendar_and_open_ends(qtbot, picker):
    picker.from_edit.clear()
    qtbot.keyClicks(picker.from_edit, "2024-01-05")
    qtbot.keyClick(picker.from_edit, Qt.Key.Key_Tab)
    picker.to_edit.setFocus()
    qtbot.keyClicks(picker.to_edit, "2024-01-09")
    qtbot.keyClick(picker.to_edit, Qt.Key.Key_Return)
    assert picker.range() == DateRange(dt.date(2024, 1, 5), dt.date(2024, 1, 9))
    assert picker.calendar.monthShown() == 1 and picker.calendar.yearShown() == 2024
    assert highlighted(picker, dt.date(2024, 1, 7))
    assert picker.preset.currentText() == "Custom range"
    picker.to_edit.setFocus()
    picker.to_edit.selectAll()
    qtbot.keyClick(picker.to_edit, Qt.Key.Key_Delete)
    qtbot.keyClick(picker.to_edit, Qt.Key.Key_Return)
    assert picker.range() == DateRange(dt.date(2024, 1, 5), None)


def test_impossible_typed_date_is_explained_and_ignored(qtbot, picker):
    picker.set_range(DateRange(dt.date(2024, 1, 1), dt.date(2024, 1, 31)))
    picker.to_edit.setFocus()
    picker.to_edit.selectAll()
    qtbot.keyClicks(picker.to_edit, "2024-02-30")
    qtbot.keyClick(picker.to_edit, Qt.Key.Key_Return)
    assert "not an ISO date" in picker.message.text()
    assert picker.range() == DateRange(dt.date(2024, 1, 1), dt.date(2024, 1, 31))


def test_typed_range_backwards_is_refused(qtbot, picker):
    picker.set_range(DateRange(dt.date(2024, 1, 10), dt.date(2024, 1, 20)))
    picker.from_edit.setFocus()
    picker.from_edit.selectAll()
    qtbot.keyClicks(picker.from_edit, "2024-02-01")
    qtbot.keyClick(picker.from_edit, Qt.Key.Key_Return)
    assert "after" in picker.message.text()
    assert picker.range() == DateRange(dt.date(2024, 1, 10), dt.date(2024, 1, 20))


def test_enter_on_keyboard_selected_day_acts_as_click(qtbot, picker):
    picker.calendar.setSelectedDate(QDate(2024, 5, 2))
    picker.calendar.setFocus()
    view = picker.calendar.findChild(QTableView, "qt_calendar_calendarview")
    qtbot.keyClick(view, Qt.Key.Key_Return)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    qtbot.keyClick(view, Qt.Key.Key_Right)
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert picker.range() == DateRange(dt.date(2024, 5, 2), dt.date(2024, 5, 4))


def test_day_cells_keep_their_size_in_a_large_window(qtbot):
    picker = DateRangePicker()
    qtbot.addWidget(picker)
    view = picker.calendar.findChild(QTableView, "qt_calendar_calendarview")
    sizes = []
    for width, height in ((640, 480), (1920, 1080), (3840, 2160)):
        picker.resize(width, height)
        picker.show()
        qtbot.waitExposed(picker)
        qtbot.wait(20)
        cell = view.visualRect(view.model().index(3, 3))
        sizes.append((cell.width(), cell.height()))
    assert sizes[0] == sizes[1] == sizes[2]
    assert sizes[0][0] < 4 * picker.fontMetrics().horizontalAdvance("30"), "a cell about as wide as its day"
