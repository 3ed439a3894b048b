"""Finding text a person cannot read in full: labels, buttons, read-only fields, combo boxes, tabs,
table headers and cells whose text needs more room than the widget has (and so is clipped or
shortened with "…"). The screenshot run and the tests call :func:`cut_off_texts` on every page.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtGui
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QFontMetrics, QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QCalendarWidget,
    QComboBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QStyle,
    QStyleOptionComboBox,
    QTabBar,
    QTextEdit,
    QWidget,
)

SLACK = 1  # a pixel of rounding
ROWS_CHECKED = 60


@dataclass(frozen=True)
class CutOff:
    """One text that does not fit: where, what, and how many pixels it needs and has."""

    widget: str
    text: str
    needed: int
    available: int

    def __str__(self) -> str:
        return f"{self.widget}: {self.text!r} needs {self.needed} px, has {self.available}"


def _name(widget: QWidget) -> str:
    return f"{type(widget).__name__} {widget.accessibleName() or widget.objectName() or ''}".strip()


def _plain(text: str) -> str:
    if QtGui.Qt.mightBeRichText(text):  # a QtGui function, kept in PySide6's QtGui.Qt namespace
        doc = QTextDocument()
        doc.setHtml(text)
        return doc.toPlainText()
    return text


def _widest(metrics: QFontMetrics, text: str) -> int:
    return max((metrics.horizontalAdvance(line) for line in text.replace("&&", "&").split("\n")), default=0)


def _mnemonic_width(metrics: QFontMetrics, text: str) -> int:
    """Width of a label text with an &-key as Qt draws it: the key letter as a run of its own, so
    no kerning across it (measuring the joined text would be a pixel or two short)."""
    parts = text.replace("&&", "\0").split("&", 1)
    if len(parts) == 1 or not parts[1]:
        return _widest(metrics, text.replace("\0", "&"))
    before, after = parts[0].replace("\0", "&"), parts[1].replace("\0", "&")
    return sum(metrics.horizontalAdvance(part) for part in (before, after[0], after[1:]))


def _shown(widget: QWidget, root: QWidget) -> bool:
    return widget.isVisibleTo(root) and widget.width() > 0 and widget.height() > 0


def _inside_calendar(widget: QWidget) -> bool:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QCalendarWidget):
            return True
        parent = parent.parentWidget()
    return False


def _label(label: QLabel) -> list[CutOff]:
    text = label.text()
    if not text or label.pixmap() is not None and not label.pixmap().isNull():
        return []
    if label.wordWrap():
        needed = label.heightForWidth(label.width())
        if needed > label.height() + SLACK:
            return [CutOff(_name(label), _plain(text)[:60], needed, label.height())]
        return []
    metrics = label.fontMetrics()
    plain = _plain(text) if label.textFormat() != Qt.TextFormat.PlainText else text
    needed = (_mnemonic_width(metrics, plain) if label.buddy() is not None else _widest(metrics, plain))
    available = label.contentsRect().width() - 2 * max(label.margin(), 0) - max(label.indent(), 0)
    return [CutOff(_name(label), plain[:60], needed, available)] if needed > available + SLACK else []


def _button(button: QAbstractButton) -> list[CutOff]:
    if not button.text():
        return []
    needed = button.sizeHint().width()
    return [CutOff(_name(button), button.text(), needed, button.width())] if needed > button.width() + SLACK else []


def _line_edit(edit: QLineEdit) -> list[CutOff]:
    if not edit.isReadOnly() or not edit.text():
        return []
    needed = edit.fontMetrics().horizontalAdvance(edit.text()) + 10
    return [CutOff(_name(edit), edit.text()[:60], needed, edit.width())] if needed > edit.width() + SLACK else []


def _text_edit(edit: QTextEdit) -> list[CutOff]:
    """A read-only text box without a scroll bar must show its whole text."""
    if not edit.isReadOnly() or edit.verticalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff:
        return []
    doc = edit.document().clone()
    doc.setTextWidth(edit.viewport().width())
    needed = int(doc.size().height())
    has = edit.viewport().height()
    return [CutOff(_name(edit), edit.toPlainText()[:60], needed, has)] if needed > has + SLACK else []


def _combo(combo: QComboBox) -> list[CutOff]:
    text = combo.currentText()
    if not text or combo.isEditable():
        return []
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                         QStyle.SubControl.SC_ComboBoxEditField, combo)
    needed = combo.fontMetrics().horizontalAdvance(text)
    if not combo.itemIcon(combo.currentIndex()).isNull():
        needed += combo.iconSize().width() + 4
    return [CutOff(_name(combo), text[:60], needed, field.width())] if needed > field.width() + SLACK else []


def _tabs(bar: QTabBar) -> list[CutOff]:
    out = []
    for i in range(bar.count()):
        hint, rect = bar.tabSizeHint(i).width(), bar.tabRect(i).width()
        if hint > rect + SLACK:
            out.append(CutOff(_name(bar), bar.tabText(i), hint, rect))
    return out


def _header(header: QHeaderView) -> list[CutOff]:
    out: list[CutOff] = []
    if header.orientation() != Qt.Orientation.Horizontal or not header.isVisible():
        return out
    for i in range(header.count()):
        if header.isSectionHidden(i):
            continue
        needed, has = header.sectionSizeFromContents(i).width(), header.sectionSize(i)
        if needed > has + SLACK:
            text = str(header.model().headerData(i, Qt.Orientation.Horizontal) if header.model() else "")
            out.append(CutOff(_name(header.parentWidget() or header), text, needed, has))
    return out


def _cells(view: QAbstractItemView) -> list[CutOff]:
    model = view.model()
    if model is None or not view.isVisible():
        return []
    out = []
    header = view.horizontalHeader() if hasattr(view, "horizontalHeader") else None
    if view.property("fitWidth") and header is not None and header.length() > view.viewport().width() + SLACK:
        out.append(CutOff(_name(view), "(columns wider than the view)", header.length(), view.viewport().width()))
    metrics = view.fontMetrics()
    margin = 2 * (view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1)
    columns = 1 if isinstance(view, QListView) else model.columnCount(QModelIndex())
    for row in range(min(model.rowCount(QModelIndex()), ROWS_CHECKED)):
        for column in range(columns):
            index = model.index(row, column, QModelIndex())
            text = index.data(Qt.ItemDataRole.DisplayRole)
            if text in (None, ""):
                continue
            rect = view.visualRect(index)
            if rect.height() <= 0 or rect.top() > view.viewport().height():
                continue
            available = rect.width() if not isinstance(view, QListView) else view.viewport().width()
            lines = str(text).split("\n")
            needed = max(metrics.horizontalAdvance(line) for line in lines) + margin
            if isinstance(view, QListView):
                icon = view.iconSize().width() + 6 if index.data(Qt.ItemDataRole.DecorationRole) is not None else 0
                check = 20 if index.data(Qt.ItemDataRole.CheckStateRole) is not None else 0
                needed += icon + check
            if needed > available + SLACK:
                out.append(CutOff(_name(view), str(text)[:60], needed, available))
    return out


def cut_off_texts(root: QWidget) -> list[CutOff]:
    """Every visible text under ``root`` that needs more width than it has."""
    found: list[CutOff] = []
    for widget in [root, *root.findChildren(QWidget)]:
        if not _shown(widget, root) or _inside_calendar(widget):
            continue
        if isinstance(widget, QLabel):
            found += _label(widget)
        elif isinstance(widget, QAbstractButton):
            found += _button(widget)
        elif isinstance(widget, QLineEdit):
            found += _line_edit(widget)
        elif isinstance(widget, QComboBox):
            found += _combo(widget)
        elif isinstance(widget, QTabBar):
            found += _tabs(widget)
        elif isinstance(widget, QTextEdit):
            found += _text_edit(widget)
        elif isinstance(widget, QHeaderView):
            found += _header(widget)
        elif isinstance(widget, QAbstractItemView):
            found += _cells(widget)
    return found
