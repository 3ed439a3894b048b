"""A table model over an Arrow table that stays responsive on millions of rows.

Views only learn about rows in chunks (``canFetchMore``/``fetchMore``), so creating the
model and the first paint cost the same for ten rows or ten million. Cells are converted to
Python and formatted only when a view asks for them, one block of rows at a time; a few
recent blocks are kept so scrolling back and forth does not convert them again.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from typing import Any

import pyarrow as pa
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import QApplication

CHUNK = 1000
BLOCK = 256
KEPT_BLOCKS = 32
SUPPRESSED_FLAG = "suppressed"


def format_value(value: Any) -> str:
    """How one cell reads: dates as ISO, whole numbers with separators, floats to 4 places."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def _numeric(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)


class ArrowTableModel(QAbstractTableModel):
    """Read-only rows of ``table``; suppressed aggregate cells are shown as such, not as blanks."""

    def __init__(self, table: pa.Table | None = None, chunk: int = CHUNK, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.chunk = chunk
        self.table = table if table is not None else pa.table({})
        self._loaded = 0
        self._blocks: OrderedDict[int, list[list[Any]]] = OrderedDict()
        self._setup()

    def _setup(self) -> None:
        self._loaded = min(self.chunk, self.table.num_rows)
        self._blocks.clear()
        schema = self.table.schema
        self._numeric = [_numeric(f.type) for f in schema]
        self._flag = schema.get_field_index(SUPPRESSED_FLAG) if SUPPRESSED_FLAG in schema.names else -1

    def set_table(self, table: pa.Table) -> None:
        self.beginResetModel()
        self.table = table
        self._setup()
        self.endResetModel()

    # --- lazy rows ----------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._loaded

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self.table.num_columns

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:
        return not parent.isValid() and self._loaded < self.table.num_rows

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> None:
        if parent.isValid():
            return
        more = min(self.chunk, self.table.num_rows - self._loaded)
        if more <= 0:
            return
        self.beginInsertRows(QModelIndex(), self._loaded, self._loaded + more - 1)
        self._loaded += more
        self.endInsertRows()

    def fetch_until(self, row: int) -> None:
        """Make ``row`` reachable (e.g. to jump to the end), fetching whole chunks."""
        while self._loaded <= row and self.canFetchMore():
            self.fetchMore()

    @property
    def total_rows(self) -> int:
        return self.table.num_rows

    # --- cells --------------------------------------------------------------------
    def _block(self, number: int) -> list[list[Any]]:
        block = self._blocks.get(number)
        if block is not None:
            self._blocks.move_to_end(number)
            return block
        part = self.table.slice(number * BLOCK, BLOCK)
        block = [part.column(i).to_pylist() for i in range(part.num_columns)]
        self._blocks[number] = block
        if len(self._blocks) > KEPT_BLOCKS:
            self._blocks.popitem(last=False)
        return block

    def value(self, row: int, column: int) -> Any:
        return self._block(row // BLOCK)[column][row % BLOCK]

    def _suppressed(self, row: int) -> bool:
        return self._flag >= 0 and bool(self.value(row, self._flag))

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= self._loaded:
            return None
        row, col = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            value = self.value(row, col)
            if value is None and col != self._flag and self._suppressed(row):
                return "suppressed"
            return format_value(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and self._numeric[col]:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role in (Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.FontRole,
                    Qt.ItemDataRole.ToolTipRole):
            if self.value(row, col) is not None or col == self._flag or not self._suppressed(row):
                return None
            if role == Qt.ItemDataRole.ToolTipRole:
                return "Suppressed: too few records behind this cell to show it"
            if role == Qt.ItemDataRole.FontRole:
                font = QFont()
                font.setItalic(True)
                return font
            return QApplication.palette().brush(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.table.schema.names[section] if section < self.table.num_columns else None
        return str(section + 1)
