"""The main window: a sidebar of pages, wiring between pages, the local API, and screenshots.

A workspace whose credentials cannot read the raw store (a manager's) gets no Sources & Import
or Raw data pages: the store's access policy forbids them anyway, so the window shows only what
those credentials can read and opens on Derivatives.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QPalette, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..errors import LithotseError
from ..pathtext import display_path
from ..serve.app import RunningServer
from ..workspace import Workspace
from . import jobs
from .checklist import FirstRunChecklist
from .collector import GuiThreadCollector
from .common import named, show_error
from .pages.derivatives import DerivativesPage
from .pages.plugins import PluginsPage
from .pages.raw import RawDataPage
from .pages.settings import SettingsPage
from .pages.sources import SourcesPage
from .pages.spreadsheets import SpreadsheetsPage

# name: (theme, width, height, scale) of the screenshots --screenshot writes; the first is the README's
VARIANTS = {"light-1280x720": ("light", 1280, 720, 1), "dark-1280x720": ("dark", 1280, 720, 1),
            "light-2560x1440": ("light", 2560, 1440, 2), "dark-2560x1440": ("dark", 2560, 1440, 2)}
PAGE_KEYS = ["sources", "raw", "derivatives", "spreadsheets", "plugins", "settings"]
PAGE_TITLES = {"sources": "Sources && Import", "raw": "Raw data", "derivatives": "Derivatives",
               "spreadsheets": "Spreadsheets", "plugins": "Plugins", "settings": "Settings"}
PAGE_ICONS = {"sources": QStyle.StandardPixmap.SP_DriveNetIcon,
              "raw": QStyle.StandardPixmap.SP_FileDialogDetailedView,
              "derivatives": QStyle.StandardPixmap.SP_FileDialogContentsView,
              "spreadsheets": QStyle.StandardPixmap.SP_FileDialogListView,
              "plugins": QStyle.StandardPixmap.SP_ComputerIcon,
              "settings": QStyle.StandardPixmap.SP_FileDialogInfoView}
RAW_PAGES = ("sources", "raw")


def raw_readable(ws: Workspace) -> bool:
    """Whether to offer the raw pages; a store that cannot be reached at all is not a refusal
    (the pages then show that error themselves)."""
    try:
        return ws.can_read_raw()
    except LithotseError:
        return True


class NoRawAccessPage(QWidget):
    """Stands in for a raw page the workspace's credentials may not read (never shown in the list)."""

    job = None
    busy = False

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.note = named(QLabel(), "No raw data access")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self.set_workspace(ws)

    def set_workspace(self, ws: Workspace) -> None:
        self.note.setText(f"The credentials for the raw store ({ws.store('raw').url}) may not read "
                          "it, so imports and raw landings are not available here. Derivatives and "
                          "spreadsheets work as usual.")


class _Working(Protocol):
    """A page that may be running a background job."""

    @property
    def job(self) -> jobs.Job | None: ...


