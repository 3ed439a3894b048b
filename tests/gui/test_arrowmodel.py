"""The preview model over a million-row Arrow table: rows arrive in chunks, far rows still work."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QTableView

from lithotse_desktop.gui.arrowmodel import CHUNK, ArrowTableModel, format_value

N = 1_000_000


def big_table() -> pa.Table:
    return pa.table({"id": pa.array(range(N), pa.int64()),
                     "day": pa.array([dt.date(2024, 1, 1)] * N, pa.date32()),
                     "x": pa.array([0.5] * N, pa.float64())})


def test_a_million_rows_are_fetched_lazily(qtbot):
    model = ArrowTableModel(big_table())
    assert model.rowCount() == CHUNK and model.total_rows == N
    assert model.canFetchMore(QModelIndex())
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    assert model.rowCount() < 10 * CHUNK, "showing the view does not pull every row in"
    before = model.rowCount()
    model.fetchMore(QModelIndex())
    assert model.rowCount() == before + CHUNK
    model.fetch_until(N - 1)
    assert model.rowCount() == N and not model.canFetchMore(QModelIndex())
    assert model.data(model.index(N - 1, 0)) == "999,999"
    assert model.data(model.index(N - 1, 1)) == "2024-01-01"
    assert model.data(model.index(N - 1, 2)) == "0.5"
    assert model.data(model.index(5, 0), Qt.ItemDataRole.TextAlignmentRole) == int(
        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    view.scrollToBottom()
    assert model.data(model.index(N, 0)) is None


def test_replacing_the_table_starts_small_again(qtbot):
    model = ArrowTableModel(big_table())
    model.fetch_until(50_000)
    model.set_table(pa.table({"a": [1, 2, 3]}))
    assert (model.rowCount(), model.columnCount(), model.canFetchMore(QModelIndex())) == (3, 1, False)


def test_suppressed_cells_read_as_such():
    model = ArrowTableModel(pa.table({"n": pa.array([None, 4], pa.int64()), "suppressed": [True, False]}))
    assert model.data(model.index(0, 0)) == "suppressed"
    assert "too few records" in model.data(model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    assert model.data(model.index(1, 0)) == "4"
    assert model.data(model.index(1, 0), Qt.ItemDataRole.ToolTipRole) is None


def test_values_are_formatted_for_reading():
    assert [format_value(v) for v in (None, True, 1234567, 2.5, 3.0, 1 / 3, dt.date(2024, 2, 1))] == [
        "", "yes", "1,234,567", "2.5", "3", "0.3333", "2024-02-01"]
