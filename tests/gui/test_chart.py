"""The Derivatives page's chart as a person uses it: switch derivatives, hover a point, switch to
bars and table, export PNG and SVG; the axis is the one the time-axis rules compute."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
import shiboken6
from PySide6.QtCharts import QAreaSeries, QCategoryAxis, QLineSeries
from PySide6.QtCore import QCoreApplication, QEvent, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog

from lithotse_desktop import audit
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.disclosure import Restricted
from lithotse_desktop.derive.service import add_spec
from tests.gui.helpers import VISITS_SPEC, demo_workspace

QUARTERLY = {**VISITS_SPEC, "name": "visits_by_quarter", "grain": "quarter", "group_by": [],
             "measures": [{"fn": "count", "as": "visits"}]}


@pytest.fixture
def chart_page(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in")
    add_spec(workspace, QUARTERLY)
    build(workspace, "visits_by_quarter")
    page = window.show_page("derivatives")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(page.rows) == 2 and page.shown is not None and page.shown.table is not None,
                    timeout=10000)
    qtbot.mouseClick(page.tabs.tabBar(), Qt.MouseButton.LeftButton, pos=page.tabs.tabBar().tabRect(0).center())
    return page


def click_row(qtbot, page, name: str) -> None:
    row = [r.name for r in page.rows].index(name)
    rect = page.table.visualItemRect(page.table.item(row, 0))
    qtbot.mouseClick(page.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: page.shown is not None and page.shown.name == name and page.chart.table is not None,
                    timeout=10000)


def axis_ticks(chart) -> list[tuple[str, float]]:
    [x_axis] = [a for a in chart.chart.axes() if isinstance(a, QCategoryAxis)]
    return [(label.replace("\u200b", ""), x_axis.endValue(label)) for label in x_axis.categoriesLabels()]


def test_switching_derivatives_leaves_nothing_of_the_previous_chart(qtbot, chart_page):
    page = chart_page
    click_row(qtbot, page, "visits_by_grp")
    monthly = page.chart.chart
    assert page.chart.series_names() == ["a", "b", "c", "d"]
    assert [(t, dt.date(1970, 1, 1) + dt.timedelta(days=x)) for t, x in axis_ticks(page.chart)] == [
        (page.chart.axis.ticks[i].text, page.chart.axis.ticks[i].day) for i in range(len(page.chart.axis.ticks))]
    assert axis_ticks(page.chart)[0][0] == "Jan 2024", "monthly data over six months: a tick a month"

    click_row(qtbot, page, "visits_by_quarter")
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not shiboken6.isValid(monthly), "the previous chart is deleted, not hidden"
    names = {s.name() for s in page.chart.chart.series()}
    assert names == {"visits"}, "only the new derivative's series"
    assert [t for t, _x in axis_ticks(page.chart)] == ["Q1 2024", "Q2"]
    assert page.chart.chart.title() == "visits by quarter: visits per quarter"


def test_suppressed_periods_are_shaded_with_a_legend_entry_and_hover_tells_the_exact_value(qtbot, chart_page):
    page = chart_page
    click_row(qtbot, page, "visits_by_grp")
    chart = page.chart
    bands = [s for s in chart.chart.series() if isinstance(s, QAreaSeries)]
    assert [b.name() for b in bands] == ["Suppressed (fewer than 11 records)"]
    legend = [m.label() for m in chart.chart.legend().markers() if m.isVisible()]
    assert "Suppressed (fewer than 11 records)" in legend and legend.count("a") == 1
    shaded = bands[0].upperSeries().points()
    assert len(shaded) == 4 * 6, "one band per month, each month has suppressed groups"

    chart.measure.setCurrentText("total")
    qtbot.waitUntil(lambda: bool(chart.chart.series()), timeout=3000)
    line = chart.lines[0]
    day, value = line.points[1]
    assert (line.label, day, value) == ("a", dt.date(2024, 2, 1), 406.0)
    qtbot.wait(100)  # the new chart is laid out (and re-ticked for its real width)
    where = chart.point_position(day, value).toPoint()
    qtbot.mouseMove(chart.view.viewport(), where)
    qtbot.waitUntil(lambda: chart.last_tooltip[:2] in ("a\n", "b\n"), timeout=3000)
    # groups a and b hold the same values: the mouse is over both lines' point
    assert chart.last_tooltip in ("a\nFeb 2024: 406 total", "b\nFeb 2024: 406 total")
    feb = dt.date(2024, 2, 1).toordinal() - dt.date(1970, 1, 1).toordinal()
    assert chart.tooltip_text("a", feb + 3) == "a\nFeb 2024: 406 total"
    assert chart.tooltip_text("c", feb) == "c\nFeb 2024: suppressed"
    assert chart.tooltip_text("", feb) == "Feb 2024: suppressed for c, d (fewer than 11 records)"


def test_bars_table_and_export_as_png_and_svg(qtbot, chart_page, tmp_path, monkeypatch):
    page = chart_page
    click_row(qtbot, page, "visits_by_grp")
    chart = page.chart
    qtbot.mouseClick(chart.buttons["bar"], Qt.MouseButton.LeftButton)
    bars = [s for s in chart.chart.series() if isinstance(s, QAreaSeries) and not s.name().startswith("Supp")]
    assert [b.name() for b in bars] == ["a", "b", "c", "d"]
    assert not [s for s in chart.chart.series() if isinstance(s, QLineSeries)]
    assert len(bars[0].upperSeries().points()) == 4 * 6, "a bar (four corners) per month"

    qtbot.mouseClick(chart.buttons["table"], Qt.MouseButton.LeftButton)
    assert chart.stack.currentWidget() is chart.grid
    grid = chart.grid
    headers = [grid.horizontalHeaderItem(c).text() for c in range(grid.columnCount())]
    assert headers == ["Month", "a", "b", "c", "d"]
    assert [grid.item(0, c).text() for c in range(5)] == ["Jan 2024", "28", "28", "suppressed", "suppressed"]
    assert not chart.export_button.isEnabled(), "a table is exported from the Spreadsheets page"

    qtbot.mouseClick(chart.buttons["line"], Qt.MouseButton.LeftButton)
    for suffix in ("png", "svg"):
        target = tmp_path / f"chart.{suffix}"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, t=target, **k: (str(t), ""))
        qtbot.mouseClick(chart.export_button, Qt.MouseButton.LeftButton)
        assert target.exists() and target.stat().st_size > 1000
    image = QImage(str(tmp_path / "chart.png"))
    viewport = chart.view.viewport().size()
    assert (image.width(), image.height()) == (2 * viewport.width(), 2 * viewport.height())
    svg = ET.parse(tmp_path / "chart.svg").getroot()
    texts = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    assert "Jan 2024" in texts and "visits by grp" in texts
    assert "Chart saved as chart.svg." in chart.note.text()
    exports = [e["details"] for e in audit.entries(page.ws, action="export")]
    assert [(e["derivative"], e["format"], e["what"]) for e in exports] == [
        ("visits_by_grp", "png", "chart"), ("visits_by_grp", "svg", "chart")], "every export is audited"


def test_the_chart_of_row_level_rows_is_not_exported(qtbot, chart_page, tmp_path, monkeypatch):
    """Pass 38: "Export chart…" wrote a row-level sql's chart (a line per patient id, named in the
    legend and as text in the SVG) to a file, with no refusal and no audit record."""
    page = chart_page
    add_spec(page.ws, {"name": "per_group", "kind": "sql", "inputs": {"v": {"source": "clinic", "stream": "values"}},
                       "sql": "SELECT CAST(date_trunc('month', day) AS DATE) AS period, grp, value FROM v"})
    build(page.ws, "per_group")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "per_group" in [r.name for r in page.rows], timeout=10000)
    click_row(qtbot, page, "per_group")
    chart = page.chart
    assert chart.series_names(), "the analyst still sees the rows drawn"
    assert not chart.export_button.isEnabled()
    assert "not exported" in chart.export_button.toolTip()
    with pytest.raises(Restricted, match="not exported"):
        chart.export(tmp_path / "rows.svg")
    assert not (tmp_path / "rows.svg").exists()
    assert audit.entries(page.ws, action="export") == []
