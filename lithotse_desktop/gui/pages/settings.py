"""Settings: where the workspace is, where secrets are kept, which store serves each tier, the
suppression default, and whether the app serves the Excel add-in."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...atomic import atomic_write_text
from ...errors import LithotseError
from ...excel.officejs import manifest_xml
from ...pathtext import display_path
from ...secrets import current_store
from ...serve.links import https_enabled, https_port
from ...workspace import TIERS, Workspace
from ..common import compact_table, named, scroll_area
from ..theme import THEMES, apply_theme, save_theme, saved_theme

TIER_NAMES = {"raw": "Raw (L1)", "derived": "Derived (L2)", "cache": "Cache (L3)"}


class SettingsPage(QWidget):
    openWorkspaceRequested = Signal()
    serveChanged = Signal()
    """The local API's settings changed: the window restarts its server."""

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.path = named(QLineEdit(), "Workspace folder")
        self.path.setReadOnly(True)
        self.open_button = named(QPushButton("&Open another workspace…"), "Open another workspace",
                                 "Switch to another workspace folder (a new one is created if empty)")
        self.open_button.clicked.connect(self.openWorkspaceRequested)
        self.name = named(QLabel(""), "Workspace name")
        self.timezone = named(QLabel(""), "Workspace time zone")
        self.secrets = named(QLabel(""), "Secrets store", "Where source passwords, tokens and keys are kept")
        self.secrets.setWordWrap(True)
        self.secrets.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stores = named(QTableWidget(0, 3), "Stores per tier")
        self.stores.setHorizontalHeaderLabels(["Tier", "Store", "URL"])
        compact_table(self.stores)
        self.stores.setAlternatingRowColors(False)
        self.stores.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.stores.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.suppress = named(QSpinBox(), "Suppress counts below",
                              "Aggregates with fewer records than this are hidden by default")
        self.suppress.setRange(0, 1_000_000)
        self.suppress.setMaximumWidth(160)
        self.theme = named(QComboBox(), "Theme", "Light, dark, or the desktop's own choice; kept for you on "
                           "this computer, not in the workspace")
        for key, text in THEMES.items():
            self.theme.addItem(text, key)
        self.theme.setCurrentIndex(max(0, self.theme.findData(saved_theme())))
        self.theme.currentIndexChanged.connect(lambda _i: self.choose_theme(self.theme.currentData()))
        self.addin = named(QCheckBox("Serve the Excel &add-in over HTTPS"), "Serve the Excel add-in",
                           "Excel on Windows, Mac and the web loads Lithotse's add-in from this app "
                           "while it is open ([serve] https in lithotse.toml)")
        self.addin.toggled.connect(self.choose_addin)
        self.addin_hint = named(QLabel(""), "Excel add-in address")
        self.addin_hint.setWordWrap(True)
        self.manifest_button = named(QPushButton("Save &manifest…"), "Save the add-in's manifest",
                                     "The file Excel installs the add-in from (Insert > Add-ins > Upload "
                                     "My Add-in, or your organisation's admin centre)")
        self.manifest_button.clicked.connect(self._ask_manifest_path)
        self.save_button = named(QPushButton("&Save"), "Save settings")
        self.save_button.clicked.connect(self.save)
        self.saved = named(QLabel(""), "Settings status")

        where = QGroupBox("Workspace")
        form = QFormLayout(where)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(self.open_button)
        form.addRow("Folder", row)
        form.addRow("Name", self.name)
        form.addRow("Time zone", self.timezone)
        form.addRow("Secrets", self.secrets)
        look = QGroupBox("Appearance")
        lform = QFormLayout(look)
        theme_label = QLabel("&Theme")
        theme_label.setBuddy(self.theme)
        self.theme.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        lform.addRow(theme_label, self.theme)
        excel = QGroupBox("Excel add-in")
        eform = QFormLayout(excel)
        eform.addRow(self.addin)
        eform.addRow(self.addin_hint)
        manifest_row = QHBoxLayout()
        manifest_row.addWidget(self.manifest_button)
        manifest_row.addStretch(1)
        eform.addRow(manifest_row)
        stores = QGroupBox("Stores per tier")
        QVBoxLayout(stores).addWidget(self.stores)
        privacy = QGroupBox("Privacy")
        pform = QFormLayout(privacy)
        label = QLabel("Suppress &counts below")
        label.setBuddy(self.suppress)
        pform.addRow(label, self.suppress)
        hint = QLabel("Default for new aggregates: counts smaller than this are not shown.")
        hint.setWordWrap(True)
        pform.addRow("", hint)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_button)
        save_row.addWidget(self.saved, 1)
        pform.addRow("", save_row)

        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(where)
        layout.addWidget(look)
        layout.addWidget(excel)
        layout.addWidget(stores)
        layout.addWidget(privacy)
        layout.addStretch(1)
        scroll = scroll_area(inner, "Settings")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.suppress.valueChanged.connect(lambda _v: self.saved.setText(""))
        self.set_workspace(ws)

    def set_workspace(self, ws: Workspace) -> None:
        self.ws = ws
        section = ws.config.get("workspace", {})
        self.path.setText(display_path(ws.root))
        self.name.setText(str(section.get("name", "")))
        self.timezone.setText(ws.timezone)
        try:
            info = current_store()
            self.secrets.setText(f"{info.label[0].upper()}{info.label[1:]}\n({info.reason})")
        except LithotseError as exc:
            self.secrets.setText(f"Not usable: {exc}")
        self.stores.setRowCount(len(TIERS))
        for row, tier in enumerate(TIERS):
            store = ws.config.get("tiers", {}).get(tier, "")
            url = str(ws.config.get("stores", {}).get(store, {}).get("url", ""))
            for col, text in enumerate((TIER_NAMES.get(tier, tier), store, url)):
                self.stores.setItem(row, col, QTableWidgetItem(text))
        self.stores.resizeRowsToContents()
        frame = 2 * self.stores.frameWidth()
        self.stores.setFixedHeight(self.stores.horizontalHeader().sizeHint().height() + frame
                                   + sum(self.stores.rowHeight(r) for r in range(len(TIERS))))
        self.suppress.setValue(ws.suppress_below)
        self.saved.setText("")
        self.addin.blockSignals(True)
        try:
            self.addin.setChecked(https_enabled(ws))
        except LithotseError:
            self.addin.setChecked(False)
        self.addin.blockSignals(False)
        self._show_addin_hint()

    def _show_addin_hint(self) -> None:
        try:
            port = https_port(self.ws)
        except LithotseError as exc:
            self.addin_hint.setText(str(exc))
            return
        where = f"https://localhost:{port}/addin/"
        self.addin_hint.setText(f"Served at {where} while this app is open; Excel installs it from "
                                "the manifest." if self.addin.isChecked()
                                else f"Off. When on, the add-in is served at {where}.")

    def _ask_manifest_path(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(self, "Save the add-in's manifest", "lithotse-addin.xml",
                                                    "Add-in manifest (*.xml)")
        if path:
            self.save_manifest(path)

    def save_manifest(self, path: str) -> None:
        """Write the manifest for this workspace's HTTPS port, as ``lithotse excel addin-manifest``."""
        try:
            atomic_write_text(Path(path), manifest_xml(https_port(self.ws)))
        except (LithotseError, OSError) as exc:
            self.saved.setText(f"Manifest not saved: {exc}")
            return
        self.saved.setText(f"Manifest saved: {Path(path).name}")

    def choose_addin(self, on: bool) -> None:
        """Save ``[serve] https`` and have the window restart its server with or without HTTPS."""
        self.ws.config.setdefault("serve", {})["https"] = on
        self.ws.save()
        self._show_addin_hint()
        self.serveChanged.emit()

    def choose_theme(self, name: str) -> None:
        """Switch now and remember the choice for the next start."""
        save_theme(name)
        apply_theme(name)

    def save(self) -> None:
        self.ws.config.setdefault("workspace", {})["suppress_below"] = self.suppress.value()
        self.ws.save()
        self.saved.setText(f"Saved to {self.ws.root.name}/lithotse.toml.")
