"""The aggregate form: a derivative spec built from combos filled with the input's real columns.

Columns come from :func:`~lithotse_desktop.derive.inputs.sample_schema` (the first landed
batch of the chosen stream, or the chosen derivative's current version), so a person picks
names that exist with the types they have; measure columns are filtered by what the function
accepts. Saving runs the core's ``add_spec`` (every check a build would make) off the GUI
thread, and a :class:`~lithotse_desktop.derive.spec.SpecError` is shown next to the field its
``path`` names.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from ..derive.catalog import Catalog
from ..derive.inputs import sample_schema
from ..derive.service import add_spec
from ..derive.spec import FILTER_OPS, GRAINS, MEASURES
from ..errors import LithotseError
from ..raw.sources import make_connector
from ..workspace import Workspace
from . import jobs
from .common import error_text, named, scroll_area

NUMERIC_FNS = ("sum", "mean", "median", "percentile")
ALL_RECORDS = "(all records)"
NO_DATE = "(none)"
ROW_PATH = re.compile(r"^(group_by|measures|filters)\[(\d+)\](?:\.(\w+))?")


@dataclass
class InputOption:
    """One thing a derivative can read: a source's stream, or another derivative."""

    label: str
    item: dict
    date_field: str | None = None
    problem: str = ""


def list_inputs(ws: Workspace, streams_only: bool = False) -> list[InputOption]:
    """Every source's streams (asking each connector) and, unless ``streams_only``, derivatives.

    A source whose connector cannot list its streams is kept as one disabled entry saying
    why, so the form explains instead of silently omitting it.
    """
    options: list[InputOption] = []
    for src in ws.sources():
        try:
            streams = make_connector(ws, src.name).streams()
        except Exception as exc:  # a broken source must not hide the others
            options.append(InputOption(f"{src.name} (unavailable)", {}, None, error_text(exc)))
            continue
        for info in streams:
            options.append(InputOption(f"{src.name} › {info.name}", {"source": src.name, "stream": info.name},
                                       info.date_field))
    if not streams_only:
        for name in Catalog(ws).names():
            options.append(InputOption(f"derivative: {name}", {"derivative": name}))
    return options


def input_label(item: dict) -> str:
    if "derivative" in item:
        return f"derivative: {item['derivative']}"
    return f"{item.get('source')} › {item.get('stream')}"


def is_numeric(typ: pa.DataType | None) -> bool:
    return typ is not None and (pa.types.is_integer(typ) or pa.types.is_floating(typ)
                                or pa.types.is_decimal(typ))


def is_dateish(typ: pa.DataType | None) -> bool:
    return typ is not None and (pa.types.is_date(typ) or pa.types.is_timestamp(typ)
                                or pa.types.is_string(typ) or pa.types.is_large_string(typ))


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
        dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
        pal = self.palette()
        pal.setColor(QPalette.ColorRole.WindowText, Qt.GlobalColor.red if dark else Qt.GlobalColor.darkRed)
        self.setPalette(pal)

    def show_error(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))


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


class RowList(QWidget):
    """A vertical list of rows with an Add button."""

    def __init__(self, add_text: str, what: str, make: Callable[[int], RowBox]) -> None:
        super().__init__()
        self._make = make
        self.rows: list[RowBox] = []
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

    def add(self) -> RowBox:
        row = self._make(len(self.rows) + 1)
        row.removeRequested.connect(self._remove)
        self.rows.append(row)
        self.box.addWidget(row)
        return row

    def _remove(self, row: RowBox) -> None:
        self.rows.remove(row)
        self.box.removeWidget(row)
        row.deleteLater()

    def clear(self) -> None:
        for row in list(self.rows):
            self._remove(row)


