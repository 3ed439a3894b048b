"""Small helpers every page uses: accessible names, readable error boxes, form rows with their
error lines, dialog buttons, a job status strip."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QPalette, QResizeEvent, QTextOption
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLayout,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableView,
    QTextEdit,
    QWidget,
)

from ..engine import out_of_memory
from ..errors import InputError, LithotseError
from ..progress import ProgressState

W = TypeVar("W", bound=QWidget)


def named(widget: W, name: str, tip: str | None = None) -> W:
    """Give a control the name screen readers announce (and a tooltip saying why it exists)."""
    widget.setAccessibleName(name)
    if tip:
        widget.setToolTip(tip)
        widget.setAccessibleDescription(tip)
    return widget


def fixed_font():
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


def type_word(typ: pa.DataType | None) -> str:
    """A column type in an analyst's words: date, date and time, number, text, yes/no."""
    if typ is None:
        return "unknown"
    if pa.types.is_date(typ):
        return "date"
    if pa.types.is_timestamp(typ):
        return "date and time"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "number"
    if pa.types.is_boolean(typ):
        return "yes/no"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    return "other"


COMMAND_HINTS = (
    (re.compile(r"[;,]?\s*run: lithotse derive build \S+"), ": click Build on the Derivatives page"),
    (re.compile(r"[;,]?\s*use --replace to change it"), ""),
    (re.compile(r"\s*\(for a source: lithotse source add NAME \.\.\. --replace\)"), " (edit the source to set it)"),
    (re.compile(r"[;,]?\s*(or )?run:? `?lithotse [^;.]*"), ""),
)


def error_text(exc: BaseException) -> str:
    """The sentence a person reads: a LithotseError's own message, else the type and message.

    The core's messages end with command lines for the CLI ("run: lithotse derive build x");
    in the app those become what to click, or go.
    """
    memory = out_of_memory(exc)
    if memory is not None:
        return memory
    if not isinstance(exc, LithotseError):
        return f"Unexpected {type(exc).__name__}: {exc}"
    text = str(exc)
    for pattern, instead in COMMAND_HINTS:
        text = pattern.sub(instead, text)
    return text


def error_details(exc: BaseException, trace: str = "") -> str:
    lines = [f"Error type: {type(exc).__name__}"]
    if isinstance(exc, InputError):
        lines += [f"Where: {exc.location}", f"Why: {exc.reason}"]
    if trace:
        lines += ["", "Technical details:", trace.rstrip()]
    return "\n".join(lines)


def show_error(parent: QWidget | None, title: str, exc: BaseException, trace: str = "") -> QMessageBox:
    """Open (without blocking) a warning with the readable text; the traceback only on demand."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, error_text(exc),
                      QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorBox")
    box.setDetailedText(error_details(exc, trace))
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    named(box, title)
    box.open()
    return box


class ErrorLabel(QLabel):
    """A field's error message, in the palette's error-ish colour, hidden while empty."""

    def __init__(self, what: str) -> None:
        super().__init__("")
        named(self, f"{what} error")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setVisible(False)
        self._tint()

    def _tint(self) -> None:
        base = QApplication.palette() if QApplication.instance() is not None else self.palette()
        dark = base.color(QPalette.ColorRole.Window).lightness() < 128
        pal = QPalette(base)
        pal.setColor(QPalette.ColorRole.WindowText, QColor("#ff7b72") if dark else QColor("#b3261e"))
        self.setPalette(pal)

    def show_error(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))

    def changeEvent(self, event: QEvent) -> None:
        """Re-tint when the app switches between light and dark."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            super().changeEvent(event)
            if not getattr(self, "_tinting", False):
                self._tinting = True
                self._tint()
                self._tinting = False
            return
        super().changeEvent(event)


def labelled_row(form: QFormLayout, text: str, field: QWidget | QLayout, error: QLabel | None = None,
                 buddy: QWidget | None = None) -> None:
    """A form row whose label's &-key focuses ``buddy`` (by default the field; give it for a layout),
    with the field's error line under it."""
    label = QLabel(text)
    if buddy is None:
        if not isinstance(field, QWidget):
            raise TypeError(f"{text}: a layout needs a buddy widget")
        buddy = field
    label.setBuddy(buddy)
    form.addRow(label, field)
    if error is not None:
        form.addRow("", error)


