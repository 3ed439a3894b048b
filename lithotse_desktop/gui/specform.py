"""The aggregate form: a derivative spec built from the input's real columns, with a live preview.

Inputs are the streams and derivatives that hold data, each with its record count. Picking one
reads a sample of it (:mod:`.preview`): its columns with their types, which of them hold dates
(only those are offered as the date field) and which hold coded concepts (offered, with the code
systems seen in them, for a code dimension). Every change to a field recomputes the first rows
of the result over that sample shortly after, exactly as a build would compute them, small-cell
suppression included (as Power Query shows each step). Saving runs the core's ``add_spec``
(every check a build would make) off the GUI thread, and a
:class:`~lithotse_desktop.derive.spec.SpecError` is shown next to the field its ``path`` names.
Closing with unsaved changes asks first.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..derive.catalog import Catalog
from ..derive.inputs import resolve_stream
from ..derive.service import add_spec
from ..derive.spec import GRAINS
from ..errors import LithotseError
from ..raw.sources import make_connector
from ..workspace import Workspace
from . import jobs
from .arrowmodel import ArrowTableModel
from .common import (
    ErrorLabel,
    compact_table,
    confirm_discard,
    dialog_buttons,
    error_text,
    fit_columns,
    labelled_row,
    named,
    scroll_area,
    type_word,
)
from .preview import Sample, load_sample, preview_aggregate, stream_records
from .specrows import ColumnCombo, Columns, FilterRow, GroupRow, MeasureRow, RowBox, RowList

NO_DATE = "(none)"
ROW_PATH = re.compile(r"^(group_by|measures|filters)\[(\d+)\](?:\.(\w+))?")
PREVIEW_DELAY_MS = 400
GRAIN_WORDS = {"day": "day", "week": "week (Monday to Sunday)", "month": "month", "quarter": "quarter",
               "year": "year", "none": "no time split (one total)"}


@dataclass
class InputOption:
    """One thing a derivative can read: a source's stream, or another derivative, with its size."""

    label: str
    item: dict
    date_field: str | None = None
    problem: str = ""
    rows: int | None = None


def list_inputs(ws: Workspace, streams_only: bool = False, keep: dict | None = None) -> list[InputOption]:
    """The streams (asking each connector) and, unless ``streams_only``, derivatives that hold data.

    A stream is listed with the records landed for it and a derivative with its rows; those
    without any are left out (a FHIR source offers every resource type, most of them empty),
    except ``keep``, the input of a spec being edited. A source whose connector cannot list its
    streams is kept as one disabled entry saying why, so the form explains instead of omitting it.
    """
    options: list[InputOption] = []
    counts = stream_records(ws)
    for src in ws.sources():
        try:
            connector = make_connector(ws, src.name)
            streams = connector.streams()
        except Exception as exc:  # a broken source must not hide the others, nor its landed data
            landed = _landed_options(ws, src.name, counts, set())
            options.extend(landed or [InputOption(f"{src.name} (unavailable)", {}, None, error_text(exc))])
            continue
        for info in streams:
            item = {"source": src.name, "stream": info.name}
            rows = counts.get((src.name, info.name), 0)
            if rows or item == keep:
                options.append(InputOption(input_label(item, rows), item, info.date_field, rows=rows))
        options.extend(_landed_options(ws, src.name, counts, {info.name for info in streams}))
    if not streams_only:
        catalog = Catalog(ws)
        for name in catalog.names():
            item = {"derivative": name}
            try:
                current = catalog.current(name)
            except LithotseError:
                current = None
            rows = current.rows if current is not None else 0
            if rows or item == keep:
                options.append(InputOption(input_label(item, rows), item, rows=rows))
    return options


def _landed_options(ws: Workspace, source: str, counts: dict[tuple[str, str], int],
                    offered: set[str]) -> list[InputOption]:
    """Streams with landed records that the source no longer offers (its folder emptied or gone):
    derivatives are built from the landings, so they stay inputs."""
    options = []
    for (src, stream), rows in sorted(counts.items()):
        if src != source or stream in offered or not rows:
            continue
        item = {"source": source, "stream": stream}
        try:
            date_field = resolve_stream(ws, source, stream, with_key=False).info(ws).date_field
        except LithotseError:
            date_field = None
        options.append(InputOption(input_label(item, rows), item, date_field, rows=rows))
    return options


