"""The rows of the aggregate form: group-by columns, measures and filters, each a removable row.

Each row reads and writes its part of a derivative spec (``value`` / ``set_…``) and says which
of its editors a spec error's path points at (``focus_part``), so the dialog can put the
message next to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
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
from .common import ErrorLabel, named, type_word

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
                self.setItemData(self.count() - 1, type_word(typ), Qt.ItemDataRole.ToolTipRole)
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


@dataclass
class Columns:
    """What the form knows of the input: every column with its type, and which hold dates or coded
    concepts (with the code systems seen in them)."""

    all: list[tuple[str, pa.DataType | None]] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)


DIMENSION_KINDS = {"column": "Column", "age_band": "Age band", "code": "Code"}
DEFAULT_BANDS = "0, 18, 45, 65, 85"
CHOOSE = "(choose a column)"


def parse_bands(text: str) -> list[int] | str:
    """"0, 18, 45" as [0, 18, 45]; the text itself when a part is not a whole number (the spec's
    check then names the field)."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        return [int(p) for p in parts]
    except ValueError:
        return text


class GroupRow(RowBox):
    """One dimension: a column's values, age bands from a birth date, or the codes of one code
    system in a coded column; the kind is picked in the row itself."""

    def __init__(self, number: int, columns: Callable[[], Columns], kept: Any = None) -> None:
        super().__init__(f"group-by {number}")
        self._columns = columns
        self.kind = named(QComboBox(), f"Group by {number} kind",
                          "A column's values, age bands from a birth date, or codes of one code system")
        self.kind.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        for key, text in DIMENSION_KINDS.items():
            self.kind.addItem(text, key)
        self.column = ColumnCombo(f"Group by column {number}", "Split the counts by this column's values")
        self.birth = ColumnCombo(f"Group by {number} birth date", "The birth date; age is counted at each "
                                 "record's date")
        self.bands = named(QLineEdit(DEFAULT_BANDS), f"Group by {number} age bands",
                           "Lower bounds of the bands in whole years: 0, 18, 45 gives 0-17, 18-44, 45+")
        self.bands.setMinimumWidth(self.bands.fontMetrics().horizontalAdvance(DEFAULT_BANDS + ", 100") + 16)
        self.code_column = ColumnCombo(f"Group by {number} coded column",
                                       "A column holding coded concepts (FHIR CodeableConcept)")
        self.system = named(QComboBox(), f"Group by {number} code system", "The code system whose codes to keep")
        self.system.setEditable(True)
        self.system.setMinimumContentsLength(16)
        self.system.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.alias = named(QLineEdit(), f"Group by {number} output name", "The output column's name")
        self.alias.setPlaceholderText("output name")
        self._alias_typed = False
        self.alias.textEdited.connect(lambda _t: setattr(self, "_alias_typed", True))
        self._column_alias: str | None = None
        self.row.addWidget(self.kind)
        for widget in (self.column, self.birth, self.code_column):
            self.row.addWidget(widget, 2)
        self.row.addWidget(self.bands, 1)
        self.row.addWidget(self.system, 2)
        self.as_label = QLabel("as")
        self.row.addWidget(self.as_label)
        self.row.addWidget(self.alias, 1)
        self.finish()
        self.kind.currentIndexChanged.connect(lambda _i: self._kind_changed())
        self.system.currentTextChanged.connect(lambda _t: self._suggest_alias())
        self.refill()
        if kept is not None:
            self.set_value(kept)
        self._kind_changed()

    def current_kind(self) -> str:
        return self.kind.currentData()

    def _kind_changed(self) -> None:
        kind = self.current_kind()
        shown: list[tuple[QWidget, bool]] = [
            (self.column, kind == "column"), (self.birth, kind == "age_band"), (self.bands, kind == "age_band"),
            (self.code_column, kind == "code"), (self.system, kind == "code"),
            (self.as_label, kind != "column"), (self.alias, kind != "column")]
        for widget, visible in shown:
            widget.setVisible(visible)
        self._suggest_alias()

    def refill(self) -> None:
        cols = self._columns()
        self.column.fill(cols.all, blank=CHOOSE)
        by_name = dict(cols.all)
        self.birth.fill([(n, by_name.get(n)) for n in cols.dates], blank=CHOOSE if not cols.dates else None)
        coded = cols.codes or [n for n, t in cols.all if t is None or pa.types.is_string(t)
                               or pa.types.is_large_string(t)]
        self.code_column.fill([(n, by_name.get(n)) for n in coded])
        keep = self.system.currentText()
        self.system.blockSignals(True)
        self.system.clear()
        from .preview import KNOWN_SYSTEMS, system_label

        for system in dict.fromkeys([*cols.systems, *KNOWN_SYSTEMS]):
            self.system.addItem(system_label(system), system)
        if keep:
            index = self.system.findData(keep)
            if index >= 0:
                self.system.setCurrentIndex(index)
            else:
                self.system.setEditText(keep)
        self.system.blockSignals(False)

    def chosen_system(self) -> str:
        text = self.system.currentText().strip()
        index = self.system.findText(text)
        return self.system.itemData(index) if index >= 0 else text

    def _suggest_alias(self) -> None:
        if self._alias_typed:
            return
        kind = self.current_kind()
        if kind == "age_band":
            self.alias.setText("age_band")
        elif kind == "code":
            from .preview import KNOWN_SYSTEMS

            name = KNOWN_SYSTEMS.get(self.chosen_system(), "code")
            self.alias.setText(re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "code")

    def set_value(self, d: Any) -> None:
        if isinstance(d, str):
            self.kind.setCurrentIndex(self.kind.findData("column"))
            self.column.choose(d)
            return
        if not isinstance(d, dict):
            return
        if "age_band" in d:
            self.kind.setCurrentIndex(self.kind.findData("age_band"))
            band = d["age_band"] if isinstance(d["age_band"], dict) else {}
            self.birth.choose(band.get("birth_date"))
            self.bands.setText(", ".join(str(b) for b in band.get("bands", [0, 18, 45, 65, 85])))
        elif "code" in d:
            self.kind.setCurrentIndex(self.kind.findData("code"))
            code = d["code"] if isinstance(d["code"], dict) else {}
            self.code_column.choose(code.get("column"))
            system = str(code.get("system", ""))
            index = self.system.findData(system)
            if index >= 0:
                self.system.setCurrentIndex(index)
            else:
                self.system.setEditText(system)
        else:
            self.kind.setCurrentIndex(self.kind.findData("column"))
            self.column.choose(d.get("column"))
            self._column_alias = d.get("as")
        self.alias.setText(str(d.get("as", "")))
        self._alias_typed = True

    def value(self) -> Any:
        kind = self.current_kind()
        if kind == "age_band":
            return {"as": self.alias.text().strip(),
                    "age_band": {"birth_date": self.birth.column() or "", "bands": parse_bands(self.bands.text())}}
        if kind == "code":
            return {"as": self.alias.text().strip(),
                    "code": {"column": self.code_column.column() or "", "system": self.chosen_system()}}
        column = self.column.column()
        if self._column_alias and column:
            return {"as": self._column_alias, "column": column}
        return column

    def focus_part(self, part: str | None) -> QWidget:
        kind = self.current_kind()
        if kind == "age_band":
            return {"as": self.alias, "age_band": self.bands}.get(part or "", self.birth)
        if kind == "code":
            return {"as": self.alias}.get(part or "", self.code_column)
        return self.column


class MeasureRow(RowBox):
    """Function, column (filtered by what the function accepts), output name, and p for percentiles."""

    def __init__(self, number: int, columns: Callable[[], list[tuple[str, pa.DataType | None]]]) -> None:
        super().__init__(f"measure {number}")
        self._columns = columns
        self.fn = named(QComboBox(), f"Measure {number} function")
        self.fn.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
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
        self.op.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
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
    """A vertical list of rows of one kind with an Add button; ``changed`` when a row comes or goes."""

    changed = Signal()

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
        self.changed.emit()
        return row

    def _remove(self, row: RowT) -> None:
        self.rows.remove(row)
        self.box.removeWidget(row)
        row.deleteLater()
        self.changed.emit()

    def clear(self) -> None:
        for row in list(self.rows):
            self._remove(row)
