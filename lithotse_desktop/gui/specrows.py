"""The rows of the aggregate form: group-by columns, measures and filters, each a removable row.

Each row reads and writes its part of a derivative spec (``value`` / ``set_…``) and says which
of its editors a spec error's path points at (``focus_part``), so the dialog can put the
message next to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pyarrow as pa
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..derive.spec import FILTER_OPS, MEASURES
from .common import ErrorLabel, named

NUMERIC_FNS = ("sum", "mean", "median", "percentile")
ALL_RECORDS = "(all records)"


def is_numeric(typ: pa.DataType | None) -> bool:
    return typ is not None and (pa.types.is_integer(typ) or pa.types.is_floating(typ)
                                or pa.types.is_decimal(typ))


def parse_scalar(text: str, typ: pa.DataType | None) -> Any:
    """A typed filter value: numbers for numeric columns, true/false for booleans, else text."""
    text = text.strip()
    if typ is not None and pa.types.is_boolean(typ) and text.lower() in ("true", "false", "yes", "no"):
        return text.lower() in ("true", "yes")
    if typ is not None and pa.types.is_integer(typ):
        try:
            return int(text)
        except ValueError:
            return text
    if is_numeric(typ):
        try:
            return float(text)
        except ValueError:
            return text
    return text


class ColumnCombo(QComboBox):
    """A combo of input columns; editable (free text) while the input has no data to read."""

    def __init__(self, name: str, tip: str) -> None:
        super().__init__()
        named(self, name, tip)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)

    def fill(self, columns: list[tuple[str, pa.DataType | None]], *, blank: str | None = None) -> None:
        keep = self.currentText()
        self.blockSignals(True)
        self.clear()
        if blank is not None:
            self.addItem(blank, None)
        for name, typ in columns:
            self.addItem(name, name)
            if typ is not None:
                self.setItemData(self.count() - 1, str(typ), Qt.ItemDataRole.ToolTipRole)
        self.setEditable(not columns)
        index = self.findText(keep)
        if index >= 0:
            self.setCurrentIndex(index)
        elif self.isEditable():
            self.setEditText(keep if keep != blank else "")
        self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())

    def column(self) -> str | None:
        if self.isEditable():
            return self.currentText().strip() or None
        return self.currentData()

    def choose(self, name: str | None) -> None:
        index = self.findData(name) if name is not None else 0
        if index >= 0:
            self.setCurrentIndex(index)
        elif self.isEditable() and name:
            self.setEditText(name)


class RowBox(QWidget):
    """A removable row of editors with its own error line underneath."""

    removeRequested = Signal(object)

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        self.row = QHBoxLayout()
        self.row.setContentsMargins(0, 0, 0, 0)
        self.remove = named(QPushButton("Remove"), f"Remove {what}")
        self.remove.clicked.connect(lambda: self.removeRequested.emit(self))
        self.error = ErrorLabel(what)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addLayout(self.row)
        outer.addWidget(self.error)

    def finish(self) -> None:
        self.row.addWidget(self.remove)

    def focus_part(self, part: str | None) -> QWidget:
        return self


class GroupRow(RowBox):
    """A group-by column; a kept non-column dimension (age band, code) is shown read-only."""

    def __init__(self, number: int, kept: dict | None = None) -> None:
        super().__init__(f"group-by {number}")
        self.kept = kept
        self.column = ColumnCombo(f"Group by column {number}", "Split the counts by this column's values")
        if kept is not None:
            kind = "age band" if "age_band" in kept else "code" if "code" in kept else "column"
            self.row.addWidget(QLabel(f"{kept.get('as')} ({kind}, kept as written)"), 1)
            self.column.setVisible(False)
        else:
            self.row.addWidget(self.column, 1)
        self.finish()

    def value(self) -> Any:
        return self.kept if self.kept is not None else self.column.column()

    def focus_part(self, part: str | None) -> QWidget:
        return self.column if self.kept is None else self.remove


class MeasureRow(RowBox):
    """Function, column (filtered by what the function accepts), output name, and p for percentiles."""

    def __init__(self, number: int, columns: Callable[[], list[tuple[str, pa.DataType | None]]]) -> None:
        super().__init__(f"measure {number}")
        self._columns = columns
        self.fn = named(QComboBox(), f"Measure {number} function")
        self.fn.addItems(MEASURES)
        self.column = ColumnCombo(f"Measure {number} column", "The column the function reads")
        self.alias = named(QLineEdit(), f"Measure {number} output name",
                           "The output column's name (letters, digits, _)")
        self.alias.setPlaceholderText("output name")
        self._alias_typed = False
        self.alias.textEdited.connect(lambda _t: setattr(self, "_alias_typed", True))
        self.p = named(QDoubleSpinBox(), f"Measure {number} percentile",
                       "Which percentile, from 0 to 1 (0.9 is the 90th)")
        self.p.setRange(0.0, 1.0)
        self.p.setSingleStep(0.05)
        self.p.setDecimals(2)
        self.p.setValue(0.9)
        self.row.addWidget(self.fn)
        self.row.addWidget(self.column, 2)
        self.row.addWidget(QLabel("as"))
        self.row.addWidget(self.alias, 1)
        self.row.addWidget(self.p)
        self.finish()
        self.fn.currentTextChanged.connect(lambda _t: self.refill())
        self.column.currentIndexChanged.connect(lambda _i: self._suggest_alias())
        self.refill()

    def refill(self) -> None:
        fn = self.fn.currentText()
        cols = self._columns()
        if fn in NUMERIC_FNS:
            cols = [(n, t) for n, t in cols if t is None or is_numeric(t)]
        self.column.fill(cols, blank=ALL_RECORDS if fn == "count" else None)
        self.p.setVisible(fn == "percentile")
        self._suggest_alias()

    def _suggest_alias(self) -> None:
        if self._alias_typed:
            return
        fn, column = self.fn.currentText(), self.column.column()
        if fn == "count" and column is None:
            self.alias.setText("n")
        elif column:
            clean = re.sub(r"[^A-Za-z0-9_]", "_", column)
            self.alias.setText(f"{fn}_{clean}"[:63])

    def set_measure(self, m: dict) -> None:
        self.fn.setCurrentText(m.get("fn", "count"))
        self.column.choose(m.get("column"))
        if "p" in m:
            self.p.setValue(float(m["p"]))
        self.alias.setText(m.get("as", ""))
        self._alias_typed = True

    def value(self) -> dict:
        m: dict[str, Any] = {"fn": self.fn.currentText()}
        column = self.column.column()
        if column is not None:
            m["column"] = column
        m["as"] = self.alias.text().strip()
        if m["fn"] == "percentile":
            m["p"] = round(self.p.value(), 4)
        return m

    def focus_part(self, part: str | None) -> QWidget:
        return {"fn": self.fn, "as": self.alias, "p": self.p}.get(part or "", self.column)


class FilterRow(RowBox):
    """Column, operator and value; lists are typed comma-separated, values take the column's type."""

    def __init__(self, number: int, types: Callable[[], dict[str, pa.DataType | None]]) -> None:
        super().__init__(f"filter {number}")
        self._types = types
        self.column = ColumnCombo(f"Filter {number} column", "Keep only records whose column matches")
        self.op = named(QComboBox(), f"Filter {number} operator")
        self.op.addItems(FILTER_OPS)
        self.value_edit = named(QLineEdit(), f"Filter {number} value",
                                "A value; for 'in' a comma-separated list; for 'between' two values")
        self.op.currentTextChanged.connect(self._op_changed)
        self.row.addWidget(self.column, 2)
        self.row.addWidget(self.op)
        self.row.addWidget(self.value_edit, 2)
        self.finish()
        self._op_changed(self.op.currentText())

    def _op_changed(self, op: str) -> None:
        self.value_edit.setEnabled(op not in ("is null", "is not null"))
        hints = {"in": "a, b, c", "not in": "a, b, c", "between": "low, high"}
        self.value_edit.setPlaceholderText(hints.get(op, "value"))

    def set_filter(self, f: dict) -> None:
        self.column.choose(f.get("column"))
        self.op.setCurrentText(f.get("op", "="))
        value = f.get("value")
        if isinstance(value, list):
            self.value_edit.setText(", ".join(str(v) for v in value))
        elif value is not None:
            self.value_edit.setText(str(value).lower() if isinstance(value, bool) else str(value))

    def value(self) -> dict:
        column = self.column.column()
        op = self.op.currentText()
        f: dict[str, Any] = {"column": column or "", "op": op}
        if op in ("is null", "is not null"):
            return f
        typ = self._types().get(column or "")
        text = self.value_edit.text()
        if op in ("in", "not in", "between"):
            f["value"] = [parse_scalar(part, typ) for part in text.split(",") if part.strip()]
        elif op == "contains":
            f["value"] = text
        else:
            f["value"] = parse_scalar(text, typ)
        return f

    def focus_part(self, part: str | None) -> QWidget:
        return {"op": self.op, "value": self.value_edit}.get(part or "", self.column)


RowT = TypeVar("RowT", bound=RowBox)


class RowList(QWidget, Generic[RowT]):
    """A vertical list of rows of one kind with an Add button."""

    def __init__(self, add_text: str, what: str, make: Callable[[int], RowT]) -> None:
        super().__init__()
        self._make = make
        self.rows: list[RowT] = []
        self.box = QVBoxLayout()
        self.box.setContentsMargins(0, 0, 0, 0)
        self.add_button = named(QPushButton(add_text), f"Add {what}")
        self.add_button.clicked.connect(lambda: self.add())
        self.error = ErrorLabel(what)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.box)
        layout.addWidget(self.error)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addStretch(1)
        layout.addLayout(row)

    def add(self, row: RowT | None = None) -> RowT:
        """Append ``row``, or a new one from the list's factory."""
        row = row if row is not None else self._make(len(self.rows) + 1)
        row.removeRequested.connect(self._remove)
        self.rows.append(row)
        self.box.addWidget(row)
        return row

    def _remove(self, row: RowT) -> None:
        self.rows.remove(row)
        self.box.removeWidget(row)
        row.deleteLater()

    def clear(self) -> None:
        for row in list(self.rows):
            self._remove(row)
