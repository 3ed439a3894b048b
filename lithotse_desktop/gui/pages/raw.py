"""Raw data: every import of every file in a sortable table, and the selected one as a property sheet.

The sheet says in plain words what a landing is — source, stream, file (relative to the source's
folder), records and how many the chosen dates counted, the dates in the file, size, who imported
it and when — and keeps the manifest itself (paths shown relative) behind Technical details.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...errors import LithotseError
from ...pathtext import display_path, display_paths
from ...raw.index import open_index
from ...raw.manifest import Manifest
from ...workspace import Workspace
from .. import jobs
from ..common import compact_table, error_text, fit_columns, fixed_font, named, scroll_area, show_error
from ..words import day_text, landed_span, plural, range_text, size_text, span_text

COLUMNS: list[tuple[str, str]] = [
    ("Imported", "landed_at"), ("Source", "source"), ("Stream", "stream"), ("File", "original_name"),
    ("Records", "records"), ("Counted", "records_in_range"), ("First date", "date_min"),
    ("Last date", "date_max"), ("Size", "bytes"),
]
NUMERIC = {"records", "records_in_range", "bytes"}


def load_landings(ws: Workspace) -> list[Manifest]:
    """Read the manifest index (refreshing it from the store) on a worker thread."""
    index = open_index(ws)
    try:
        return index.landings()
    finally:
        index.close()


class LandingsModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
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
            if attr == "bytes":
                return size_text(value)
            if attr in NUMERIC:
                return f"{value:,}"
            if attr == "landed_at" and value:
                return str(value).replace("T", " ")[:16]
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.UserRole:
            return value if value is not None else ""
        if role == Qt.ItemDataRole.TextAlignmentRole and attr in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and attr == "landed_at" and value:
            return str(value).replace("T", " ")[:19]
        if role == Qt.ItemDataRole.ToolTipRole and attr == "records_in_range":
            return "Records inside the dates the import asked for: the ones derivatives count"
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

        self.model = LandingsModel(parent=self)
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
        self.manifest_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.manifest_view.setVisible(False)
        self.sheet: dict[str, QLabel] = {}
        sheet = QWidget()
        form = QFormLayout(sheet)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        for key, label in SHEET:
            value = named(QLabel(""), label)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.sheet[key] = value
            form.addRow(f"{label}:", value)
        self.sheet_note = named(QLabel("Select a row to see what was imported."), "Landing note")
        self.sheet_note.setWordWrap(True)
        self.technical = named(QToolButton(), "Show technical details", "The manifest as stored, with paths "
                               "shown relative")
        self.technical.setText("Technical details")
        self.technical.setCheckable(True)
        self.technical.setArrowType(Qt.ArrowType.RightArrow)
        self.technical.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.technical.toggled.connect(self._toggle_technical)
        side = QWidget()
        sv = QVBoxLayout(side)
        sv.setContentsMargins(0, 0, 0, 0)
        sv.addWidget(self.sheet_note)
        sv.addWidget(sheet)
        sv.addWidget(self.technical)
        sv.addWidget(self.manifest_view, 1)
        sv.addStretch(0)

        bar = QHBoxLayout()
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.count)
        bar.addWidget(self.refresh_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(scroll_area(side, "Landing properties"))
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([900, 250])
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
        fit_columns(self.table)
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
            for value in self.sheet.values():
                value.setText("")
            self.sheet_note.setText("Select a row to see what was imported.")
            return
        self.sheet_note.setText("")
        for key, text in sheet_values(self.ws, manifest).items():
            self.sheet[key].setText(text)
        # what a person looks for first; the connector's incremental cursor goes last
        data = manifest.to_json()
        cursor = data.pop("cursor", None)
        shown = {**dict(sorted(data.items())), "cursor": cursor}
        self.manifest_view.setPlainText(json.dumps(display_paths(shown), indent=2, default=str))

    def _toggle_technical(self, shown: bool) -> None:
        self.manifest_view.setVisible(shown)
        self.technical.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)


def sheet_values(ws: Workspace, m: Manifest) -> dict[str, str]:
    """The property sheet of one landing, in plain words."""
    try:
        folder = display_path(Path(str(ws.source(m.source).settings.get("path", ""))))
    except LithotseError:
        folder = ""
    low, high = landed_span([m])
    rng = m.date_range
    asked = range_text(rng)
    counted = (f"{plural(m.records, 'record')}; {m.records_in_range:,} dated within {asked}"
               + (f", {m.records_out_of_range:,} outside (stored, not counted)" if m.records_out_of_range else ""))
    when = m.landed_at.replace("T", " ")[:16]
    try:
        when = f"{day_text(dt.date.fromisoformat(m.landed_at[:10]))}, {m.landed_at[11:16]}"
    except ValueError:
        pass
    return {
        "source": f"{m.source}" + (f" ({folder})" if folder else ""),
        "stream": m.stream,
        "file": m.original_name,
        "records": counted,
        "dates": span_text(low, high)[0].upper() + span_text(low, high)[1:] if low else "No dates",
        "size": size_text(m.bytes) + (" — the same file was imported before: stored once" if m.already_stored else ""),
        "imported": f"{when} by {m.user} on {m.host}",
        "reader": f"{m.connector} {m.connector_version}",
    }


SHEET = [("source", "Source"), ("stream", "Stream"), ("file", "File"), ("records", "Records"),
         ("dates", "Dates in the file"), ("size", "Size"), ("imported", "Imported"), ("reader", "Read by")]