def dialog_buttons(dialog: QDialog, ok: QDialogButtonBox.StandardButton, text: str, name: str, tip: str,
                   cancel_name: str, accept: Callable[[], None]) -> tuple[QDialogButtonBox, QPushButton]:
    """An OK-like button (``ok``, labelled ``text``) and Cancel, both named for screen readers;
    ``accept`` runs on OK, Cancel rejects the dialog. Returns the box and the OK-like button."""
    buttons = QDialogButtonBox(ok | QDialogButtonBox.StandardButton.Cancel)
    button = buttons.button(ok)
    button.setText(text)
    named(button, name, tip)
    named(buttons.button(QDialogButtonBox.StandardButton.Cancel), cancel_name)
    buttons.accepted.connect(accept)
    buttons.rejected.connect(dialog.reject)
    return buttons, button


class JobStrip(QWidget):
    """Progress bar, status text (with record count) and a Cancel button for one running job."""

    cancelRequested = Signal()

    def __init__(self, what: str, parent: QWidget | None = None, cancellable: bool = True) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.bar = named(QProgressBar(), f"{what} progress")
        self.bar.setTextVisible(False)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setVisible(False)
        self.status = named(QLabel(""), f"{what} status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setWordWrap(True)
        self.cancel = named(QPushButton("&Cancel"), f"Cancel {what.lower()}",
                            f"Stop the running {what.lower()}; nothing it started is committed")
        self.cancel.setEnabled(False)
        self.cancel.setVisible(cancellable)
        self.cancel.clicked.connect(self._on_cancel)
        layout.addWidget(self.bar, 2)
        layout.addWidget(self.status, 3)
        layout.addWidget(self.cancel)

    def _on_cancel(self) -> None:
        self.cancel.setEnabled(False)
        self.status.setText("Cancelling…")
        self.cancelRequested.emit()

    def started(self, message: str) -> None:
        self.bar.setVisible(True)
        self.bar.setRange(0, 0)
        self.status.setText(message)
        self.cancel.setEnabled(True)

    def show_progress(self, state: ProgressState) -> None:
        if state.total:
            self.bar.setRange(0, state.total)
            self.bar.setValue(min(state.done, state.total))
        else:
            self.bar.setRange(0, 0)
        records = f" — {state.records:,} records read" if state.records else ""
        self.status.setText(f"{state.message}{records}")

    def stopped(self, message: str, ok: bool = True) -> None:
        """The job ended: the bar goes away (a failed job leaves no full bar behind), the sentence stays."""
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setVisible(False)
        self.status.setText(message)
        self.status.setProperty("failed", not ok)
        self.cancel.setEnabled(False)


class WrappedField(QTextEdit):
    """A read-only text that wraps anywhere and grows to show all of itself (a long URL or formula),
    with the ``text``/``setText`` of the one-line field it replaces."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setAcceptRichText(False)
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._fit()

    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:
        self.setPlainText(text)
        self._fit()

    def setCursorPosition(self, _position: int) -> None:
        """Nothing to scroll: the whole text shows."""

    def _fit(self) -> None:
        doc = self.document().clone()
        doc.setTextWidth(max(self.viewport().width(), 50))
        lines = max(doc.size().height(), self.fontMetrics().lineSpacing() + 2 * doc.documentMargin())
        self.setFixedHeight(int(lines) + 2 * self.frameWidth() + 2)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()


def scroll_area(inner: QWidget | None, name: str) -> QScrollArea:
    """A frameless, resizable scroll area so pages reflow instead of clipping on small screens."""
    area = named(QScrollArea(), name)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    if inner is not None:
        area.setWidget(inner)
    return area


def fit_columns(view: QTableView) -> None:
    """Every column as wide as its widest text; the last one stretches only into spare room, so a
    long last cell scrolls into view rather than being cut to "…"."""
    header = view.horizontalHeader()
    header.setStretchLastSection(False)
    view.resizeColumnsToContents()
    header.setStretchLastSection(header.length() < view.viewport().width())


def compact_table(view: QTableView) -> None:
    """One-line rows, whole-row selection and no row numbers: the look every list table shares."""
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    rows = view.verticalHeader()
    rows.setVisible(False)
    rows.setDefaultSectionSize(view.fontMetrics().height() + 8)
    header = view.horizontalHeader()
    header.setStretchLastSection(True)
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)


def confirm_discard(parent: QWidget, question: str, answered: Callable[[bool], None]) -> QMessageBox:
    """A non-blocking Discard / Keep editing question; ``answered(True)`` when discarding."""
    box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes", question,
                      QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel, parent)
    box.setObjectName("confirmDiscard")
    box.button(QMessageBox.StandardButton.Cancel).setText("&Keep editing")
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    named(box, "Unsaved changes")
    box.finished.connect(lambda _r: answered(box.clickedButton() is box.button(QMessageBox.StandardButton.Discard)))
    box.open()
    return box
