"""Connector settings forms: one editor per field type, values split into settings and secrets."""

from __future__ import annotations

from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDateEdit, QLabel, QLineEdit, QSpinBox

from lithotse_desktop.connectors import ConfigField, Connector, FieldType
from lithotse_desktop.gui.forms import ConnectorForm


class EveryField(Connector):
    name = "every"
    fields = (
        ConfigField("folder", FieldType.PATH, "Folder", required=True),
        ConfigField("base", FieldType.URL, "Base URL"),
        ConfigField("label", FieldType.TEXT, "Label", default="hello"),
        ConfigField("mode", FieldType.CHOICE, "Mode", choices=("fast", "slow"), default="slow"),
        ConfigField("flavour", FieldType.CHOICE, "Flavour", choices=("a", "b")),
        ConfigField("password", FieldType.SECRET, "Password"),
        ConfigField("since", FieldType.DATE, "Since"),
        ConfigField("limit", FieldType.INTEGER, "Limit", default=100),
        ConfigField("page", FieldType.INTEGER, "Page size"),
        ConfigField("strict", FieldType.BOOLEAN, "Strict", default=True),
    )


def test_each_field_type_gets_its_editor_and_values_round_trip(qtbot):
    form = ConnectorForm(EveryField.describe())
    qtbot.addWidget(form)
    form.show()
    kinds = {name: type(editor.focus) for name, editor in form.editors.items()}
    assert kinds == {"folder": QLineEdit, "base": QLineEdit, "label": QLineEdit, "mode": QComboBox,
                     "flavour": QComboBox, "password": QLineEdit, "since": QDateEdit,
                     "limit": QSpinBox, "page": QSpinBox, "strict": QCheckBox}
    assert form.values() == ({"label": "hello", "mode": "slow", "limit": 100, "strict": True}, {})

    qtbot.keyClicks(form.editor("folder"), "/data/in")
    qtbot.keyClicks(form.editor("base"), "https://ehr.example/fhir")
    qtbot.keyClicks(form.editor("password"), "pa ss")
    form.editor("flavour").setCurrentIndex(form.editor("flavour").findText("b"))
    form.editor("since").setDate(QDate(2024, 2, 29))
    spin = form.editor("limit")
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "250")
    form.editor("strict").setFocus()
    qtbot.keyClick(form.editor("strict"), Qt.Key.Key_Space)
    settings, secrets = form.values()
    assert settings == {"folder": "/data/in", "base": "https://ehr.example/fhir", "label": "hello",
                        "mode": "slow", "flavour": "b", "since": "2024-02-29", "limit": 250,
                        "strict": False}
    assert secrets == {"password": "pa ss"}
    assert EveryField.validate_settings({**settings, **secrets})["limit"] == 250
    assert form.editor("password").echoMode() == QLineEdit.EchoMode.Password
    assert all(editor.focus.accessibleName() for editor in form.editors.values())


def test_connector_without_fields_says_so(qtbot):
    class Bare(Connector):
        name = "bare"

    form = ConnectorForm(Bare.describe())
    qtbot.addWidget(form)
    assert form.values() == ({}, {})
    assert "no settings" in form.findChildren(QLabel)[0].text()


def test_csv_form_offers_the_person_column_and_explains_detection(qtbot):
    """Suppression counts people through this setting; the form shows it with its detection rule."""
    from lithotse_csv import CsvConnector

    form = ConnectorForm(CsvConnector.describe())
    qtbot.addWidget(form)
    form.show()
    assert isinstance(form.editor("person_column"), QLineEdit)
    hints = " ".join(label.text() for label in form.findChildren(QLabel))
    assert "PATIENT, patient_id, person_id, MRN" in hints and "'none' counts records" in hints
    qtbot.keyClicks(form.editor("path"), "/data/in")
    qtbot.keyClicks(form.editor("person_column"), "member")
    settings, _ = form.values()
    assert settings["person_column"] == "member"
    assert CsvConnector.validate_settings(settings)["person_column"] == "member"
