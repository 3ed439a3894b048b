"""A date-range picker: click the first and last day on a calendar, pick a preset, or type dates.

The calendar, the two text fields and the preset box always show the same range; ``range()``
returns the core's :class:`~lithotse_desktop.dates.DateRange` (an empty field is an open end).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from PySide6.QtCore import QDate, QElapsedTimer, QEvent, QRegularExpression, Qt, Signal
from PySide6.QtGui import QBrush, QPalette, QRegularExpressionValidator, QTextCharFormat
from PySide6.QtWidgets import (
    QApplication,
    QCalendarWidget,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from ..dates import DateRange
from ..errors import ConfigError
from .common import named


def _qdate(day: dt.date) -> QDate:
    return QDate(day.year, day.month, day.day)


def _pydate(day: QDate) -> dt.date:
    return dt.date(day.year(), day.month(), day.day())


def _month_before(today: dt.date) -> DateRange:
    last = today.replace(day=1) - dt.timedelta(days=1)
    return DateRange(last.replace(day=1), last)


def _quarter(today: dt.date) -> DateRange:
    first_month = 3 * ((today.month - 1) // 3) + 1
    return DateRange(today.replace(month=first_month, day=1), today)


PRESETS: dict[str, Callable[[dt.date], DateRange]] = {
    "Last 7 days": lambda today: DateRange(today - dt.timedelta(days=6), today),
    "Last month": _month_before,
    "This quarter": _quarter,
    "Year to date": lambda today: DateRange(today.replace(month=1, day=1), today),
    "All dates": lambda today: DateRange(),
}
CUSTOM = "Custom range"


class DateRangePicker(QWidget):
    """Calendar with click-click range selection, presets and typed YYYY-MM-DD fields."""

    rangeChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None, *,
                 today: Callable[[], dt.date] = dt.date.today) -> None:
        super().__init__(parent)
        self._today = today
        self._start: dt.date | None = None
        self._end: dt.date | None = None
        self._awaiting_end = False

        self.preset = named(QComboBox(), "Date range preset",
                            "Quick ranges relative to today")
        self.preset.addItems([CUSTOM, *PRESETS])
        self.preset.activated.connect(self._on_preset)

        pattern = QRegularExpression(r"\d{0,4}(-\d{0,2}(-\d{0,2})?)?")
        self.from_edit = named(QLineEdit(), "From date",
                               "First day of the range, YYYY-MM-DD; empty means no lower bound")
        self.to_edit = named(QLineEdit(), "To date",
                             "Last day of the range, YYYY-MM-DD; empty means no upper bound")
        for edit, hint in ((self.from_edit, "YYYY-MM-DD (open)"), (self.to_edit, "YYYY-MM-DD (open)")):
            edit.setPlaceholderText(hint)
            edit.setValidator(QRegularExpressionValidator(pattern, edit))
            edit.editingFinished.connect(self._on_typed)

        self.calendar = named(QCalendarWidget(), "Date range calendar",
                              "Click the first day, then the last day of the range")
        self.calendar.setVerticalHeaderFormat(QCalendarWidget.VerticalHeaderFormat.NoVerticalHeader)
        self.calendar.setGridVisible(False)
        # cells the size of their text, whatever the window's size: a wide window gives the
        # calendar room around it, not day cells a hand wide
        natural = self.calendar.sizeHint()
        self.calendar.setFixedSize(natural.width() * 4 // 3, natural.height() * 3 // 2)
        self.calendar.clicked.connect(self._on_clicked)
        self.calendar.activated.connect(self._on_activated)
        self.calendar.currentPageChanged.connect(lambda _y, _m: self._paint_range())
        self._last_click = QElapsedTimer()

        self.message = named(QLabel(""), "Date range message")
        self.message.setWordWrap(True)

        fields = QFormLayout()
        preset_label = QLabel("&Preset")
        preset_label.setBuddy(self.preset)
        fields.addRow(preset_label, self.preset)
        row = QHBoxLayout()
        row.addWidget(self.from_edit)
        row.addWidget(QLabel("to"))
        row.addWidget(self.to_edit)
        from_label = QLabel("&From")
        from_label.setBuddy(self.from_edit)
        fields.addRow(from_label, row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(fields)
        layout.addWidget(self.calendar, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self.apply_preset("All dates")

    # --- public API -------------------------------------------------------------
    def range(self) -> DateRange:
        return DateRange(self._start, self._end)

    def set_range(self, rng: DateRange) -> None:
        self._start, self._end = rng.start, rng.end
        self._awaiting_end = False
        self.preset.setCurrentText(CUSTOM)
        self._changed()

    def apply_preset(self, name: str) -> None:
        rng = PRESETS[name](self._today())
        self._start, self._end = rng.start, rng.end
        self._awaiting_end = False
        self.preset.setCurrentText(name)
        self._changed()

    # --- events -----------------------------------------------------------------
    def _on_preset(self, index: int) -> None:
        name = self.preset.itemText(index)
        if name in PRESETS:
            self.apply_preset(name)

    def _on_activated(self, qdate: QDate) -> None:
        """Enter on a day acts as a click; the activation a double-click also sends is dropped."""
        recent = (self._last_click.isValid()
                  and self._last_click.elapsed() < QApplication.doubleClickInterval())
        if not recent:
            self._on_clicked(qdate, mouse=False)

    def _on_clicked(self, qdate: QDate, mouse: bool = True) -> None:
        if mouse:
            self._last_click.start()
        day = _pydate(qdate)
        if self._awaiting_end and self._start is not None:
            self._start, self._end = min(self._start, day), max(self._start, day)
            self._awaiting_end = False
            self.message.setText(f"Range {self.range()}.")
        else:
            self._start = self._end = day
            self._awaiting_end = True
            self.message.setText(f"From {day}: now click the last day (or keep a one-day range).")
        self.preset.setCurrentText(CUSTOM)
        self._changed(from_click=True)

    def _on_typed(self) -> None:
        try:
            rng = DateRange.parse(self.from_edit.text(), self.to_edit.text())
        except ConfigError as exc:
            self.message.setText(str(exc).replace("--from", "From").replace("--to", "To"))
            return
        if (rng.start, rng.end) == (self._start, self._end):
            return
        self._start, self._end = rng.start, rng.end
        self._awaiting_end = False
        self.preset.setCurrentText(CUSTOM)
        self._changed()

    def changeEvent(self, event: QEvent) -> None:
        """Re-derive the highlight when the system switches between light and dark palettes."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._paint_range()
        super().changeEvent(event)

    # --- drawing ----------------------------------------------------------------
    def _changed(self, from_click: bool = False) -> None:
        if not from_click:
            self.message.setText(f"Range {self.range()}." if self._start or self._end
                                 else "All dates: no range limit.")
            shown = self._end or self._start
            if shown is not None:
                self.calendar.setSelectedDate(_qdate(shown))
        self._show()
        self.rangeChanged.emit(self.range())

    def _show(self) -> None:
        for edit, day in ((self.from_edit, self._start), (self.to_edit, self._end)):
            text = day.isoformat() if day else ""
            if edit.text() != text:
                edit.setText(text)
        self._paint_range()

    def _paint_range(self) -> None:
        cal = self.calendar
        cal.setDateTextFormat(QDate(), QTextCharFormat())
        if self._start is None and self._end is None:
            return
        pal = cal.palette()
        span = QTextCharFormat()
        tint = pal.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Highlight)
        tint.setAlpha(70)
        span.setBackground(QBrush(tint))
        ends = QTextCharFormat()
        ends.setBackground(pal.brush(QPalette.ColorGroup.Active, QPalette.ColorRole.Highlight))
        ends.setForeground(pal.brush(QPalette.ColorGroup.Active, QPalette.ColorRole.HighlightedText))
        ends.setFontWeight(700)
        lo = self._start or _pydate(cal.minimumDate())
        hi = self._end or _pydate(cal.maximumDate())
        # Only the days the grid can show are painted; paging the calendar repaints.
        first = dt.date(cal.yearShown(), cal.monthShown(), 1) - dt.timedelta(days=14)
        last = first + dt.timedelta(days=14 + 31 + 14)
        day = max(lo, first)
        while day <= min(hi, last):
            cal.setDateTextFormat(_qdate(day), span)
            day += dt.timedelta(days=1)
        for end in (self._start, self._end):
            if end is not None:
                cal.setDateTextFormat(_qdate(end), ends)