def input_label(item: dict, rows: int | None = None) -> str:
    size = "" if rows is None else (" (no data yet)" if not rows else
                                    f" ({rows:,} {'row' if 'derivative' in item else 'record'}{'s' * (rows != 1)})")
    if "derivative" in item:
        return f"derivative {item['derivative']}{size}"
    return f"{item.get('source')} › {item.get('stream')}{size}"


class AggregateDialog(QDialog):
    """Create or edit an aggregate; ``saved`` carries the derivative's name once the core accepted it."""

    saved = Signal(str)
    schemaLoaded = Signal()
    previewed = Signal(str)

    def __init__(self, ws: Workspace, parent: QWidget | None = None, spec: dict | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.editing = spec is not None
        self.base = copy.deepcopy(spec) if spec else {}
        self.sample: Sample | None = None
        self.schema_known = False
        self.options: list[InputOption] = []
        self._schema_ticket = 0
        self._preview_ticket = 0
        self.save_job: jobs.Job | None = None
        self.preview_job: jobs.Job | None = None
        self._clean: str | None = None
        self._confirm: QMessageBox | None = None
        self.setWindowTitle(f"Edit aggregate {spec['name']}" if spec else "New aggregate")
        named(self, self.windowTitle())

        self.name_edit = named(QLineEdit(self.base.get("name", "")), "Derivative name",
                               "A letter, then letters, digits or _ ; used in formulas and files")
        self.name_edit.setReadOnly(self.editing)
        self.name_edit.setPlaceholderText("e.g. visits_by_department")
        self.input_box = named(QComboBox(), "Input", "The data to aggregate: a source's stream or a derivative")
        self.input_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.input_box.setMinimumContentsLength(18)
        self.input_box.currentIndexChanged.connect(self._input_changed)
        self.schema_note = named(QLabel("Loading inputs…"), "Input columns")
        self.schema_note.setWordWrap(True)
        self.date_field = ColumnCombo("Date field", "The date each record counts on; periods come from it")
        self.grain = named(QComboBox(), "Time grain", "One row per day, week, month … or none")
        for grain in GRAINS:
            self.grain.addItem(GRAIN_WORDS.get(grain, grain), grain)
        self.grain.setCurrentIndex(max(0, self.grain.findData(self.base.get("grain", "month"))))
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

        self.group_rows = RowList("Add &group-by", "group-by", lambda n: self._watch(GroupRow(n, self.known)))
        self.measure_rows = RowList("Add &measure", "measure",
                                    lambda n: self._watch(MeasureRow(n, self.columns)))
        self.filter_rows = RowList("Add &filter", "filter", lambda n: self._new_filter(n))
        self.row_lists: dict[str, RowList[Any]] = {"group_by": self.group_rows, "measures": self.measure_rows,
                                                   "filters": self.filter_rows}
        for rows in self.row_lists.values():
            rows.changed.connect(self.schedule_preview)

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

        self.preview_model = ArrowTableModel(parent=self)
        self.preview = named(QTableView(), "Result preview", "The first rows of the result, over a sample")
        self.preview.setModel(self.preview_model)
        compact_table(self.preview)
        self.preview_note = named(QLabel("The first rows of the result show here as you fill in the form."),
                                  "Preview status")
        self.preview_note.setWordWrap(True)
        self.preview_error = ErrorLabel("Preview")
        preview_box = QGroupBox("Preview")
        pv = QVBoxLayout(preview_box)
        pv.addWidget(self.preview_note)
        pv.addWidget(self.preview_error)
        pv.addWidget(self.preview, 1)
        self.preview_timer = QTimer(self)
        self.preview_timer.setSingleShot(True)
        self.preview_timer.setInterval(PREVIEW_DELAY_MS)
        self.preview_timer.timeout.connect(self.run_preview)

        self.buttons, self.save_button = dialog_buttons(
            self, QDialogButtonBox.StandardButton.Save, "&Save && build", "Save and build",
            "Check the spec against the real data, store it, build it", "Cancel editing the derivative", self.save)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll_area(inner, "Aggregate form"))
        split.addWidget(preview_box)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        outer = QVBoxLayout(self)
        outer.addWidget(split, 1)
        outer.addWidget(self.errors["spec"])
        outer.addWidget(self.buttons)
        self.resize(1100, 660)
        split.setSizes([640, 440])

        for widget in (self.date_field, self.grain):
            widget.currentIndexChanged.connect(self.schedule_preview)
        for edit in (self.from_edit, self.to_edit):
            edit.textChanged.connect(self.schedule_preview)
        self.suppress.valueChanged.connect(self.schedule_preview)
        self._fill_from_spec()
        self._load_inputs()

    def _watch(self, row: RowBox) -> Any:
        """Recompute the preview whenever any editor of a row changes."""
        for combo in row.findChildren(QComboBox):
            combo.currentIndexChanged.connect(self.schedule_preview)
            combo.editTextChanged.connect(self.schedule_preview)
        for edit in row.findChildren(QLineEdit):
            edit.textChanged.connect(self.schedule_preview)
        for spin in row.findChildren(QAbstractSpinBox):
            spin.editingFinished.connect(self.schedule_preview)
        return row

    def _new_filter(self, number: int) -> FilterRow:
        row = FilterRow(number, self.column_types)
        row.column.fill(self.columns())
        return self._watch(row)

    # --- columns ------------------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema | None:
        return self.sample.schema if self.sample is not None else None

    def columns(self) -> list[tuple[str, pa.DataType | None]]:
        if self.sample is None:
            return []
        return [(f.name, f.type) for f in self.sample.schema]

    def known(self) -> Columns:
        sample = self.sample
        if sample is None:
            return Columns()
        return Columns(self.columns(), list(sample.date_columns), list(sample.code_columns), list(sample.systems))

    def column_types(self) -> dict[str, pa.DataType | None]:
        return dict(self.columns())

    def _fill_from_spec(self) -> None:
        for d in self.base.get("group_by", []):
            self.group_rows.add(self._watch(GroupRow(len(self.group_rows.rows) + 1, self.known, kept=d)))
        for m in self.base.get("measures", []) or [{"fn": "count", "as": "n"}]:
            row = self.measure_rows.add()
            row.set_measure(m)
        for f in self.base.get("filters", []):
            self.filter_rows.add().set_filter(f)

    def _load_inputs(self) -> None:
        job = jobs.Job(list_inputs, self.ws, keep=self.base.get("input"), with_progress=False)
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
            self.schema_note.setText("Nothing to aggregate yet: import a source on the Sources && Import page "
                                     "first.".replace("&&", "&"))
            self.schema_known = True
            self.schemaLoaded.emit()
            return
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
        self.schema_note.setText(f"Reading a sample of {input_label(item)}…")
        job = jobs.Job(load_sample, self.ws, item, with_progress=False)
        job.signals.finished.connect(lambda sample: self._sample_loaded(ticket, item, sample))
        job.signals.failed.connect(lambda exc, _t: self._sample_failed(ticket, exc))
        jobs.start(job)

    def _sample_failed(self, ticket: int, exc: BaseException) -> None:
        if ticket == self._schema_ticket:
            self.sample, self.schema_known = None, True
            self.schema_note.setText(f"Cannot read this input: {error_text(exc)}")
            self._refill_columns(None)
            self.schemaLoaded.emit()

    def _sample_loaded(self, ticket: int, item: dict, sample: Sample | None) -> None:
        if ticket != self._schema_ticket:
            return
        self.sample, self.schema_known = sample, True
        if sample is None:
            self.schema_note.setText("No data for this input yet: type column names, or import first to "
                                     "choose them from the real data.")
        else:
            kinds = ", ".join(f"{f.name} ({type_word(f.type)})" for f in sample.schema)
            self.schema_note.setText(f"{len(sample.schema)} columns: {kinds}.")
            self.schema_note.setToolTip(kinds)
        option = next((o for o in self.options if o.item == item), None)
        self._refill_columns(option.date_field if option else None)
        if self._clean is None:
            self._clean = self._snapshot()
        self.schemaLoaded.emit()
        self.run_preview()

    def _refill_columns(self, stream_date: str | None) -> None:
        cols = self.columns()
        dates = self.sample.date_columns if self.sample is not None else []
        keep = self.base.get("date_field") or self.date_field.column() or stream_date
        if keep not in dates and stream_date in dates:
            keep = stream_date
        by_name = dict(cols)
        self.date_field.fill([(n, by_name.get(n)) for n in dates], blank=NO_DATE)
        self.date_field.choose(keep if keep in dates else (dates[0] if dates else None))
        for group in self.group_rows.rows:
            group.refill()
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
        spec["grain"] = self.grain.currentData()
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

    def _snapshot(self) -> str:
        return json.dumps(self.spec(), sort_keys=True, default=str)

    # --- live preview ---------------------------------------------------------------------
    def schedule_preview(self, *_args: Any) -> None:
        if self.sample is not None:
            self.preview_timer.start()

    def run_preview(self) -> None:
        """Compute the first rows of the result over the sample, off the GUI thread."""
        self.preview_timer.stop()
        sample = self.sample
        if sample is None:
            return
        spec = self.spec()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", spec["name"] or ""):
            spec["name"] = "preview"
        unchosen = [n for n, d in enumerate(spec["group_by"], 1) if d in ("", None)]
        spec["group_by"] = [d for d in spec["group_by"] if d not in ("", None)]
        self._preview_ticket += 1
        ticket = self._preview_ticket
        self.preview_note.setText("Computing the preview…")
        job = jobs.Job(preview_aggregate, self.ws, spec, sample, with_progress=False)
        job.signals.finished.connect(lambda table: self._previewed(ticket, table, sample, unchosen))
        job.signals.failed.connect(lambda exc, _t: self._preview_failed(ticket, exc))
        self.preview_job = job
        jobs.start(job)

    def _previewed(self, ticket: int, table: pa.Table, sample: Sample, unchosen: list[int]) -> None:
        if ticket != self._preview_ticket:
            return
        self.preview_job = None
        self.preview_error.show_error("")
        self.preview_model.set_table(table)
        fit_columns(self.preview)
        over = (f"the first {sample.table.num_rows:,} of {sample.total:,} records"
                if sample.total and sample.total > sample.table.num_rows else f"all {sample.table.num_rows:,} records")
        note = f"First {table.num_rows} row(s) of the result over {over}; Save && build computes it all."
        if unchosen:
            note += f" Choose a column for group-by {', '.join(map(str, unchosen))}."
        self.preview_note.setText(note.replace("&&", "&"))
        self.previewed.emit("")

    def _preview_failed(self, ticket: int, exc: BaseException) -> None:
        if ticket != self._preview_ticket:
            return
        self.preview_job = None
        self.preview_model.set_table(pa.table({}))
        self.preview_note.setText("No preview while the form has a problem:")
        self.preview_error.show_error(error_text(exc))
        self.previewed.emit(error_text(exc))

    # --- errors ---------------------------------------------------------------------------
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

    # --- save and close -------------------------------------------------------------------
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
        self._clean = self._snapshot()
        self.saved.emit(spec["name"])
        self.accept()

    def _save_failed(self, exc: BaseException, _trace: str) -> None:
        self.save_job = None
        self.save_button.setEnabled(True)
        if isinstance(exc, LithotseError):
            self.show_spec_error(exc)
        else:
            self.errors["spec"].show_error(error_text(exc))

    def has_changes(self) -> bool:
        return self._clean is not None and self._snapshot() != self._clean

    def done(self, result: int) -> None:
        """Closing (saved or not) makes late sample and preview results arrive to nothing."""
        self._schema_ticket += 1
        self._preview_ticket += 1
        self.preview_timer.stop()
        super().done(result)

    def reject(self) -> None:
        """Cancel, Escape or the close button: ask before throwing edits away."""
        if not self.has_changes() or self._confirm is not None:
            super().reject()
            return
        self._confirm = confirm_discard(self, "Discard the changes to this aggregate?", self._discard_answered)

    def _discard_answered(self, discard: bool) -> None:
        self._confirm = None
        if discard:
            self._clean = None
            super().reject()
