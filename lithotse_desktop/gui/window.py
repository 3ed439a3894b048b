"""The main window: a sidebar of pages, wiring between pages, and screenshot rendering."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QFileDialog, QListWidget, QListWidgetItem,
                               QMainWindow, QSplitter, QStackedWidget, QStyle, QWidget)

from .. import __version__
from ..errors import LithotseError
from ..cache.lookup import install_publish_hook
from ..workspace import Workspace
from . import jobs
from .common import named, show_error
from .pages.derivatives import DerivativesPage
from .pages.plugins import PluginsPage
from .pages.raw import RawDataPage
from .pages.settings import SettingsPage
from .pages.sources import SourcesPage
from .pages.spreadsheets import SpreadsheetsPage

PAGE_KEYS = ["sources", "raw", "derivatives", "spreadsheets", "plugins", "settings"]
PAGE_TITLES = {"sources": "Sources && Import", "raw": "Raw data", "derivatives": "Derivatives", "spreadsheets": "Spreadsheets",
               "plugins": "Plugins", "settings": "Settings"}
PAGE_ICONS = {"sources": QStyle.StandardPixmap.SP_DriveNetIcon,
              "raw": QStyle.StandardPixmap.SP_FileDialogDetailedView,
              "derivatives": QStyle.StandardPixmap.SP_FileDialogContentsView,
              "spreadsheets": QStyle.StandardPixmap.SP_FileDialogListView,
              "plugins": QStyle.StandardPixmap.SP_ComputerIcon,
              "settings": QStyle.StandardPixmap.SP_FileDialogInfoView}


class MainWindow(QMainWindow):
    def __init__(self, ws: Workspace) -> None:
        super().__init__()
        self.ws = ws
        install_publish_hook()
        self.sources = SourcesPage(ws)
        self.raw = RawDataPage(ws)
        self.derivatives = DerivativesPage(ws)
        self.spreadsheets = SpreadsheetsPage(ws)
        self.plugins = PluginsPage()
        self.settings = SettingsPage(ws)
        self.pages: dict[str, QWidget] = {"sources": self.sources, "raw": self.raw,
                                          "derivatives": self.derivatives, "spreadsheets": self.spreadsheets,
                                          "plugins": self.plugins, "settings": self.settings}

        self.stack = QStackedWidget()
        self.sidebar = named(QListWidget(), "Pages", "Choose a page; Ctrl+1 to Ctrl+6 also switch")
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setSpacing(2)
        style = self.style()
        for number, key in enumerate(PAGE_KEYS, 1):
            title = PAGE_TITLES[key].replace("&&", "&")
            item = QListWidgetItem(style.standardIcon(PAGE_ICONS[key]), title)
            item.setToolTip(f"{title} (Ctrl+{number})")
            self.sidebar.addItem(item)
            self.stack.addWidget(self.pages[key])
            action = QAction(title, self)
            action.setShortcut(QKeySequence(f"Ctrl+{number}"))
            action.triggered.connect(lambda _checked=False, k=key: self.show_page(k))
            self.addAction(action)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setMinimumWidth(150)
        self.sidebar.setMaximumWidth(240)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.stack)
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(1, False)
        splitter.setSizes([180, 1100])
        self.setCentralWidget(splitter)

        self.sources.imported.connect(lambda _outcome: self.raw.refresh())
        self.sources.cancelled.connect(self.raw.refresh)
        self.sources.imported.connect(lambda _outcome: self.derivatives.refresh())
        self.sources.sourcesChanged.connect(self.derivatives.refresh)
        self.derivatives.changed.connect(self.spreadsheets.reload)
        self.plugins.pluginsChanged.connect(self.sources.reload)
        self.settings.openWorkspaceRequested.connect(self.choose_workspace)
        self._build_menu()
        self.sidebar.setCurrentRow(0)
        self._set_title()

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_action = file_menu.addAction("&Open workspace…")
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self.choose_workspace)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        help_menu = self.menuBar().addMenu("&Help")
        about = help_menu.addAction("&About Lithotse")
        about.triggered.connect(self._about)

    def _about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.about(self, "About Lithotse",
                          f"Lithotse {__version__}\nRaw landing, derivatives and cached aggregates "
                          "for health records.")

    def _set_title(self) -> None:
        name = self.ws.config.get("workspace", {}).get("name", self.ws.root.name)
        self.setWindowTitle(f"Lithotse — {name}")

    def show_page(self, key: str) -> QWidget:
        self.sidebar.setCurrentRow(PAGE_KEYS.index(key))
        return self.pages[key]

    def choose_workspace(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open workspace", str(self.ws.root.parent))
        if folder:
            self.open_workspace(Path(folder))

    def open_workspace(self, folder: Path) -> bool:
        from .app import open_or_create

        if self.busy():
            self.statusBar().showMessage("Wait for the running job to finish first.", 5000)
            return False
        try:
            ws, created = open_or_create(folder)
        except LithotseError as exc:
            show_error(self, "Cannot open workspace", exc)
            return False
        self.ws = ws
        for page in (self.sources, self.raw, self.derivatives, self.spreadsheets, self.settings):
            page.set_workspace(ws)
        self._set_title()
        self.statusBar().showMessage(("Created" if created else "Opened") + f" workspace {ws.root}", 8000)
        return True

    def busy(self) -> bool:
        return any(page.job is not None for page in (self.sources, self.raw, self.derivatives,
                                                      self.spreadsheets, self.plugins))

    def save_screenshots(self, folder: Path, width: int, height: int) -> bool:
        """Render each page at the given size into ``folder/<page>.png``, plus the two spec editors.

        Pages with a ``prepare_screenshot`` method pick their most telling state first (the
        Derivatives page shows a time series' chart).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.resize(width, height)
        self.show()
        ok = True
        for key in PAGE_KEYS:
            page = self.show_page(key)
            self._settle()
            if hasattr(page, "prepare_screenshot"):
                page.prepare_screenshot()
                self._settle()
            ok = self.grab().save(str(folder / f"{key}.png")) and ok
        self.show_page("derivatives")
        for name, dialog in (("derivative-form", self.derivatives.open_aggregate_form(self._first_aggregate())),
                             ("view-editor", self.derivatives.open_view_editor())):
            self._settle()
            ok = dialog.grab().save(str(folder / f"{name}.png")) and ok
            dialog.reject()
        self.close()
        return ok

    def _first_aggregate(self) -> dict | None:
        return next((row.spec for row in self.derivatives.rows if row.spec.get("kind") == "aggregate"), None)

    def _settle(self) -> None:
        """Let background loads (the raw index) finish and layouts settle before grabbing."""
        app = QApplication.instance()
        for _ in range(4):
            jobs.wait_for_jobs(10000)
            app.processEvents()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Cancel a running import and wait for workers, so no job is cut mid-commit."""
        if self.sources.job is not None:
            self.sources.job.cancel()
        if self.derivatives.job is not None:
            self.derivatives.job.cancel()
        jobs.wait_for_jobs(60000)
        QApplication.processEvents()
        super().closeEvent(event)
