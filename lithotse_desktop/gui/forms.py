"""Drawing a connector's declared settings as a form, and reading the form back as settings.

Each :class:`~lithotse_desktop.connectors.FieldType` maps to one editor; SECRET values are
returned apart so the caller hands them to ``Workspace.add_source`` for the secrets store
(OS keyring or Lithotse's private file) and they never reach the config file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QDate
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .common import named

INT_MIN, INT_MAX = -2_147_483_648, 2_147_483_647
NO_DATE = QDate(1900, 1, 1)


class FieldEditor:
    """One field's editor: the widget placed in the form plus how to read its value."""

    def __init__(self, spec: dict, widget: QWidget, read: Callable[[], Any], focus: QWidget,
                 write: Callable[[Any], None] | None = None) -> None:
        self.spec = spec
        self.widget = widget
        self.read = read
        self.focus = focus
        self.write = write or (lambda _value: None)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def secret(self) -> bool:
        return self.spec["type"] == "secret"


def _label(spec: dict) -> str:
    return spec.get("label") or spec["name"]


def _path_editor(spec: dict, parent: QWidget) -> FieldEditor:
    box = QWidget(parent)
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    edit = named(QLineEdit(str(spec.get("default") or "")), _label(spec), spec.get("help") or None)
    edit.setPlaceholderText("a file or a folder")
    pick_file = named(QPushButton("File…"), f"Choose a file for {_label(spec)}")
    pick_dir = named(QPushButton("Folder…"), f"Choose a folder for {_label(spec)}")

    def choose_file() -> None:
        path, _filter = QFileDialog.getOpenFileName(box, f"Choose {_label(spec)}", edit.text())
        if path:
            edit.setText(path)

    def choose_dir() -> None:
        path = QFileDialog.getExistingDirectory(box, f"Choose {_label(spec)}", edit.text())
        if path:
            edit.setText(path)

    pick_file.clicked.connect(choose_file)
    pick_dir.clicked.connect(choose_dir)
    row.addWidget(edit, 1)
    row.addWidget(pick_file)
    row.addWidget(pick_dir)
    return FieldEditor(spec, box, lambda: edit.text().strip(), edit, lambda v: edit.setText(str(v)))


def _line_editor(spec: dict, parent: QWidget, *, password: bool = False,
                 placeholder: str = "") -> FieldEditor:
    edit = named(QLineEdit(parent), _label(spec), spec.get("help") or None)
    if password:
        edit.setEchoMode(QLineEdit.EchoMode.Password)
        edit.setPlaceholderText("kept in the OS keyring or Lithotse's private secrets file, never in the config")
    else:
        edit.setText("" if spec.get("default") is None else str(spec["default"]))
        edit.setPlaceholderText(placeholder)
    return FieldEditor(spec, edit, lambda: edit.text().strip() if not password else edit.text(), edit,
                       lambda v: edit.setText("" if password else str(v)))


def _choice_editor(spec: dict, parent: QWidget) -> FieldEditor:
    combo = named(QComboBox(parent), _label(spec), spec.get("help") or None)
    if not spec.get("required") and spec.get("default") is None:
        combo.addItem("(not set)", None)
    for choice in spec.get("choices", []):
        combo.addItem(choice, choice)
    if spec.get("default") is not None:
        combo.setCurrentIndex(max(0, combo.findData(spec["default"])))
    return FieldEditor(spec, combo, combo.currentData, combo,
                       lambda v: combo.setCurrentIndex(max(0, combo.findData(v))))


def _date_editor(spec: dict, parent: QWidget) -> FieldEditor:
    edit = named(QDateEdit(parent), _label(spec), spec.get("help") or None)
    edit.setDisplayFormat("yyyy-MM-dd")
    edit.setCalendarPopup(True)
    edit.setMinimumDate(NO_DATE)
    edit.setSpecialValueText("(not set)")
    default = spec.get("default")
    edit.setDate(QDate.fromString(str(default), "yyyy-MM-dd") if default else NO_DATE)

    def read() -> str | None:
        day = edit.date()
        if day == NO_DATE:
            return None
        return dt.date(day.year(), day.month(), day.day()).isoformat()

    return FieldEditor(spec, edit, read, edit,
                       lambda v: edit.setDate(QDate.fromString(str(v), "yyyy-MM-dd") if v else NO_DATE))


def _integer_editor(spec: dict, parent: QWidget) -> FieldEditor:
    spin = named(QSpinBox(parent), _label(spec), spec.get("help") or None)
    spin.setRange(INT_MIN, INT_MAX)
    default = spec.get("default")
    optional = not spec.get("required") and default is None
    if optional:
        spin.setSpecialValueText("(not set)")
    spin.setValue(int(default) if default is not None else (INT_MIN if optional else 0))
    return FieldEditor(spec, spin, lambda: None if optional and spin.value() == INT_MIN else spin.value(),
                       spin, lambda v: spin.setValue(int(v)))


def _bool_editor(spec: dict, parent: QWidget) -> FieldEditor:
    check = named(QCheckBox(_label(spec), parent), _label(spec), spec.get("help") or None)
    check.setChecked(bool(spec.get("default")))
    return FieldEditor(spec, check, check.isChecked, check, lambda v: check.setChecked(bool(v)))


def make_editor(spec: dict, parent: QWidget) -> FieldEditor:
    kind = spec["type"]
    if kind == "path":
        return _path_editor(spec, parent)
    if kind == "url":
        return _line_editor(spec, parent, placeholder="https://…")
    if kind == "secret":
        return _line_editor(spec, parent, password=True)
    if kind == "choice":
        return _choice_editor(spec, parent)
    if kind == "date":
        return _date_editor(spec, parent)
    if kind == "integer":
        return _integer_editor(spec, parent)
    if kind == "boolean":
        return _bool_editor(spec, parent)
    return _line_editor(spec, parent)


class ConnectorForm(QWidget):
    """The settings form of one connector, built from ``Connector.describe()``."""

    def __init__(self, description: dict, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.description = description
        self.editors: dict[str, FieldEditor] = {}
        layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        if not description.get("fields"):
            layout.addRow(QLabel("This connector has no settings."))
        for spec in description.get("fields", []):
            editor = make_editor(spec, self)
            self.editors[spec["name"]] = editor
            text = _label(spec) + (" *" if spec.get("required") else "")
            if spec["type"] == "boolean":
                layout.addRow("", editor.widget)
            else:
                label = QLabel(text)
                label.setBuddy(editor.focus)
                layout.addRow(label, editor.widget)
            if spec.get("help"):
                hint = QLabel(spec["help"])
                hint.setWordWrap(True)
                hint.setEnabled(False)
                layout.addRow("", hint)

    def values(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(settings, secrets); unset fields are left out so connector defaults apply."""
        settings: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        for name, editor in self.editors.items():
            value = editor.read()
            if value is None or value == "":
                continue
            if editor.secret:
                secrets[name] = str(value)
            else:
                settings[name] = value
        return settings, secrets

    def editor(self, name: str) -> QWidget:
        return self.editors[name].focus

    def set_values(self, settings: dict[str, Any], secret_hint: str = "") -> None:
        """Fill the form with saved settings; secret fields stay empty (their values are not shown)."""
        for name, editor in self.editors.items():
            if editor.secret:
                if secret_hint and isinstance(editor.focus, QLineEdit):
                    editor.focus.setPlaceholderText(secret_hint)
            elif name in settings and settings[name] is not None:
                editor.write(settings[name])