class AggregateDialog(QDialog):
    """Create or edit an aggregate; ``saved`` carries the derivative's name once the core accepted it."""

    saved = Signal(str)
    schemaLoaded = Signal()

    def __init__(self, ws: Workspace, parent: QWidget | None = None, spec: dict | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.editing = spec is not None
        self.base = copy.deepcopy(spec) if spec else {}
        self.schema: pa.Schema | None = None
        self.schema_known = False
        self.options: list[InputOption] = []
        self._schema_ticket = 0
        self.save_job: jobs.Job | None = None
        self.setWindowTitle(f"Edit aggregate {spec['name']}" if spec else "New aggregate")
        named(self, self.windowTitle())

        self.name_edit = named(QLineEdit(self.base.get("name", "")), "Derivative name",
                               "A letter, then letters, digits or _ ; used in formulas and files")
        self.name_edit.setReadOnly(self.editing)
        self.input_box = named(QComboBox(), "Input", "The stream (or derivative) to aggregate")
        self.input_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.input_box.setMinimumContentsLength(18)
        self.input_box.currentIndexChanged.connect(self._input_changed)
        self.schema_note = named(QLabel("Loading inputs…"), "Input columns")
        self.schema_note.setWordWrap(True)
        self.date_field = ColumnCombo("Date field", "The date each record counts on; periods come from it")
        self.grain = named(QComboBox(), "Time grain", "One row per day, week, month … or none")
        self.grain.addItems(GRAINS)
        self.grain.setCurrentText(self.base.get("grain", "month"))
        self.from_edit = named(QLineEdit(self.base.get("from") or ""), "From",
                               "First day counted, YYYY-MM-DD; empty: no lower bound")
        self.to_edit = named(QLineEdit(self.base.get("to") or ""), "To",
                             "Last day counted, YYYY-MM-DD; empty: no upper bound")
        for edit in (self.from_edit, self.to_edit):
            edit.setPlaceholderText("YYYY-MM-DD (open)")
        self.suppress = named(QSpinBox(), "Suppress counts below",
                              "Cells with fewer records are hidden, with complementary suppression")
        self.suppress.setRange(0, 1_000_000)
        self.suppress.setValue(int(self.base["suppress_below"]) if self.base.get("suppress_below") is not None
                               else ws.suppress_below)

        self.group_rows = RowList("Add &group-by", "group-by", lambda n: self._new_group(n))
        self.measure_rows = RowList("Add &measure", "measure", lambda n: MeasureRow(n, self.columns))
        self.filter_rows = RowList("Add &filter", "filter", lambda n: self._new_filter(n))

        self.errors = {key: ErrorLabel(what) for key, what in (
            ("name", "Name"), ("input", "Input"), ("date_field", "Date field"), ("grain", "Grain"),
            ("from", "From"), ("to", "To"), ("suppress_below", "Suppression"), ("spec", "Spec"))}
        self.widgets: dict[str, QWidget] = {"name": self.name_edit, "input": self.input_box,
                                            "date_field": self.date_field, "grain": self.grain,
                                            "from": self.from_edit, "to": self.to_edit,
                                            "suppress_below": self.suppress}

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._row(form, "&Name *", self.name_edit, "name")
        self._row(form, "&Input *", self.input_box, "input")
        form.addRow("", self.schema_note)
        self._row(form, "&Date field", self.date_field, "date_field")
        self._row(form, "G&rain", self.grain, "grain")
        dates = QHBoxLayout()
        dates.addWidget(self.from_edit)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.to_edit)
        label = QLabel("Fro&m")
        label.setBuddy(self.from_edit)
        form.addRow(label, dates)
        form.addRow("", self.errors["from"])
        form.addRow("", self.errors["to"])
        self._row(form, "&Suppress below", self.suppress, "suppress_below")

        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addLayout(form)
        for title, rows in (("Group by", self.group_rows), ("Measures", self.measure_rows),
                            ("Filters", self.filter_rows)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(rows)
            layout.addWidget(box)
        layout.addStretch(1)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setText("&Save && build")
        named(self.save_button, "Save and build", "Check the spec against the real data, store it, build it")
        named(self.buttons.button(QDialogButtonBox.StandardButton.Cancel), "Cancel editing the derivative")
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)

        outer = QVBoxLayout(self)
        outer.addWidget(scroll_area(inner, "Aggregate form"), 1)
        outer.addWidget(self.errors["spec"])
        outer.addWidget(self.buttons)
        self.resize(760, 680)

        self._fill_from_spec()
        self._load_inputs()

    def _row(self, form: QFormLayout, text: str, widget: QWidget, key: str) -> None:
        label = QLabel(text)
        label.setBuddy(widget)
        form.addRow(label, widget)
        form.addRow("", self.errors[key])

    def _new_group(self, number: int, kept: dict | None = None) -> GroupRow:
        row = GroupRow(number, kept)
        row.column.fill(self.columns())
        return row

    def _new_filter(self, number: int) -> FilterRow:
        row = FilterRow(number, self.column_types)
        row.column.fill(self.columns())
        return row

    # --- columns ------------------------------------------------------------------------
    def columns(self) -> list[tuple[str, pa.DataType | None]]:
        if self.schema is None:
            return []
        return [(f.name, f.type) for f in self.schema]

    def column_types(self) -> dict[str, pa.DataType | None]:
        return dict(self.columns())

    def _fill_from_spec(self) -> None:
        for d in self.base.get("group_by", []):
            if isinstance(d, str):
                self.group_rows.add().column.choose(d)
            else:
                self._kept_group(d)
        for m in self.base.get("measures", []) or [{"fn": "count", "as": "n"}]:
            row = self.measure_rows.add()
            row.set_measure(m)
        for f in self.base.get("filters", []):
            self.filter_rows.add().set_filter(f)

    def _kept_group(self, d: dict) -> GroupRow:
        row = GroupRow(len(self.group_rows.rows) + 1, kept=d)
        row.removeRequested.connect(self.group_rows._remove)
        self.group_rows.rows.append(row)
        self.group_rows.box.addWidget(row)
        return row

    def _load_inputs(self) -> None:
        job = jobs.Job(list_inputs, self.ws, with_progress=False)
        job.signals.finished.connect(self._inputs_loaded)
        job.signals.failed.connect(lambda exc, _t: self.schema_note.setText(
            f"Cannot list inputs: {error_text(exc)}"))
        jobs.start(job)

    def _inputs_loaded(self, options: list[InputOption]) -> None:
        own = self.base.get("name")
        self.options = [o for o in options if o.item.get("derivative") != own or own is None]
        self.input_box.blockSignals(True)
        self.input_box.clear()
        for option in self.options:
            self.input_box.addItem(option.label, option.item)
            if option.problem:
                index = self.input_box.count() - 1
                self.input_box.setItemData(index, option.problem, Qt.ItemDataRole.ToolTipRole)
        wanted = self.base.get("input")
        if wanted is not None and self.input_box.findData(wanted) < 0:
            self.input_box.addItem(input_label(wanted) + " (missing)", wanted)
        self.input_box.setCurrentIndex(max(0, self.input_box.findData(wanted)) if wanted else 0)
        self.input_box.blockSignals(False)
        if not self.options:
            self.schema_note.setText("No inputs yet: add a source and import data first.")
        self._input_changed(self.input_box.currentIndex())

    def select_input(self, item: dict) -> None:
        self.input_box.setCurrentIndex(self.input_box.findData(item))

    def _input_changed(self, index: int) -> None:
        item = self.input_box.itemData(index) if index >= 0 else None
        if not item:
            return
        self._schema_ticket += 1
        ticket = self._schema_ticket
        self.schema_known = False
        self.schema_note.setText(f"Reading the columns of {input_label(item)}…")
        job = jobs.Job(sample_schema, self.ws, Catalog(self.ws), item, with_progress=False)
        job.signals.finished.connect(lambda schema: self._schema_loaded(ticket, item, schema))
        job.signals.failed.connect(lambda exc, _t: self._schema_failed(ticket, exc))
        jobs.start(job)

    def _schema_failed(self, ticket: int, exc: BaseException) -> None:
        if ticket == self._schema_ticket:
            self.schema, self.schema_known = None, True
            self.schema_note.setText(f"Cannot read this input's columns: {error_text(exc)}")
            self._refill_columns(None)
            self.schemaLoaded.emit()

    def _schema_loaded(self, ticket: int, item: dict, schema: pa.Schema | None) -> None:
        if ticket != self._schema_ticket:
            return
        self.schema, self.schema_known = schema, True
        if schema is None:
            self.schema_note.setText("No data landed for this input yet: type column names, or import "
                                     "first to choose them from the real data.")
        else:
            cols = ", ".join(f"{f.name} ({f.type})" for f in schema)
            self.schema_note.setText(f"{len(schema)} columns from the landed data: {cols}")
        option = next((o for o in self.options if o.item == item), None)
        self._refill_columns(option.date_field if option else None)
        self.schemaLoaded.emit()

    def _refill_columns(self, stream_date: str | None) -> None:
        cols = self.columns()
        keep = self.base.get("date_field") or stream_date or self.date_field.column()
        self.date_field.fill([(n, t) for n, t in cols if is_dateish(t)], blank=NO_DATE)
        self.date_field.choose(keep)
        for row in self.group_rows.rows:
            if row.kept is None:
                row.column.fill(cols)
        for row in self.measure_rows.rows:
            row.refill()
        for row in self.filter_rows.rows:
            row.column.fill(cols)

    # --- the spec -------------------------------------------------------------------------
    def spec(self) -> dict:
        spec = copy.deepcopy(self.base)
        spec.update(name=self.name_edit.text().strip(), kind="aggregate")
        spec["input"] = self.input_box.currentData() or {}
        date_field = self.date_field.column()
        if date_field:
            spec["date_field"] = date_field
        else:
            spec.pop("date_field", None)
        spec["grain"] = self.grain.currentText()
        for key, edit in (("from", self.from_edit), ("to", self.to_edit)):
            text = edit.text().strip()
            if text:
                spec[key] = text
            else:
                spec.pop(key, None)
        spec["group_by"] = [row.value() or "" for row in self.group_rows.rows]
        spec["measures"] = [row.value() for row in self.measure_rows.rows]
        filters = [row.value() for row in self.filter_rows.rows]
        if filters:
            spec["filters"] = filters
        else:
            spec.pop("filters", None)
        spec["suppress_below"] = self.suppress.value()
        return spec

    def clear_errors(self) -> None:
        for label in self.errors.values():
            label.show_error("")
        for rows in (self.group_rows, self.measure_rows, self.filter_rows):
            rows.error.show_error("")
            for row in rows.rows:
                row.error.show_error("")

    def show_spec_error(self, exc: LithotseError) -> QWidget:
        """Put the message next to the field the error's path names; returns that field."""
        self.clear_errors()
        path = getattr(exc, "path", "") or ""
        message = str(exc)
        reason = message[len(path) + 2:] if path and message.startswith(f"{path}: ") else message
        match = ROW_PATH.match(path)
        if match:
            rows = {"group_by": self.group_rows, "measures": self.measure_rows,
                    "filters": self.filter_rows}[match.group(1)]
            index = int(match.group(2))
            if index < len(rows.rows):
                row = rows.rows[index]
                row.error.show_error(reason)
                widget = row.focus_part(match.group(3))
                widget.setFocus()
                return widget
        head = path.split(".")[0].split("[")[0]
        if head in ("group_by", "measures", "filters"):
            rows = {"group_by": self.group_rows, "measures": self.measure_rows,
                    "filters": self.filter_rows}[head]
            rows.error.show_error(reason)
            rows.add_button.setFocus()
            return rows
        if head in self.errors and head != "spec":
            self.errors[head].show_error(reason)
            self.widgets[head].setFocus()
            return self.widgets[head]
        if "exists" in message and not path:
            self.errors["name"].show_error(message)
            self.name_edit.setFocus()
            return self.name_edit
        self.errors["spec"].show_error(message)
        return self.errors["spec"]

    def save(self) -> None:
        """Run ``add_spec`` off the GUI thread: it reads a sample of the input to check columns."""
        if self.save_job is not None:
            return
        self.clear_errors()
        spec = self.spec()
        self.save_button.setEnabled(False)
        self.errors["spec"].show_error("")
        job = jobs.Job(add_spec, self.ws, spec, replace=self.editing, with_progress=False)
        job.signals.finished.connect(self._saved)
        job.signals.failed.connect(self._save_failed)
        self.save_job = job
        jobs.start(job)

    def _saved(self, spec: dict) -> None:
        self.save_job = None
        self.save_button.setEnabled(True)
        self.saved.emit(spec["name"])
        self.accept()

    def _save_failed(self, exc: BaseException, _trace: str) -> None:
        self.save_job = None
        self.save_button.setEnabled(True)
        if isinstance(exc, LithotseError):
            self.show_spec_error(exc)
        else:
            self.errors["spec"].show_error(error_text(exc))
