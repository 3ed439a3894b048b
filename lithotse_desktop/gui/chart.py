"""A line chart of a time-series derivative: one line per dimension value, gaps where suppressed.

A suppressed (or missing) cell must not look like zero, nor be bridged by a line that
suggests a value: each run of consecutive shown periods becomes its own line segment in the
series' colour, and only the first segment is named in the legend.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
from PySide6.QtCharts import QChart, QChartView, QDateTimeAxis, QLineSeries, QValueAxis
from PySide6.QtCore import QDate, QDateTime, QEvent, QMargins, Qt, QTime
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from ..derive.compile import PERIOD
from .arrowmodel import SUPPRESSED_FLAG
from .common import named

DEFAULT_SERIES = 8
# A qualitative palette readable on light and dark backgrounds; a line keeps its colour
# across its segments, so colours are assigned per line rather than by the chart theme.
LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")
AXIS_FORMATS = {"day": "yyyy-MM-dd", "week": "yyyy-MM-dd", "month": "MMM yy",
                "quarter": "MMM yy", "year": "yyyy", "none": "yyyy-MM-dd"}


@dataclass
class SeriesData:
    """One line: its label and its points in period order, ``None`` where a value is not shown."""

    label: str
    points: list[tuple[dt.date, float | None]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(v for _d, v in self.points if v is not None)

    def segments(self) -> list[list[tuple[dt.date, float]]]:
        """Runs of consecutive shown values; a ``None`` (or a period missing) breaks the line."""
        runs: list[list[tuple[dt.date, float]]] = []
        current: list[tuple[dt.date, float]] = []
        for day, value in self.points:
            if value is None:
                if current:
                    runs.append(current)
                current = []
            else:
                current.append((day, value))
        if current:
            runs.append(current)
        return runs


def is_time_series(table: pa.Table) -> bool:
    return PERIOD in table.column_names and pa.types.is_date(table.schema.field(PERIOD).type)


def measure_columns(table: pa.Table, dimensions: list[str]) -> list[str]:
    """Numeric columns that are neither the period nor a dimension: what can be plotted."""
    out = []
    for f in table.schema:
        if f.name in (PERIOD, SUPPRESSED_FLAG) or f.name in dimensions:
            continue
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type):
            out.append(f.name)
    return out


def series_from_table(table: pa.Table, measure: str, dimensions: list[str],
                      limit: int = DEFAULT_SERIES) -> tuple[list[SeriesData], int]:
    """Lines for the ``limit`` largest dimension combinations, and how many combinations exist.

    Every line has a point for every period of the table, ``None`` where the cell is
    suppressed, null or absent, so a missing month shows as a gap, not as a slope.
    """
    periods = sorted({p for p in table.column(PERIOD).to_pylist() if p is not None})
    values = table.column(measure).to_pylist()
    keys = list(zip(*(table.column(d).to_pylist() for d in dimensions), strict=True)) if dimensions \
        else [()] * table.num_rows
    flags = table.column(SUPPRESSED_FLAG).to_pylist() if SUPPRESSED_FLAG in table.column_names \
        else [False] * table.num_rows
    cells: dict[tuple, dict[dt.date, float | None]] = defaultdict(dict)
    for period, key, value, hidden in zip(table.column(PERIOD).to_pylist(), keys, values, flags, strict=True):
        if period is None:
            continue
        cells[key][period] = None if hidden or value is None else float(value)
    lines = []
    for key, by_period in cells.items():
        label = " / ".join("(none)" if v is None else str(v) for v in key) or measure
        lines.append(SeriesData(label, [(p, by_period.get(p)) for p in periods]))
    lines.sort(key=lambda s: (-s.total, s.label))
    return lines[:limit], len(lines)


def _midnight(day: dt.date) -> QDateTime:
    return QDateTime(QDate(day.year, day.month, day.day), QTime(0, 0))


def _msecs(day: dt.date) -> float:
    return float(_midnight(day).toMSecsSinceEpoch())


class TimeSeriesChart(QWidget):
    """Measure picker, series limit, and the chart; ``show_table`` draws a derivative's rows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table: pa.Table | None = None
        self.dimensions: list[str] = []
        self.grain = "month"
        self.lines: list[SeriesData] = []

        self.measure = named(QComboBox(), "Chart measure", "Which measure the lines show")
        self.measure.currentIndexChanged.connect(lambda _i: self.redraw())
        self.limit = named(QSpinBox(), "Most lines", "Show at most this many dimension values")
        self.limit.setRange(1, 50)
        self.limit.setValue(DEFAULT_SERIES)
        self.limit.valueChanged.connect(lambda _v: self.redraw())
        self.note = named(QLabel(""), "Chart note")
        self.note.setWordWrap(True)

        self.chart = QChart()
        self.chart.setMargins(QMargins(4, 4, 4, 4))
        self.chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        self.view = named(QChartView(self.chart), "Derivative chart",
                          "Lines per dimension value over time; gaps are suppressed cells")
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.view.setMinimumHeight(180)
        named(self.view.viewport(), "Derivative chart plot")

        bar = QHBoxLayout()
        label = QLabel("&Measure")
        label.setBuddy(self.measure)
        bar.addWidget(label)
        bar.addWidget(self.measure, 1)
        limit_label = QLabel("&Lines")
        limit_label.setBuddy(self.limit)
        bar.addWidget(limit_label)
        bar.addWidget(self.limit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.note)
        layout.addWidget(self.view, 1)
        self._apply_theme()
        self.clear("Select a derivative with a time grain to see it over time.")

    def clear(self, message: str) -> None:
        self.table = None
        self.lines = []
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.blockSignals(False)
        self.chart.removeAllSeries()
        for axis in self.chart.axes():
            self.chart.removeAxis(axis)
        self.chart.setTitle("")
        self.note.setText(message)

    def show_table(self, table: pa.Table, dimensions: list[str], grain: str, title: str = "") -> None:
        if not is_time_series(table):
            self.clear("This derivative has no time grain (no period column): see the Preview tab.")
            return
        measures = measure_columns(table, dimensions)
        if not measures:
            self.clear("This derivative has no numeric measure to plot.")
            return
        self.table, self.dimensions, self.grain = table, list(dimensions), grain
        keep = self.measure.currentText()
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.addItems(measures)
        if keep in measures:
            self.measure.setCurrentText(keep)
        self.measure.blockSignals(False)
        self.chart.setTitle(title)
        self.redraw()

    def redraw(self) -> None:
        if self.table is None or not self.measure.currentText():
            return
        measure = self.measure.currentText()
        self.lines, total = series_from_table(self.table, measure, self.dimensions, self.limit.value())
        chart = self.chart
        chart.removeAllSeries()
        for axis in chart.axes():
            chart.removeAxis(axis)
        x_axis = QDateTimeAxis()
        x_axis.setFormat(AXIS_FORMATS.get(self.grain, "yyyy-MM-dd"))
        x_axis.setTitleText(PERIOD)
        y_axis = QValueAxis()
        y_axis.setTitleText(measure)
        y_axis.setLabelFormat("%.4g")
        chart.addAxis(x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y_axis, Qt.AlignmentFlag.AlignLeft)
        days = [d for line in self.lines for d, _v in line.points]
        shown = [v for line in self.lines for _d, v in line.points if v is not None]
        gaps = sum(1 for line in self.lines for _d, v in line.points if v is None)
        for number, line in enumerate(self.lines):
            colour = QColor(LINE_COLOURS[number % len(LINE_COLOURS)])
            segments = line.segments()
            if not segments:
                empty = QLineSeries()
                empty.setName(f"{line.label} (all suppressed)")
                chart.addSeries(empty)
                empty.setColor(colour)
                empty.attachAxis(x_axis)
                empty.attachAxis(y_axis)
            for n, segment in enumerate(segments):
                series = QLineSeries()
                series.setName(line.label)
                series.setPointsVisible(True)
                for day, value in segment:
                    series.append(_msecs(day), value)
                chart.addSeries(series)
                series.attachAxis(x_axis)
                series.attachAxis(y_axis)
                series.setColor(colour)
                if n:
                    for marker in chart.legend().markers(series):
                        marker.setVisible(False)
        if days:
            lo, hi = min(days), max(days)
            if lo == hi:
                lo, hi = lo - dt.timedelta(days=15), hi + dt.timedelta(days=15)
            x_axis.setRange(_midnight(lo), _midnight(hi))
            x_axis.setTickCount(min(max(len({*days}), 2), max(2, self.view.width() // 110)))
        top = max(shown, default=1.0)
        low = min(min(shown, default=0.0), 0.0)
        y_axis.setRange(low, top * 1.08 if top > 0 else 1.0)
        y_axis.applyNiceNumbers()
        parts = [f"{len(self.lines)} of {total} line(s)" if total > len(self.lines)
                 else f"{total} line(s)"]
        if gaps:
            parts.append(f"{gaps} suppressed or empty cell(s) shown as gaps")
        self.note.setText("; ".join(parts) + ".")

    def series_names(self) -> list[str]:
        """Legend names, one per line (segments after a gap share their line's name)."""
        return [line.label for line in self.lines]

    # --- light/dark -----------------------------------------------------------------
    def _apply_theme(self) -> None:
        dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
        theme = QChart.ChartTheme.ChartThemeDark if dark else QChart.ChartTheme.ChartThemeLight
        if self.chart.theme() != theme:
            self.chart.setTheme(theme)
        self.chart.setBackgroundBrush(self.palette().brush(QPalette.ColorRole.Base))
        self.chart.setTitleBrush(self.palette().brush(QPalette.ColorRole.Text))
        self.chart.legend().setLabelColor(self.palette().color(QPalette.ColorRole.Text))

    @property
    def dark(self) -> bool:
        return self.chart.theme() == QChart.ChartTheme.ChartThemeDark

    def changeEvent(self, event: QEvent) -> None:
        """Follow the system switching between light and dark palettes."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_theme()
            self.redraw()
        super().changeEvent(event)
