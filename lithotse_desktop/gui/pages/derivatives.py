"""Derivatives: the JSON spec files in the workspace's ``derivatives/`` folder and their content."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ...workspace import Workspace
from ..common import compact_table, fixed_font, named

SPEC_FOLDER = "derivatives"
HEADERS = ["File", "Name", "Kind", "Modified", "Status"]


@dataclass
class SpecFile:
    path: Path
    name: str
    kind: str
    modified: str
    text: str
    problem: str = ""


def read_specs(ws: Workspace) -> list[SpecFile]:
    """Every ``*.json`` below the folder; unreadable or invalid files are listed with the reason."""
    folder = ws.root / SPEC_FOLDER
    if not folder.is_dir():
        return []
    specs = []
    for path in sorted(folder.rglob("*.json")):
        modified = dt.datetime.fromtimestamp(path.stat().st_mtime).isoformat(sep=" ", timespec="seconds")
        try:
            text = path.read_text("utf-8")
            data = json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            specs.append(SpecFile(path, path.stem, "", modified, "", f"not readable JSON: {exc}"))
            continue
        if not isinstance(data, dict):
            specs.append(SpecFile(path, path.stem, "", modified, text, "not a JSON object"))
            continue
        name = str(data.get("name") or data.get("title") or path.stem)
        kind = str(data.get("resourceType") or data.get("kind") or data.get("resource") or "")
        specs.append(SpecFile(path, name, kind, modified, json.dumps(data, indent=2)))
    return specs


class DerivativesPage(QWidget):
    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.specs: list[SpecFile] = []
        self.folder_label = named(QLabel(""), "Derivatives folder")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_label.setWordWrap(True)
        self.refresh_button = named(QPushButton("&Refresh"), "Refresh derivative specs")
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button = named(QPushButton("Open &folder"), "Open derivatives folder",
                                 "Show the spec folder in the file manager")
        self.open_button.clicked.connect(self._open_folder)

        self.table = named(QTableWidget(0, len(HEADERS)), "Derivative specs")
        self.table.setHorizontalHeaderLabels(HEADERS)
        compact_table(self.table)
        self.table.currentCellChanged.connect(lambda *_: self._show_selected())
        self.spec_view = named(QPlainTextEdit(), "Derivative spec JSON")
        self.spec_view.setReadOnly(True)
        self.spec_view.setFont(fixed_font())
        self.spec_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.spec_view.setPlaceholderText("Select a spec to see it.")

        bar = QHBoxLayout()
        bar.addWidget(self.folder_label, 1)
        bar.addWidget(self.open_button)
        bar.addWidget(self.refresh_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(self.spec_view)
        splitter.setSizes([720, 380])
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)
        self.refresh()

    def set_workspace(self, ws: Workspace) -> None:
        self.ws = ws
        self.refresh()

    def refresh(self) -> None:
        self.specs = read_specs(self.ws)
        folder = self.ws.root / SPEC_FOLDER
        if self.specs:
            self.folder_label.setText(f"{len(self.specs)} spec file(s) in {folder}")
        else:
            self.folder_label.setText(f"No derivative specs yet: JSON spec files placed in {folder} "
                                      "are listed here.")
        self.open_button.setEnabled(folder.is_dir())
        self.table.setRowCount(len(self.specs))
        for row, spec in enumerate(self.specs):
            cells = [str(spec.path.relative_to(folder)), spec.name, spec.kind, spec.modified,
                     spec.problem or "ok"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        if self.specs and self.table.currentRow() < 0:
            self.table.setCurrentCell(0, 0)
        self._show_selected()

    def _show_selected(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < len(self.specs):
            spec = self.specs[row]
            self.spec_view.setPlainText(spec.text or spec.problem)
        else:
            self.spec_view.setPlainText("")

    def _open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.ws.root / SPEC_FOLDER)))
