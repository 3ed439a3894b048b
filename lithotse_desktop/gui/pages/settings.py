"""Settings: where the workspace is, where secrets are kept, which store serves each tier, and the
suppression default."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
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

from ...errors import LithotseError
from ...pathtext import display_path
from ...secrets import current_store
from ...workspace import TIERS, Workspace
from ..common import compact_table, named, scroll_area
from ..theme import THEMES, apply_theme, save_theme, saved_theme

TIER_NAMES = {"raw": "Raw (L1)", "derived": "Derived (L2)", "cache": "Cache (L3)"}


class SettingsPage(QWidget):
    openWorkspaceRequested = Signal()

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

    def choose_theme(self, name: str) -> None:
        """Switch now and remember the choice for the next start."""
        save_theme(name)
        apply_theme(name)

    def save(self) -> None:
        self.ws.config.setdefault("workspace", {})["suppress_below"] = self.suppress.value()
        self.ws.save()
        self.saved.setText(f"Saved to {self.ws.root.name}/lithotse.toml.")
