"""The chart of a time-series derivative: lines, bars or a table, with suppressed periods shaded.

Library: Qt Charts (PySide6-Addons), chosen over pyqtgraph and matplotlib's Qt backend on merit.
It is already shipped with the app, so it adds nothing to install or bundle (pyqtgraph brings
numpy; matplotlib brings numpy, Pillow, fontTools and more, tens of megabytes in the frozen app).
It exports SVG faithfully through QtSvg's QSvgGenerator, which paints the same scene the screen
shows (pyqtgraph 0.14's SVG exporter, tried with PySide6 6.12, fails while rewriting Qt's SVG
output); it reports hovered points as signals for tooltips; and it takes the Qt palette
directly, so light and dark follow the app without a second styling system. Its weakness,
a date axis that puts ticks at even intervals rather than on month or year boundaries, is
side-stepped: ticks and labels come from :mod:`.timeaxis` (pure Python, tested on its own) and
are placed with a QCategoryAxis, labels on the tick values.

What a person sees: a value at its period's first day, ticks on period boundaries, the range
trimmed to the data, every line in its own colour (a line is split into segments where cells are
missing, never bridged), suppressed periods shaded with a legend entry, an exact-value tooltip
on hover, and Export to PNG or SVG. Each draw builds a new QChart and deletes the old one, so
nothing of a previous derivative stays on screen.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from PySide6.QtCharts import (
    QAreaSeries,
    QCategoryAxis,
    QChart,
    QChartView,
    QLegend,
    QLineSeries,
    QValueAxis,
    QXYSeries,
)
from PySide6.QtCore import QCoreApplication, QEvent, QMargins, QPointF, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QCursor, QFont, QImage, QPainter, QPalette, QPen
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from ..derive.compile import PERIOD
from ..derive.disclosure import Restricted
from ..errors import LithotseError
from .arrowmodel import SUPPRESSED_FLAG, format_value
from .common import compact_table, fit_columns, named, show_error
from .timeaxis import TimeAxis, period_end, period_label, position, time_axis, value_range

DEFAULT_SERIES = 8
# A qualitative palette (matplotlib's tab10); a line keeps its colour across its segments, so
# colours are assigned per line rather than by the chart theme. On dark backgrounds each is lightened.
LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")
MODES = ("line", "bar", "table")
ZERO_WIDTH = "\u200b"  # QCategoryAxis needs unique labels: repeated texts get invisible suffixes


@dataclass
class SeriesData:
    """One line: its label, its points in period order (``None`` where no value is shown) and
    the periods whose cell is suppressed (a subset of the ``None`` ones)."""

    label: str
    points: list[tuple[dt.date, float | None]] = field(default_factory=list)
    suppressed: set[dt.date] = field(default_factory=set)

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

    def value_at(self, day: dt.date) -> float | None:
        return next((v for d, v in self.points if d == day), None)


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
    hidden: dict[tuple, set[dt.date]] = defaultdict(set)
    for period, key, value, flag in zip(table.column(PERIOD).to_pylist(), keys, values, flags, strict=True):
        if period is None:
            continue
        cells[key][period] = None if flag or value is None else float(value)
        if flag:
            hidden[key].add(period)
    lines = []
    for key, by_period in cells.items():
        label = " / ".join("(none)" if v is None else str(v) for v in key) or measure
        lines.append(SeriesData(label, [(p, by_period.get(p)) for p in periods], hidden[key]))
    lines.sort(key=lambda s: (-s.total, s.label))
    return lines[:limit], len(lines)


def readable(name: str) -> str:
    """A column or derivative name as words: ``mean_stay_days`` → "mean stay days"."""
    return name.replace("_", " ").strip()


class TimeSeriesChart(QWidget):
    """Measure picker, series limit, Line / Bars / Table, Export; ``show_table`` draws a derivative."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table: pa.Table | None = None
        self.dimensions: list[str] = []
        self.grain = "month"
        self.title = ""
        self.exported: Callable[[Path], None] | None = None
        self.threshold: int | None = None
        self.lines: list[SeriesData] = []
        self.axis: TimeAxis | None = None
        self.x_axis: QCategoryAxis | None = None
        self.y_axis: QValueAxis | None = None
        self.mode = "line"
        self.last_tooltip = ""
        self._known_width = 0.0
        self._over_line = False

        self.measure = named(QComboBox(), "Chart measure", "Which measure the chart shows")
        self.measure.currentIndexChanged.connect(lambda _i: self.redraw())
        self.limit = named(QSpinBox(), "Most lines", "Show at most this many dimension values")
        self.limit.setRange(1, 50)
        self.limit.setValue(DEFAULT_SERIES)
        self.limit.valueChanged.connect(lambda _v: self.redraw())
        self.mode_buttons = QButtonGroup(self)
        self.mode_buttons.setExclusive(True)
        self.buttons: dict[str, QPushButton] = {}
        for mode, text, tip in (("line", "Li&ne", "Lines over time"), ("bar", "&Bars", "Bars per period"),
                                ("table", "&Table", "The values as a table: periods down, lines across")):
            button = named(QPushButton(text), f"Show as {mode}", tip)
            button.setCheckable(True)
            button.clicked.connect(lambda _c=False, m=mode: self.set_mode(m))
            self.mode_buttons.addButton(button)
            self.buttons[mode] = button
        self.buttons["line"].setChecked(True)
        self.export_button = named(QPushButton("E&xport chart…"), "Export chart",
                                   "Save the chart as a PNG picture or an SVG drawing")
        self.export_button.clicked.connect(self.choose_export)
        self.note = named(QLabel(""), "Chart note")
        self.note.setWordWrap(True)

        self.view = named(QChartView(QChart()), "Derivative chart",
                          "Values over time; hover a point for its exact value")
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.view.setMinimumHeight(180)
        named(self.view.viewport(), "Derivative chart plot")
        self.grid = named(QTableWidget(), "Chart values", "The chart's values: periods down, lines across")
        compact_table(self.grid)
        self.grid.setSelectionMode(QTableWidget.SelectionMode.ContiguousSelection)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.grid)

        bar = QHBoxLayout()
        label = QLabel("&Measure")
        label.setBuddy(self.measure)
        bar.addWidget(label)
        bar.addWidget(self.measure, 1)
        limit_label = QLabel("&Lines")
        limit_label.setBuddy(self.limit)
        bar.addWidget(limit_label)
        bar.addWidget(self.limit)
        views = QHBoxLayout()
        for button in self.buttons.values():
            views.addWidget(button)
        views.addStretch(1)
        views.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addLayout(views)
        layout.addWidget(self.note)
        layout.addWidget(self.stack, 1)
        self.clear("Select a derivative with a time grain to see it over time.")

    @property
    def chart(self) -> QChart:
        return self.view.chart()

    # --- what to show ---------------------------------------------------------------------
    def clear(self, message: str) -> None:
        self.table = None
        self.lines = []
        self.axis = self.x_axis = self.y_axis = None
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.blockSignals(False)
        self._replace_chart()
        self.grid.clear()
        self.grid.setRowCount(0)
        self.grid.setColumnCount(0)
        self.note.setText(message)
        self.export_button.setEnabled(False)

    def show_table(self, table: pa.Table, dimensions: list[str], grain: str, title: str = "",
                   threshold: int | None = None, exported: Callable[[Path], None] | None = None) -> None:
        """Draw ``table``; ``exported`` (called with each file the chart is exported to) is given
        for a derivative that may leave the app, and without it the chart cannot be exported:
        row-level data stays restricted, drawn or not."""
        self.exported = exported
        if not is_time_series(table):
            self.clear("This derivative has no time grain, so there is nothing to draw over time: "
                       "see its rows on the Preview tab.")
            return
        measures = measure_columns(table, dimensions)
        if not measures:
            self.clear("This derivative has no numeric measure to draw.")
            return
        self.table, self.dimensions, self.grain = table, list(dimensions), grain or "month"
        self.title, self.threshold = title, threshold
        keep = self.measure.currentText()
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.addItems(measures)
        if keep in measures:
            self.measure.setCurrentText(keep)
        self.measure.blockSignals(False)
        self.redraw()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"chart mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        self.buttons[mode].setChecked(True)
        self.redraw()

    # --- drawing ----------------------------------------------------------------------------
    def _replace_chart(self) -> QChart:
        """A fresh chart in the view; the previous one (its series, axes, legend) is deleted."""
        old = self.view.chart()
        chart = QChart()
        chart.setMargins(QMargins(4, 4, 4, 4))
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.legend().setMarkerShape(QLegend.MarkerShape.MarkerShapeFromSeries)
        self._theme(chart)
        self.view.setChart(chart)
        if old is not None:
            old.deleteLater()
        return chart

    def redraw(self) -> None:
        if self.table is None or not self.measure.currentText():
            return
        measure = self.measure.currentText()
        self.lines, total = series_from_table(self.table, measure, self.dimensions, self.limit.value())
        periods = sorted({d for line in self.lines for d, _v in line.points})
        hidden = sorted({d for line in self.lines for d in line.suppressed})
        absent = sum(1 for line in self.lines for d, v in line.points if v is None and d not in line.suppressed)
        parts = [f"{len(self.lines)} of {total} lines (the largest)" if total > len(self.lines)
                 else ("1 line" if total == 1 else f"{total} lines")]
        if hidden:
            parts.append(f"{len(hidden)} period(s) with suppressed cells, shaded")
        if absent:
            parts.append(f"{absent} cell(s) without records left as gaps")
        self.note.setText("; ".join(parts) + ".")
        self.export_button.setEnabled(bool(periods) and self.mode != "table" and self.exported is not None)
        self.export_button.setToolTip("Save the chart as a PNG picture or an SVG drawing" if self.exported else
                                      "Row-level data stays restricted: its chart is not exported")
        self._fill_grid(periods, measure)
        if self.mode == "table":
            self.stack.setCurrentWidget(self.grid)
            return
        self.stack.setCurrentWidget(self.view)
        chart = self._replace_chart()
        if not periods:
            return
        chart.plotAreaChanged.connect(self._plot_area_changed)
        chart.setTitle(f"{readable(self.title)}: {readable(measure)} per {self.grain}" if self.title
                       else readable(measure))
        self.axis = time_axis(periods, self.grain, self._plot_width(), self.fontMetrics().horizontalAdvance)
        x_axis, y_axis = self._axes(chart, measure)
        if hidden:
            self._shade(chart, x_axis, y_axis, hidden)
        if self.mode == "bar":
            self._bars(chart, x_axis, y_axis)
        else:
            self._lines(chart, x_axis, y_axis)
        self._place_legend(chart)

    def _place_legend(self, chart: QChart) -> None:
        """Below the plot while every name fits on one row, else on the right, one name a line."""
        metrics = self.fontMetrics()
        names = [line.label for line in self.lines] + (["Suppressed (fewer than 100 records)"]
                                                       if any(line.suppressed for line in self.lines) else [])
        needed = sum(metrics.horizontalAdvance(name) + 40 for name in names)
        side = Qt.AlignmentFlag.AlignBottom if needed <= self.view.width() - 40 else Qt.AlignmentFlag.AlignRight
        chart.legend().setAlignment(side)

    def _plot_width(self) -> float:
        """The plot area's width as last laid out; before any layout, the view's less a y axis."""
        return max(120.0, self._known_width or self.view.width() - 110.0)

    def _plot_area_changed(self, area: QRectF) -> None:
        """Redraw when the laid-out plot is wider or narrower than the ticks were chosen for."""
        if area.width() < 50:
            return
        self._known_width = area.width()
        if self.axis is None or self.table is None:
            return
        wanted = time_axis([self.axis.first, self.axis.last], self.grain, area.width(),
                           self.fontMetrics().horizontalAdvance)
        if wanted.step != self.axis.step:
            QTimer.singleShot(0, self.redraw)

    def _axes(self, chart: QChart, measure: str) -> tuple[QCategoryAxis, QValueAxis]:
        assert self.axis is not None
        x_axis = QCategoryAxis()
        x_axis.setLabelsPosition(QCategoryAxis.AxisLabelsPosition.AxisLabelsPositionOnValue)
        seen: dict[str, int] = defaultdict(int)
        for tick in self.axis.ticks:
            x_axis.append(tick.text + ZERO_WIDTH * seen[tick.text], tick.x)
            seen[tick.text] += 1
        x_axis.setStartValue(self.axis.low)
        x_axis.setRange(self.axis.low, self.axis.high)
        shown = [v for line in self.lines for _d, v in line.points if v is not None]
        low, high, step = value_range(min(shown, default=0.0), max(shown, default=1.0))
        y_axis = QValueAxis()
        y_axis.setRange(low, high)
        y_axis.setTickCount(int(round((high - low) / step)) + 1)
        y_axis.setLabelFormat("%.0f" if step >= 1 else "%.2f" if step >= 0.01 else "%g")
        y_axis.setTitleText(readable(measure))
        for axis in (x_axis, y_axis):
            self._style_axis(axis)
        chart.addAxis(x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y_axis, Qt.AlignmentFlag.AlignLeft)
        self.x_axis, self.y_axis = x_axis, y_axis
        return x_axis, y_axis

    def _colour(self, number: int) -> QColor:
        colour = QColor(LINE_COLOURS[number % len(LINE_COLOURS)])
        return colour.lighter(135) if self.dark else colour

    def _attach(self, chart: QChart, series: QXYSeries | QAreaSeries, x_axis: QCategoryAxis,
                y_axis: QValueAxis) -> None:
        chart.addSeries(series)
        series.attachAxis(x_axis)
        series.attachAxis(y_axis)

    def _lines(self, chart: QChart, x_axis: QCategoryAxis, y_axis: QValueAxis) -> None:
        for number, line in enumerate(self.lines):
            colour = self._colour(number)
            segments = line.segments() or [[]]
            for n, segment in enumerate(segments):
                series = QLineSeries()
                series.setName(line.label if segment else f"{line.label} (all suppressed)")
                for day, value in segment:
                    series.append(position(day), value)
                series.setPointsVisible(True)
                series.setMarkerSize(3.5)
                pen = QPen(colour, 2.0)
                series.setPen(pen)
                series.setColor(colour)
                series.hovered.connect(lambda point, state, label=line.label: self._hovered(label, point, state))
                self._attach(chart, series, x_axis, y_axis)
                if n:
                    for marker in chart.legend().markers(series):
                        marker.setVisible(False)

    def _bars(self, chart: QChart, x_axis: QCategoryAxis, y_axis: QValueAxis) -> None:
        """Grouped bars: each period's span holds one bar per line, side by side, from zero."""
        count = max(len(self.lines), 1)
        for number, line in enumerate(self.lines):
            upper = QLineSeries()
            for day, value in line.points:
                if value is None:
                    continue
                lo, width = self._bar_slot(day, number, count)
                for x, y in ((lo, 0.0), (lo, value), (lo + width, value), (lo + width, 0.0)):
                    upper.append(x, y)
            area = QAreaSeries(upper)
            upper.setParent(area)
            area.setName(line.label)
            colour = self._colour(number)
            area.setColor(colour)
            area.setBorderColor(colour.darker(120))
            area.hovered.connect(lambda point, state, label=line.label: self._hovered(label, point, state))
            self._attach(chart, area, x_axis, y_axis)

    def _bar_slot(self, day: dt.date, number: int, count: int) -> tuple[float, float]:
        """The left x and width of line ``number``'s bar in the period starting ``day``."""
        start, end = position(day), position(period_end(day, self.grain))
        span = (end - start) * 0.8
        width = span / count
        return start - span / 2 + number * width, width

    def _shade(self, chart: QChart, x_axis: QCategoryAxis, y_axis: QValueAxis, hidden: list[dt.date]) -> None:
        """A grey band over each period with a suppressed cell, named once in the legend."""
        top = y_axis.max()
        upper = QLineSeries()
        for day in hidden:
            start, end = position(day), position(period_end(day, self.grain))
            half = (end - start) / 2
            for x, y in ((start - half, 0.0), (start - half, top), (start + half, top), (start + half, 0.0)):
                upper.append(x, y)
        band = QAreaSeries(upper)
        upper.setParent(band)
        k = f"fewer than {self.threshold}" if self.threshold else "too few"
        band.setName(f"Suppressed ({k} records)")
        tint = self.palette().color(QPalette.ColorRole.Text)
        tint.setAlpha(45)
        band.setBrush(QBrush(tint))
        band.setPen(QPen(Qt.PenStyle.NoPen))
        band.hovered.connect(lambda point, state: self._hovered("", point, state))
        self._attach(chart, band, x_axis, y_axis)
        edge = self.palette().color(QPalette.ColorRole.Text)
        edge.setAlpha(140)
        for marker in chart.legend().markers(band):
            marker.setPen(QPen(edge, 1.0))

    # --- hover ------------------------------------------------------------------------------
    def period_at(self, x: float) -> dt.date | None:
        """The period whose value is drawn nearest to ``x`` (a day number)."""
        days = sorted({d for line in self.lines for d, _v in line.points})
        if not days:
            return None
        return min(days, key=lambda d: abs(position(d) - x))

    def tooltip_text(self, label: str, x: float) -> str:
        """What hovering near ``x`` on line ``label`` (or on the shading, label "") tells."""
        day = self.period_at(x)
        if day is None:
            return ""
        when = period_label(day, self.grain)
        measure = readable(self.measure.currentText())
        if not label:
            names = [line.label for line in self.lines if day in line.suppressed]
            k = f"fewer than {self.threshold}" if self.threshold else "too few"
            return f"{when}: suppressed for {', '.join(names) or 'some cells'} ({k} records)"
        line = next((s for s in self.lines if s.label == label), None)
        if line is None:
            return ""
        if day in line.suppressed:
            return f"{label}\n{when}: suppressed"
        value = line.value_at(day)
        shown = "no records" if value is None else format_value(int(value) if value.is_integer() else value)
        return f"{label}\n{when}: {shown} {measure}" if value is not None else f"{label}\n{when}: {shown}"

    def _hovered(self, label: str, point: QPointF, state: bool) -> None:
        """A line's (or bar's) tooltip wins over the shading's where both are under the mouse."""
        if label:
            self._over_line = state
        if not state:
            if not self._over_line:
                QToolTip.hideText()
            return
        if not label and self._over_line:
            return
        self.last_tooltip = self.tooltip_text(label, point.x())
        QToolTip.showText(QCursor.pos(), self.last_tooltip, self.view)

    def point_position(self, day: dt.date, value: float) -> QPointF:
        """Where a value is drawn, in the view's viewport coordinates (for tests acting as a mouse)."""
        series = next(s for s in self.chart.series() if isinstance(s, QLineSeries))
        inside = self.chart.mapToPosition(QPointF(position(day), value), series)
        return QPointF(self.view.mapFromScene(self.chart.mapToScene(inside)))

    # --- the table view ---------------------------------------------------------------------
    def _fill_grid(self, periods: list[dt.date], measure: str) -> None:
        self.grid.clear()
        self.grid.setRowCount(len(periods))
        self.grid.setColumnCount(len(self.lines) + 1)
        self.grid.setHorizontalHeaderLabels([self.grain.capitalize(), *(line.label for line in self.lines)])
        italic = QFont(self.grid.font())
        italic.setItalic(True)
        faint = self.palette().brush(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        for r, day in enumerate(periods):
            self.grid.setItem(r, 0, QTableWidgetItem(period_label(day, self.grain)))
            for c, line in enumerate(self.lines, 1):
                value = line.value_at(day)
                if day in line.suppressed:
                    item = QTableWidgetItem("suppressed")
                    item.setFont(italic)
                    item.setForeground(faint)
                    item.setToolTip("Too few records behind this cell to show it")
                else:
                    item = QTableWidgetItem("" if value is None else
                                            format_value(int(value) if value.is_integer() else value))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.grid.setItem(r, c, item)
        fit_columns(self.grid)

    # --- export ------------------------------------------------------------------------------
    def choose_export(self) -> None:
        name = (self.title or "chart").replace(" ", "_")
        path, chosen = QFileDialog.getSaveFileName(self, "Export chart", f"{name}.png",
                                                   "PNG picture (*.png);;SVG drawing (*.svg)")
        if not path:
            return
        if not Path(path).suffix:
            path += ".svg" if "svg" in chosen.lower() else ".png"
        try:
            self.export(Path(path))
        except (OSError, LithotseError) as exc:
            show_error(self, "Cannot export the chart", exc)
            return
        self.note.setText(f"Chart saved as {Path(path).name}.")

    def export(self, path: Path) -> Path:
        """Write the chart as shown (same size, title, legend) to ``.png`` (at twice the screen's
        resolution) or ``.svg``, and record the export."""
        path = Path(path)
        if self.exported is None:
            raise Restricted(f"{readable(self.title) or 'this derivative'}: its chart is not exported, as its "
                             "rows are not published")
        QCoreApplication.sendPostedEvents()  # a chart drawn a moment ago is laid out before it is painted
        size = self.view.viewport().size()
        if path.suffix.lower() == ".svg":
            generator = QSvgGenerator()
            generator.setFileName(str(path))
            generator.setSize(size)
            generator.setViewBox(QRectF(0, 0, size.width(), size.height()))
            generator.setTitle(readable(self.title) or "Lithotse chart")
            generator.setDescription(self.note.text())
            painter = QPainter(generator)
            self.view.render(painter, QRectF(0, 0, size.width(), size.height()))
            painter.end()
        else:
            image = QImage(size * 2, QImage.Format.Format_ARGB32)
            image.setDevicePixelRatio(2.0)
            image.fill(self.chart.backgroundBrush().color())
            painter = QPainter(image)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self.view.render(painter, QRectF(0, 0, size.width(), size.height()))
            painter.end()
            if not image.save(str(path)):
                raise OSError(f"{path}: could not be written")
        if not path.exists():
            raise OSError(f"{path}: could not be written")
        self.exported(path)
        return path

    # --- light/dark -------------------------------------------------------------------------
    @property
    def dark(self) -> bool:
        return self.palette().color(QPalette.ColorRole.Window).lightness() < 128

    def _theme(self, chart: QChart) -> None:
        pal = self.palette()
        chart.setTheme(QChart.ChartTheme.ChartThemeDark if self.dark else QChart.ChartTheme.ChartThemeLight)
        chart.setBackgroundBrush(pal.brush(QPalette.ColorRole.Base))
        chart.setBackgroundRoundness(0)
        chart.setTitleBrush(pal.brush(QPalette.ColorRole.Text))
        title = QFont(self.font())
        title.setBold(True)
        chart.setTitleFont(title)
        chart.legend().setLabelColor(pal.color(QPalette.ColorRole.Text))
        chart.legend().setFont(self.font())

    def _style_axis(self, axis: QCategoryAxis | QValueAxis) -> None:
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.Text)
        grid = QColor(text)
        grid.setAlpha(40)
        axis.setLabelsColor(text)
        axis.setLabelsFont(self.font())
        axis.setTitleBrush(QBrush(text))
        axis.setGridLineColor(grid)
        axis.setLinePenColor(grid)

    def changeEvent(self, event: QEvent) -> None:
        """Follow the app switching between light and dark palettes."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            if self.table is not None:
                self.redraw()
            else:
                self._replace_chart()
        super().changeEvent(event)

    def series_names(self) -> list[str]:
        """Legend names, one per line (segments after a gap share their line's name)."""
        return [line.label for line in self.lines]

    def sizeHint(self) -> QSize:
        return QSize(640, 420)

