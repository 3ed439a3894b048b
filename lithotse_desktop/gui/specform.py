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
from typing import Any

import pyarrow as pa
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..derive.catalog import Catalog
from ..derive.inputs import sample_schema
from ..derive.service import add_spec
from ..derive.spec import GRAINS
from ..errors import LithotseError
from ..raw.sources import make_connector
from ..workspace import Workspace
from . import jobs
from .common import ErrorLabel, dialog_buttons, error_text, labelled_row, named, scroll_area
from .specrows import ColumnCombo, FilterRow, GroupRow, MeasureRow, RowList

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


def is_dateish(typ: pa.DataType | None) -> bool:
    return typ is not None and (pa.types.is_date(typ) or pa.types.is_timestamp(typ)
                                or pa.types.is_string(typ) or pa.types.is_large_string(typ))


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
        self.row_lists: dict[str, RowList[Any]] = {"group_by": self.group_rows, "measures": self.measure_rows,
                                                   "filters": self.filter_rows}

        self.errors = {key: ErrorLabel(what) for key, what in (
            ("name", "Name"), ("input", "Input"), ("date_field", "Date field"), ("grain", "Grain"),
            ("from", "From"), ("to", "To"), ("suppress_below", "Suppression"), ("spec", "Spec"))}
        self.widgets: dict[str, QWidget] = {"name": self.name_edit, "input": self.input_box,
                                            "date_field": self.date_field, "grain": self.grain,
                                            "from": self.from_edit, "to": self.to_edit,
                                            "suppress_below": self.suppress}

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        labelled_row(form, "&Name *", self.name_edit, self.errors["name"])
        labelled_row(form, "&Input *", self.input_box, self.errors["input"])
        form.addRow("", self.schema_note)
        labelled_row(form, "&Date field", self.date_field, self.errors["date_field"])
        labelled_row(form, "G&rain", self.grain, self.errors["grain"])
        dates = QHBoxLayout()
        dates.addWidget(self.from_edit)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.to_edit)
        labelled_row(form, "Fro&m", dates, self.errors["from"], buddy=self.from_edit)
        form.addRow("", self.errors["to"])
        labelled_row(form, "&Suppress below", self.suppress, self.errors["suppress_below"])

        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addLayout(form)
        for title, rows in (("Group by", self.group_rows), ("Measures", self.measure_rows),
                            ("Filters", self.filter_rows)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(rows)
            layout.addWidget(box)
        layout.addStretch(1)

        self.buttons, self.save_button = dialog_buttons(
            self, QDialogButtonBox.StandardButton.Save, "&Save && build", "Save and build",
            "Check the spec against the real data, store it, build it", "Cancel editing the derivative", self.save)

        outer = QVBoxLayout(self)
        outer.addWidget(scroll_area(inner, "Aggregate form"), 1)
        outer.addWidget(self.errors["spec"])
        outer.addWidget(self.buttons)
        self.resize(760, 680)

        self._fill_from_spec()
        self._load_inputs()

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
        return self.group_rows.add(GroupRow(len(self.group_rows.rows) + 1, kept=d))

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
        for group in self.group_rows.rows:
            if group.kept is None:
                group.column.fill(cols)
        for measure in self.measure_rows.rows:
            measure.refill()
        for condition in self.filter_rows.rows:
            condition.column.fill(cols)

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
            rows = self.row_lists[match.group(1)]
            index = int(match.group(2))
            if index < len(rows.rows):
                row = rows.rows[index]
                row.error.show_error(reason)
                widget = row.focus_part(match.group(3))
                widget.setFocus()
                return widget
        head = path.split(".")[0].split("[")[0]
        if head in ("group_by", "measures", "filters"):
            rows = self.row_lists[head]
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
