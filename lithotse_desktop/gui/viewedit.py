"""The ViewDefinition editor: JSON checked as you type, then saved as a ``view`` derivative.

Checking waits for a short pause in typing (a debounce) so a long view is not recompiled on
every key. The first problem found is shown: a JSON syntax error with its line and column
(and that line highlighted), else what :func:`~lithotse_desktop.derive.sof.validate_view`
says, which starts with the path inside the view (``select[0].column[1].path: …``).
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPalette, QTextCursor, QTextFormat
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from ..derive.service import add_spec
from ..derive.sof import ViewError, validate_view
from ..errors import LithotseError
from ..workspace import Workspace
from . import jobs
from .common import ErrorLabel, confirm_discard, dialog_buttons, error_text, fixed_font, labelled_row, named
from .specform import InputOption, input_label, list_inputs

DEBOUNCE_MS = 250
EXAMPLES = Path(__file__).resolve().parent / "viewdefinitions"
STARTER = {"resourceType": "ViewDefinition", "resource": "Patient", "select": [
    {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "gender", "path": "gender"},
                {"name": "birth_date", "path": "birthDate"}]}]}


def templates() -> dict[str, dict]:
    """The bundled example views (package data beside this module), without their narrative ``text``."""
    folder = EXAMPLES
    out: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            view = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(view, dict):
            view.pop("text", None)
            out[path.stem] = view
    return out


def check_view_text(text: str) -> tuple[dict | None, str, int | None]:
    """(view, problem, line): the parsed view when valid, else the first problem and its line."""
    try:
        view = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}", exc.lineno
    if not isinstance(view, dict):
        return None, "A ViewDefinition must be a JSON object ({ … }).", None
    try:
        validate_view(view)
    except ViewError as exc:
        return None, f"ViewDefinition: {exc}", None
    except Exception as exc:  # a compiler bug must show, not kill the editor
        return None, f"ViewDefinition cannot be compiled: {error_text(exc)}", None
    return view, "", None


class ViewDialog(QDialog):
    """Name, FHIR input stream, and the ViewDefinition text; Save runs the core's checks and stores it."""

    saved = Signal(str)
    checked = Signal(str)

    def __init__(self, ws: Workspace, parent: QWidget | None = None, spec: dict | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.editing = spec is not None
        self.base = dict(spec) if spec else {}
        self.view: dict | None = None
        self.problem = ""
        self.save_job: jobs.Job | None = None
        self._clean: str | None = None
        self._confirm: QMessageBox | None = None
        self.setWindowTitle(f"Edit view {spec['name']}" if spec else "New ViewDefinition")
        named(self, self.windowTitle())

        self.name_edit = named(QLineEdit(self.base.get("name", "")), "Derivative name",
                               "A letter, then letters, digits or _")
        self.name_edit.setReadOnly(self.editing)
        self.input_box = named(QComboBox(), "Input stream", "The FHIR stream whose resources the view reads")
        self.template = named(QComboBox(), "Start from example",
                              "Replace the text with a bundled example ViewDefinition")
        self.template.addItem("(choose an example)", None)
        for name, view in templates().items():
            self.template.addItem(name, view)
        self.template.activated.connect(self._use_template)
        self.editor = named(QPlainTextEdit(), "ViewDefinition JSON",
                            "The view as JSON; it is checked a moment after you stop typing")
        self.editor.setFont(fixed_font())
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.editor.setTabChangesFocus(True)
        self.status = named(QLabel(""), "ViewDefinition check")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.errors = {"name": ErrorLabel("Name"), "input": ErrorLabel("Input"), "spec": ErrorLabel("Save")}

        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.check_now)
        self.editor.textChanged.connect(self._typed)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        labelled_row(form, "&Name *", self.name_edit, self.errors["name"])
        labelled_row(form, "&Input *", self.input_box, self.errors["input"])
        labelled_row(form, "E&xample", self.template)

        self.buttons, self.save_button = dialog_buttons(
            self, QDialogButtonBox.StandardButton.Save, "&Save && build", "Save and build",
            "Store the view as a derivative and build it", "Cancel editing the view", self.save)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        text_label = QLabel("&ViewDefinition (JSON)")
        text_label.setBuddy(self.editor)
        layout.addWidget(text_label)
        layout.addWidget(self.editor, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.errors["spec"])
        layout.addWidget(self.buttons)
        self.resize(760, 640)

        self.editor.setPlainText(json.dumps(self.base.get("view") or STARTER, indent=2))
        self.check_now()
        self._load_inputs()

    # --- inputs ---------------------------------------------------------------------------
    def _load_inputs(self) -> None:
        job = jobs.Job(list_inputs, self.ws, streams_only=True, keep=self.base.get("input"), with_progress=False)
        job.signals.finished.connect(self._inputs_loaded)
        jobs.start(job)

    def _inputs_loaded(self, options: list[InputOption]) -> None:
        self.input_box.clear()
        for option in options:
            if option.item:
                self.input_box.addItem(option.label, option.item)
        wanted = self.base.get("input")
        if wanted is not None:
            if self.input_box.findData(wanted) < 0:
                self.input_box.addItem(input_label(wanted) + " (missing)", wanted)
            self.input_box.setCurrentIndex(self.input_box.findData(wanted))
        else:
            self._guess_input()
        self._clean = self._snapshot()

    def _snapshot(self) -> str:
        return json.dumps([self.name_edit.text(), self.input_box.currentData(), self.editor.toPlainText()])

    def has_changes(self) -> bool:
        return self._clean is not None and self._snapshot() != self._clean

    def reject(self) -> None:
        """Cancel, Escape or the close button: ask before throwing edits away."""
        if not self.has_changes() or self._confirm is not None:
            super().reject()
            return
        self._confirm = confirm_discard(self, "Discard the changes to this view?", self._discard_answered)

    def _discard_answered(self, discard: bool) -> None:
        self._confirm = None
        if discard:
            self._clean = None
            super().reject()

    def _guess_input(self) -> None:
        """Preselect the stream named like the view's resource type (FHIR streams are)."""
        resource = (self.view or {}).get("resource")
        for i in range(self.input_box.count()):
            if resource and self.input_box.itemData(i).get("stream") == resource:
                self.input_box.setCurrentIndex(i)
                return

    def _use_template(self, index: int) -> None:
        view = self.template.itemData(index)
        if view is not None:
            self.editor.setPlainText(json.dumps(view, indent=2))
            self.check_now()
            self._guess_input()
            if not self.name_edit.text() and isinstance(view.get("name"), str):
                self.name_edit.setText(view["name"])

    # --- checking as you type ----------------------------------------------------------------
    def _typed(self) -> None:
        self.timer.start()
        self.save_button.setEnabled(False)

    def check_now(self) -> bool:
        self.timer.stop()
        self.view, self.problem, line = check_view_text(self.editor.toPlainText())
        self._mark_line(line)
        if self.problem:
            self.status.setText(f"✗ {self.problem}")
        elif self.view is not None:
            columns = sum(len(s.get("column", [])) for s in self.view.get("select", []) if isinstance(s, dict))
            self.status.setText(f"✓ Valid ViewDefinition on {self.view.get('resource')}"
                                + (f", {columns} top-level column(s)." if columns else "."))
        self._tint(bool(self.problem))
        self.save_button.setEnabled(not self.problem and self.save_job is None)
        self.checked.emit(self.problem)
        return not self.problem

    def _tint(self, bad: bool) -> None:
        pal = self.status.palette()
        dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
        good = QColor("#7fd67f") if dark else QColor("#1b6e1b")
        wrong = QColor("#ff8080") if dark else QColor("#a00000")
        pal.setColor(QPalette.ColorRole.WindowText, wrong if bad else good)
        self.status.setPalette(pal)

    def _mark_line(self, line: int | None) -> None:
        if line is None:
            self.editor.setExtraSelections([])
            return
        selection = QTextEdit.ExtraSelection()
        tint = QColor(255, 80, 80, 60)
        selection.format.setBackground(tint)
        selection.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
        cursor = QTextCursor(self.editor.document().findBlockByLineNumber(max(line - 1, 0)))
        selection.cursor = cursor
        self.editor.setExtraSelections([selection])

    # --- saving ------------------------------------------------------------------------------
    def spec(self) -> dict:
        spec = {k: v for k, v in self.base.items() if k not in ("name", "kind", "input", "view")}
        spec.update(name=self.name_edit.text().strip(), kind="view",
                    input=self.input_box.currentData() or {}, view=self.view or {})
        return spec

    def save(self) -> None:
        if not self.check_now() or self.save_job is not None:
            return
        for label in self.errors.values():
            label.show_error("")
        self.save_button.setEnabled(False)
        job = jobs.Job(add_spec, self.ws, self.spec(), replace=self.editing, with_progress=False)
        job.signals.finished.connect(self._saved)
        job.signals.failed.connect(self._save_failed)
        self.save_job = job
        jobs.start(job)

    def _saved(self, spec: dict) -> None:
        self.save_job = None
        self.saved.emit(spec["name"])
        self.accept()

    def _save_failed(self, exc: BaseException, _trace: str) -> None:
        self.save_job = None
        self.save_button.setEnabled(True)
        path = getattr(exc, "path", "") or ""
        head = path.split(".")[0].split("[")[0]
        message = error_text(exc)
        if isinstance(exc, LithotseError) and head in ("name", "input"):
            self.errors[head].show_error(message[len(path) + 2:] if message.startswith(path + ": ") else message)
            (self.name_edit if head == "name" else self.input_box).setFocus()
        elif "exists" in message and not path:
            self.errors["name"].show_error(message)
        else:
            self.errors["spec"].show_error(message)

