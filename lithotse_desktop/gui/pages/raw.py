"""Raw data: every landing's manifest in a sortable table, with the full manifest beside it."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ...pathtext import display_paths
from ...raw.index import open_index
from ...raw.manifest import Manifest
from ...workspace import Workspace
from .. import jobs
from ..common import compact_table, error_text, fixed_font, named, show_error

COLUMNS: list[tuple[str, str]] = [
    ("Landed at", "landed_at"), ("Source", "source"), ("Stream", "stream"), ("Name", "original_name"),
    ("Records", "records"), ("In range", "records_in_range"),
    ("Out of range", "records_out_of_range"), ("Bytes", "bytes"), ("Date min", "date_min"),
    ("Date max", "date_max"), ("ID", "id"),
]
NUMERIC = {"records", "records_in_range", "records_out_of_range", "bytes"}


def load_landings(ws: Workspace) -> list[Manifest]:
    """Read the manifest index (refreshing it from the store) on a worker thread."""
    index = open_index(ws)
    try:
        return index.landings()
    finally:
        index.close()


class LandingsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Manifest] = []

    def set_rows(self, rows: list[Manifest]) -> None:
        self.beginResetModel()
        self.rows = list(reversed(rows))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        manifest = self.rows[index.row()]
        attr = COLUMNS[index.column()][1]
        value = getattr(manifest, attr)
        if role == Qt.ItemDataRole.DisplayRole:
            if attr in NUMERIC:
                return f"{value:,}"
            if attr == "landed_at" and value:
                return str(value).replace("T", " ")[:19]
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.UserRole:
            return value if value is not None else ""
        if role == Qt.ItemDataRole.TextAlignmentRole and attr in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and attr == "id" and manifest.already_stored:
            return "same bytes as an earlier landing: stored once"
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section][0]
        return None


class RawDataPage(QWidget):
    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.job: jobs.Job | None = None
        self._again = False

        self.model = LandingsModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.filter = named(QLineEdit(), "Filter landings", "Show only rows containing this text")
        self.filter.setPlaceholderText("Filter by source, stream, name…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.refresh_button = named(QPushButton("&Refresh"), "Refresh landings",
                                    "Re-read the manifests from the raw store")
        self.refresh_button.clicked.connect(self.refresh)
        self.count = named(QLabel(""), "Landing count")

        self.table = named(QTableView(), "Landings", "One row per landing; select one to see its manifest")
        self.table.setModel(self.proxy)
        compact_table(self.table)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._show_selected())

        self.manifest_view = named(QPlainTextEdit(), "Manifest JSON", "The selected landing's manifest")
        self.manifest_view.setReadOnly(True)
        self.manifest_view.setFont(fixed_font())
        self.manifest_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.manifest_view.setPlaceholderText("Select a landing to see its manifest.")

        bar = QHBoxLayout()
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.count)
        bar.addWidget(self.refresh_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(self.manifest_view)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([760, 360])
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)
        self.refresh()

    def set_workspace(self, ws: Workspace) -> None:
        self.ws = ws
        self.refresh()

    def refresh(self) -> None:
        """Load manifests off the GUI thread; a refresh asked for meanwhile runs right after."""
        if self.job is not None:
            self._again = True
            return
        self.count.setText("Loading…")
        self.job = jobs.Job(load_landings, self.ws, with_progress=False)
        self.job.signals.finished.connect(self._loaded)
        self.job.signals.failed.connect(self._failed)
        jobs.start(self.job)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def _done(self) -> None:
        self.job = None
        if self._again:
            self._again = False
            self.refresh()

    def _loaded(self, rows: list[Manifest]) -> None:
        selected = self.selected_manifest()
        self.model.set_rows(rows)
        self.table.resizeColumnsToContents()
        self.count.setText(f"{len(rows)} landing(s)")
        if selected is None or not self.select_landing(selected.id):
            if self.proxy.rowCount():
                self.table.selectRow(0)
        self._done()

    def _failed(self, exc: BaseException, trace: str) -> None:
        self.count.setText(f"Cannot read landings: {error_text(exc)}")
        show_error(self, "Cannot read landings", exc, trace)
        self._done()

    def select_landing(self, ident: str) -> bool:
        for row in range(self.proxy.rowCount()):
            source_row = self.proxy.mapToSource(self.proxy.index(row, 0)).row()
            if self.model.rows[source_row].id == ident:
                self.table.selectRow(row)
                return True
        return False

    def selected_manifest(self) -> Manifest | None:
        index = self.table.selectionModel().currentIndex()
        if not index.isValid():
            return None
        return self.model.rows[self.proxy.mapToSource(index).row()]

    def _show_selected(self) -> None:
        manifest = self.selected_manifest()
        if manifest is None:
            self.manifest_view.setPlainText("")
            return
        # what a person looks for first; the connector's incremental cursor goes last
        data = manifest.to_json()
        cursor = data.pop("cursor", None)
        shown = {**dict(sorted(data.items())), "cursor": cursor}
        self.manifest_view.setPlainText(json.dumps(display_paths(shown), indent=2, default=str))