class MainWindow(QMainWindow):
    def __init__(self, ws: Workspace) -> None:
        super().__init__()
        self.ws = ws
        self.api: RunningServer | None = None
        self.cut_off: dict[str, list[str]] = {}
        self.raw_readable = raw_readable(ws)
        self.sources, self.raw = self._raw_pages(ws)
        self.derivatives = DerivativesPage(ws)
        self.spreadsheets = SpreadsheetsPage(ws)
        self.plugins = PluginsPage()
        self.settings = SettingsPage(ws)
        self.pages: dict[str, QWidget] = {"sources": self.sources, "raw": self.raw,
                                          "derivatives": self.derivatives, "spreadsheets": self.spreadsheets,
                                          "plugins": self.plugins, "settings": self.settings}

        self.actions_by_page: dict[str, QAction] = {}
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
            self.actions_by_page[key] = action
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setMinimumWidth(150)
        self.sidebar.setMaximumWidth(240)

        self.checklist = FirstRunChecklist(ws)
        self.checklist.stepRequested.connect(self.go_to_step)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.checklist)
        right_layout.addWidget(self.stack, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(1, False)
        splitter.setSizes([180, 1100])
        self.setCentralWidget(splitter)

        self._wire_raw_pages()
        self.derivatives.changed.connect(self.spreadsheets.reload)
        self.derivatives.changed.connect(self._tick_aggregate)
        self.spreadsheets.handedOver.connect(lambda: self.checklist.tick("excel"))
        self.settings.openWorkspaceRequested.connect(self.choose_workspace)
        self.settings.serveChanged.connect(self.start_api)
        self.api_label = named(QLabel(""), "Local API address",
                               "Where Excel, Power Query and scripts reach this workspace's derivatives")
        self.api_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.statusBar().addPermanentWidget(self.api_label)
        self._build_menu()
        self._show_raw_pages()
        self.sidebar.setCurrentRow(0 if self.raw_readable else PAGE_KEYS.index("derivatives"))
        self._set_title()
        self.collector = GuiThreadCollector(self)  # last: a window that failed to build holds nothing

    # --- raw pages ---------------------------------------------------------------------
    def _raw_pages(self, ws: Workspace) -> tuple[SourcesPage | NoRawAccessPage, RawDataPage | NoRawAccessPage]:
        if self.raw_readable:
            return SourcesPage(ws), RawDataPage(ws)
        return NoRawAccessPage(ws), NoRawAccessPage(ws)

    def _wire_raw_pages(self) -> None:
        sources, raw = self.sources, self.raw
        if not isinstance(sources, SourcesPage) or not isinstance(raw, RawDataPage):
            return  # the raw store is not readable: no pages to wire
        sources.imported.connect(lambda _outcome: raw.refresh())
        sources.cancelled.connect(raw.refresh)
        sources.cancelled.connect(self.derivatives.refresh)  # builds done before the cancel are shown
        sources.imported.connect(lambda _outcome: self.derivatives.refresh())
        sources.sourcesChanged.connect(self.derivatives.refresh)
        sources.sourcesChanged.connect(lambda: self.checklist.tick("source", bool(self.ws.sources())))
        sources.summariesChanged.connect(
            lambda: self.checklist.tick("import", any(s.landings for s in sources.summaries.values())))
        self.plugins.pluginsChanged.connect(sources.reload)

    def _show_raw_pages(self) -> None:
        """Hide the raw pages (list row and shortcut) when the raw store refuses these credentials."""
        self.checklist.available = self.raw_readable
        self.checklist.tick("source", bool(self.ws.sources()))
        for key in RAW_PAGES:
            self.sidebar.item(PAGE_KEYS.index(key)).setHidden(not self.raw_readable)
            self.actions_by_page[key].setEnabled(self.raw_readable)
        if not self.raw_readable and PAGE_KEYS[self.sidebar.currentRow()] in RAW_PAGES:
            self.show_page("derivatives")

    def _replace_raw_pages(self, ws: Workspace) -> None:
        """Swap real and stand-in raw pages when a newly opened workspace differs in access."""
        old = (self.sources, self.raw)
        self.sources, self.raw = self._raw_pages(ws)
        self.pages["sources"], self.pages["raw"] = self.sources, self.raw
        current = self.sidebar.currentRow()
        for key, page, gone in (("sources", self.sources, old[0]), ("raw", self.raw, old[1])):
            self.stack.removeWidget(gone)
            self.stack.insertWidget(PAGE_KEYS.index(key), page)
            gone.deleteLater()
        self.stack.setCurrentIndex(current)
        self._wire_raw_pages()
        self._show_raw_pages()

    def visible_pages(self) -> list[str]:
        return [key for n, key in enumerate(PAGE_KEYS) if not self.sidebar.item(n).isHidden()]

    # --- first-run checklist -------------------------------------------------------------
    def _tick_aggregate(self) -> None:
        self.checklist.tick("aggregate", any(row.version and row.spec.get("kind") == "aggregate"
                                             for row in self.derivatives.rows))

    def go_to_step(self, key: str) -> None:
        """Open the page where a checklist step is done, with its form when it has one."""
        if key in ("source", "import") and isinstance(self.sources, SourcesPage):
            self.show_page("sources")
            if key == "source":
                self.sources.open_add_dialog()
            else:
                self.sources.import_button.setFocus()
        elif key == "aggregate":
            self.show_page("derivatives")
            if self.derivatives.dialog is None:
                self.derivatives.open_aggregate_form()
        elif key == "excel":
            self.show_page("spreadsheets")

    # --- local API ---------------------------------------------------------------------
    def start_api(self) -> RunningServer | None:
        """Serve this workspace on 127.0.0.1 (``[serve] port``, default 8765), as ``lithotse serve``,
        and the Excel add-in over HTTPS too when ``[serve] https = true`` (``[serve] https_port``).

        A busy port (another app or ``lithotse serve`` already there) is reported in the status
        bar and the app carries on without its own server.
        """
        from ..serve.app import start_server_thread
        from ..serve.links import https_enabled, https_port, serve_port
        from ..serve.token import workspace_token

        self.stop_api()
        try:
            port = serve_port(self.ws)
            addin_port = https_port(self.ws) if https_enabled(self.ws) else None
            self.api = start_server_thread(self.ws, port, token=workspace_token(self.ws), https_port=addin_port)
        except (LithotseError, ValueError) as exc:
            self.api_label.setText("Local API: not running")
            self.api_label.setToolTip(str(exc))
            self.statusBar().showMessage(f"Local API not started: {exc}", 15000)
            return None
        self.api_label.setText(f"Local API: {self.api.url}"
                               + (f" · Excel add-in: {self.api.addin_url}" if self.api.addin_url else ""))
        self.api_label.setToolTip("Excel, Power Query and scripts read derivatives here while this app is "
                                  "open, with the API token (Spreadsheets page: Copy API token)")
        return self.api

    def stop_api(self) -> None:
        api, self.api = self.api, None
        if api is not None:
            api.stop()
            self.api_label.setText("")

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
        name = self.ws.config.get("workspace", {}).get("name") or self.ws.root.name
        self.setWindowTitle(name)  # Qt adds the application's name: "<workspace> — Lithotse"

    def show_page(self, key: str) -> QWidget:
        self.sidebar.setCurrentRow(PAGE_KEYS.index(key))
        return self.pages[key]

    def choose_workspace(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open workspace", str(self.ws.root.parent))
        if folder:
            self.open_workspace(Path(folder))

    def open_workspace(self, folder: Path) -> bool:
        if self.busy():
            self.statusBar().showMessage("Wait for the running job to finish first.", 5000)
            return False
        try:
            ws, created = Workspace.open_or_create(folder)
        except LithotseError as exc:
            show_error(self, "Cannot open workspace", exc)
            return False
        self.ws = ws
        readable = raw_readable(ws)
        if readable != self.raw_readable:
            self.raw_readable = readable
            self._replace_raw_pages(ws)
        else:
            self.sources.set_workspace(ws)
            self.raw.set_workspace(ws)
        self.checklist.set_workspace(ws)
        self._show_raw_pages()
        for page in (self.derivatives, self.spreadsheets, self.settings):
            page.set_workspace(ws)
        if self.api is not None:
            self.start_api()
        self._set_title()
        self.statusBar().showMessage(("Created" if created else "Opened")
                                     + f" workspace {display_path(ws.root)}", 8000)
        return True

    def busy(self) -> bool:
        pages: tuple[_Working, ...] = (self.sources, self.raw, self.derivatives, self.spreadsheets, self.plugins)
        return any(page.job is not None for page in pages)

    def save_screenshots(self, folder: Path, variants: Sequence[str] = tuple(VARIANTS)) -> bool:
        """Render each page, plus the two spec editors, in each variant (theme and size).

        The first variant's pictures go to ``folder/<page>.png``, the others' to
        ``folder/<variant>/<page>.png``. A 2560x1440 variant lays the window out at 1280x720 and
        paints it at twice the resolution, as 200% scaling does. Pages with a
        ``prepare_screenshot`` method pick their most telling state first (the Derivatives page
        shows a time series' chart). ``self.cut_off`` collects the texts that did not fit.
        """
        from .theme import apply_theme, saved_theme

        folder = Path(folder)
        ok = True
        self.cut_off = {}
        try:
            for number, variant in enumerate(variants):
                theme, width, height, scale = VARIANTS[variant]
                out = folder if number == 0 else folder / variant
                out.mkdir(parents=True, exist_ok=True)
                apply_theme(theme)
                ok = self._shoot(out, variant, width // scale, height // scale, scale) and ok
        finally:
            apply_theme(saved_theme())
        self.close()
        return ok

    def _shoot(self, out: Path, variant: str, width: int, height: int, scale: int) -> bool:
        from .layoutcheck import cut_off_texts

        self.resize(width, height)
        self.show()
        ok = True
        for key in self.visible_pages():
            page = self.show_page(key)
            self._settle()
            if hasattr(page, "prepare_screenshot"):
                page.prepare_screenshot()
                self._settle()
            ok = self._picture(self, scale).save(str(out / f"{key}.png")) and ok
            self.cut_off[f"{variant}/{key}"] = [str(c) for c in cut_off_texts(self)]
        self.show_page("derivatives")
        for name, dialog in (("derivative-form", self.derivatives.open_aggregate_form(self._first_aggregate())),
                             ("view-editor", self.derivatives.open_view_editor())):
            dialog.resize(min(dialog.width(), width - 60), min(dialog.height(), height - 60))
            self._settle()
            ok = self._picture(dialog, scale).save(str(out / f"{name}.png")) and ok
            self.cut_off[f"{variant}/{name}"] = [str(c) for c in cut_off_texts(dialog)]
            dialog.reject()
        return ok

    @staticmethod
    def _picture(widget: QWidget, scale: int) -> QPixmap:
        """The widget painted at ``scale`` times its size (crisp text at 200%, not a blown-up 100%)."""
        pixmap = QPixmap(widget.size() * scale)
        pixmap.setDevicePixelRatio(scale)
        pixmap.fill(widget.palette().color(QPalette.ColorRole.Window))
        widget.render(pixmap)
        return pixmap

    def _first_aggregate(self) -> dict | None:
        return next((row.spec for row in self.derivatives.rows if row.spec.get("kind") == "aggregate"), None)

    def _settle(self, seconds: float = 20) -> None:
        """Let background loads (the raw index), pending one-shot timers (a form's live preview)
        and the layouts they change settle before grabbing."""
        deadline = time.monotonic() + seconds
        quiet = 0
        while quiet < 3 and time.monotonic() < deadline:
            idle = jobs.wait_for_jobs(10000)
            QApplication.processEvents()
            pending = any(timer.isActive() and timer.isSingleShot()
                          for window in QApplication.topLevelWidgets() if window.isVisible()
                          for timer in window.findChildren(QTimer))
            quiet = quiet + 1 if idle and not pending else 0
            time.sleep(0.02)
            QApplication.processEvents()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Cancel a running import and wait for workers, so no job is cut mid-commit."""
        if self.sources.job is not None:
            self.sources.job.cancel()
        if self.derivatives.job is not None:
            self.derivatives.job.cancel()
        jobs.wait_for_jobs(60000)
        QApplication.processEvents()
        self.stop_api()
        self.collector.stop()
        super().closeEvent(event)
