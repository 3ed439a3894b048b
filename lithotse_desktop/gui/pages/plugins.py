"""Plugins: what is installed (and what failed to load), installing and removing via pip."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...pathtext import display_origin
from ...plugins import PluginInfo, get_plugin_manager
from ...pluginstall import install_plugin, remove_plugin
from .. import jobs
from ..common import JobStrip, compact_table, fit_columns, named, show_error

HEADERS = ["Plugin", "Distribution", "Version", "Connectors", "Origin", "Status"]


class PluginsPage(QWidget):
    pluginsChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job: jobs.Job | None = None
        self.infos: list[PluginInfo] = []

        self.table = named(QTableWidget(0, len(HEADERS)), "Installed plugins",
                           "Plugins found through the 'lithotse' entry point group")
        self.table.setHorizontalHeaderLabels(HEADERS)
        compact_table(self.table)
        self.table.currentCellChanged.connect(lambda *_: self._show_selected())
        self.details = named(QPlainTextEdit(), "Plugin details")
        self.details.setReadOnly(True)
        self.details.setPlaceholderText("Select a plugin to see its details or its error.")

        self.wheel_button = named(QPushButton("Install from &wheel…"), "Install plugin from wheel",
                                  "Choose a .whl file and install it into this application")
        self.name_button = named(QPushButton("Install by &name…"), "Install plugin by name",
                                 "Install a plugin distribution from the package index")
        self.remove_button = named(QPushButton("&Remove"), "Remove plugin",
                                   "Uninstall the selected plugin's distribution")
        self.reload_button = named(QPushButton("Re&load"), "Reload plugins",
                                   "Look for newly installed plugins")
        self.wheel_button.clicked.connect(self._install_wheel)
        self.name_button.clicked.connect(self._install_name)
        self.remove_button.clicked.connect(self._remove)
        self.reload_button.clicked.connect(self._reload)
        self.strip = JobStrip("Plugin installation", cancellable=False)

        buttons = QHBoxLayout()
        for button in (self.wheel_button, self.name_button, self.remove_button, self.reload_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.details)
        splitter.setSizes([420, 200])
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Connectors and storage back ends come from plugins. Each is checked "
                                "on load; one that fails is listed with its error and left out."))
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.strip)
        self.refresh()

    def refresh(self) -> None:
        manager = get_plugin_manager()
        manager.connectors()  # hook errors are recorded on the plugin infos by this call
        self.infos = sorted(manager.plugins.values(), key=lambda p: p.name)
        self.table.setRowCount(len(self.infos))
        for row, info in enumerate(self.infos):
            status = f"error: {info.error}" if info.status == "error" else info.status
            cells = [info.name, info.distribution or f"({info.origin})", info.version or "",
                     ", ".join(info.connectors), display_origin(info.origin), status]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        fit_columns(self.table)
        if self.infos and self.table.currentRow() < 0:
            self.table.setCurrentCell(0, 0)
        self._show_selected()

    def row_of(self, name: str) -> int:
        return next((row for row, info in enumerate(self.infos) if info.name == name), -1)

    def _selected(self) -> PluginInfo | None:
        row = self.table.currentRow()
        return self.infos[row] if 0 <= row < len(self.infos) else None

    def _show_selected(self) -> None:
        info = self._selected()
        busy = self.job is not None
        self.remove_button.setEnabled(bool(info and info.distribution) and not busy)
        for button in (self.wheel_button, self.name_button, self.reload_button):
            button.setEnabled(not busy)
        if info is None:
            self.details.setPlainText("")
            return
        lines = [f"Plugin: {info.name}", f"Distribution: {info.distribution or f'({info.origin}, no distribution)'}",
                 f"Version: {info.version or '-'}", f"Module: {info.module}",
                 f"Origin: {display_origin(info.origin)}",
                 f"Connectors: {', '.join(info.connectors) or 'none'}",
                 f"Status: {info.status}"]
        if reason := info.disabled or info.error:
            lines += ["", reason]
        self.details.setPlainText("\n".join(lines))

    # --- pip jobs ----------------------------------------------------------------
    def _run(self, what: str, fn: Callable[..., object], arg: str) -> None:
        if self.job is not None:
            return
        self.job = jobs.Job(fn, arg, with_progress=False)
        self.job.signals.finished.connect(self._done)
        self.job.signals.failed.connect(self._failed)
        self.strip.started(f"{what} {arg}…")
        jobs.start(self.job)
        self._show_selected()

    def install(self, target: str) -> None:
        self._run("Installing", install_plugin, target)

    def remove(self, name: str) -> None:
        self._run("Removing", remove_plugin, name)

    def _install_wheel(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Install plugin from wheel", "",
                                                    "Python wheels (*.whl)")
        if path:
            self.install(path)

    def _install_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Install plugin by name",
                                        "Distribution name (optionally with a version, e.g. name==1.0):")
        if ok and name.strip():
            self.install(name.strip())

    def _remove(self) -> None:
        info = self._selected()
        if info is None or not info.distribution:
            return
        answer = QMessageBox.question(self, "Remove plugin",
                                      f"Uninstall {info.distribution} (plugin {info.name})?")
        if answer == QMessageBox.StandardButton.Yes:
            self.remove(info.name)

    def _reload(self) -> None:
        get_plugin_manager().load_entry_points()
        self.refresh()
        self.pluginsChanged.emit()

    def _done(self, result: object) -> None:
        self.job = None
        if isinstance(result, list):
            added = ", ".join(result) or "no new plugin entry points"
            self.strip.stopped(f"Installed: {added}.")
        else:
            self.strip.stopped(f"Removed {result}.")
        self.refresh()
        self.pluginsChanged.emit()

    def _failed(self, exc: BaseException, trace: str) -> None:
        self.job = None
        self.strip.stopped("Plugin change failed.")
        self.refresh()
        show_error(self, "Plugin change failed", exc, trace)
