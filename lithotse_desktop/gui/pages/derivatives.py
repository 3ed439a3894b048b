"""Derivatives: the specs in the L2 store, their current versions, building, and their data.

The list shows every derivative with its kind, current version, rows and publish time.
The selected one's current version is read off the GUI thread and shown as a chart (for a
time series), as a lazily fetched table, with its lineage (the exact landings behind it)
and its spec. New aggregates come from a form, views from a ViewDefinition editor; both
save through the core's checks and then build with progress and a Cancel button.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ... import audit
from ...derive.build import BuildResult, BuildsFailed, build, build_all
from ...derive.catalog import Catalog
from ...derive.disclosure import PUBLISHED
from ...derive.service import lineage, read_table
from ...derive.spec import dimension_alias
from ...errors import LithotseError
from ...workspace import Workspace
from .. import jobs
from ..arrowmodel import ArrowTableModel
from ..chart import TimeSeriesChart, is_time_series
from ..common import JobStrip, compact_table, error_text, fit_columns, fixed_font, named, show_error
from ..specform import AggregateDialog, input_label
from ..viewedit import ViewDialog
from ..words import build_sentence, built_text

HEADERS = ["Name", "Kind", "Reads", "Rows"]
KIND_WORDS = {"aggregate": "aggregate", "view": "view", "sql": "SQL"}


@dataclass
class DerivativeRow:
    name: str
    kind: str = ""
    input: str = ""
    version: str = ""
    rows: int | None = None
    published_at: str = ""
    spec: dict = field(default_factory=dict)
    problem: str = ""


def counting_note(lineage: dict) -> str:
    """What small-cell suppression counted for an aggregate: people, or records and why."""
    if lineage.get("counts") == "people":
        return f" Suppression counts people (distinct {', '.join(lineage.get('person_key') or [])} per cell)."
    if lineage.get("counts") == "records":
        return " Suppression counts records: the input declares no person key."
    return ""


@dataclass
class Shown:
    """What the data tabs show for one derivative: its current table and lineage, or why not."""

    name: str
    table: pa.Table | None = None
    version: str = ""
    lineage: dict | None = None
    problem: str = ""
    published: bool = False
    """Whether its class lets it out of the app (an aggregate or de-identified rows): only then
    may its chart be exported."""


def load_derivatives(ws: Workspace) -> list[DerivativeRow]:
    """Each derivative's spec and current version; an unreadable spec is listed with the reason."""
    catalog = Catalog(ws)
    out = []
    for name in catalog.names():
        row = DerivativeRow(name)
        try:
            row.spec = catalog.spec(name)
            row.kind = str(row.spec.get("kind", ""))
            inputs = row.spec.get("inputs") or {"input": row.spec.get("input") or {}}
            row.input = ", ".join(input_label(item) for item in inputs.values() if isinstance(item, dict))
            current = catalog.current(name)
        except LithotseError as exc:
            row.problem = error_text(exc)
            out.append(row)
            continue
        if current is not None:
            row.version, row.rows = current.version, current.rows
            row.published_at = (current.published_at or "").replace("T", " ")[:19]
        out.append(row)
    return out


def load_shown(ws: Workspace, name: str) -> Shown:
    """The current version's table and lineage; 'not built yet' is an answer, not an error."""
    shown = Shown(name)
    try:
        version, shown.table = read_table(ws, name)
        shown.version = version.version
        shown.published = (version.privacy or {}).get("class") in PUBLISHED
        shown.lineage = lineage(ws, name)
    except LithotseError as exc:
        shown.problem = error_text(exc)
    return shown


def dimensions_of(spec: dict, table: pa.Table) -> list[str]:
    """The columns that split lines: an aggregate's group-bys, else the text columns."""
    if spec.get("kind") == "aggregate":
        return [dimension_alias(d) for d in spec.get("group_by", [])]
    return [f.name for f in table.schema if f.name != "period"
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]


class DerivativesPage(QWidget):
    built = Signal(object)
    changed = Signal()

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.rows: list[DerivativeRow] = []
        self.job: jobs.Job | None = None
        self.list_job: jobs.Job | None = None
        self.show_job: jobs.Job | None = None
        self._again = False
        self._select_after: str | None = None
        self.shown: Shown | None = None
        self.dialog: AggregateDialog | ViewDialog | None = None
        self._chart_when_built: str | None = None  # a just-saved derivative opens on its chart

        self.new_aggregate = named(QPushButton("New &aggregate…"), "New aggregate",
                                   "Count and summarise a stream by period and dimensions")
        self.new_aggregate.clicked.connect(lambda: self.open_aggregate_form())
        self.new_view = named(QPushButton("New &view…"), "New view",
                              "Flatten FHIR resources with an SQL-on-FHIR ViewDefinition")
        self.new_view.clicked.connect(lambda: self.open_view_editor())
        self.edit_button = named(QPushButton("&Edit…"), "Edit derivative", "Change the selected spec")
        self.edit_button.clicked.connect(self.edit_selected)
        self.remove_button = named(QPushButton("Remove"), "Remove derivative",
                                   "Delete the selected spec and all its versions")
        self.remove_button.clicked.connect(self._remove_selected)
        self.build_button = named(QPushButton("&Build"), "Build derivative",
                                  "Build the selected derivative if its spec or inputs changed")
        self.build_button.clicked.connect(lambda: self.start_build(full=False))
        self.rebuild_button = named(QPushButton("Re&build"), "Rebuild derivative",
                                    "Build the selected derivative from scratch (every period)")
        self.rebuild_button.clicked.connect(lambda: self.start_build(full=True))
        self.build_all_button = named(QPushButton("Build a&ll"), "Build all derivatives",
                                      "Build every derivative that is out of date, inputs first")
        self.build_all_button.clicked.connect(self.start_build_all)
        self.refresh_button = named(QPushButton("&Refresh"), "Refresh derivatives",
                                    "Re-read specs and versions from the store")
        self.refresh_button.clicked.connect(self.refresh)
        self.strip = JobStrip("Build")
        self.strip.cancelRequested.connect(self.cancel_build)

        self.table = named(QTableWidget(0, len(HEADERS)), "Derivatives",
                           "Every derivative in the workspace; select one to see its data")
        self.table.setHorizontalHeaderLabels(HEADERS)
        compact_table(self.table)
        self.table.setProperty("fitWidth", True)
        self.table.currentCellChanged.connect(lambda row, *_: self._row_changed(row))
        self.table.cellDoubleClicked.connect(lambda *_: self.edit_selected())
        self.count = named(QLabel(""), "Derivative count")
        self.count.setWordWrap(True)

        self.chart = TimeSeriesChart()
        self.model = ArrowTableModel(parent=self)
        self.preview = named(QTableView(), "Derivative preview",
                             "The current version's rows; more load as you scroll")
        self.preview.setModel(self.model)
        compact_table(self.preview)
        self.preview.verticalHeader().setVisible(True)
        self.preview_note = named(QLabel(""), "Preview status")
        self.preview_note.setWordWrap(True)
        preview_box = QWidget()
        pv = QVBoxLayout(preview_box)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.addWidget(self.preview_note)
        pv.addWidget(self.preview, 1)
        self.lineage = named(QTreeWidget(), "Derivative lineage",
                             "The spec and the exact landings behind the current version")
        self.lineage.setHeaderLabels(["Item", "Value"])
        self.lineage.setColumnWidth(0, 260)
        self.spec_view = named(QPlainTextEdit(), "Derivative spec JSON")
        self.spec_view.setReadOnly(True)
        self.spec_view.setFont(fixed_font())
        self.spec_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.tabs = named(QTabWidget(), "Derivative details")
        self.tabs.addTab(self.chart, "&Chart")
        self.tabs.addTab(preview_box, "&Preview")
        self.tabs.addTab(self.lineage, "Li&neage")
        self.tabs.addTab(self.spec_view, "&Spec")
        self.tabs.setCurrentIndex(1)
        named(self.tabs.tabBar(), "Derivative detail tabs", "Chart, preview, lineage and spec of the selection")

        top = QHBoxLayout()
        for button in (self.new_aggregate, self.new_view, self.edit_button, self.remove_button):
            top.addWidget(button)
        top.addStretch(1)
        for button in (self.build_button, self.rebuild_button, self.build_all_button, self.refresh_button):
            top.addWidget(button)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.table, 1)
        lv.addWidget(self.count)
        splitter = self.splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([380, 720])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.strip)
        layout.addWidget(splitter, 1)
        self.strip.status.setText("Select a derivative to see it. Build updates it when its definition "
                                  "or its data changed.")
        self._enable()
        self.refresh()

    # --- the list ---------------------------------------------------------------------------
    def set_workspace(self, ws: Workspace) -> None:
        self.ws = ws
        self.shown = None
        self.model.set_table(pa.table({}))
        self.refresh()

    @property
    def busy(self) -> bool:
        return self.list_job is not None or self.show_job is not None

    def refresh(self, select: str | None = None) -> None:
        """Re-read the list off the GUI thread; a refresh asked for meanwhile runs right after."""
        if select:
            self._select_after = select
        if self.list_job is not None:
            self._again = True
            return
        self.count.setText("Loading…")
        self.list_job = jobs.Job(load_derivatives, self.ws, with_progress=False)
        self.list_job.signals.finished.connect(self._listed)
        self.list_job.signals.failed.connect(self._list_failed)
        jobs.start(self.list_job)

    def _list_done(self) -> None:
        self.list_job = None
        if self._again:
            self._again = False
            self.refresh()

    def _list_failed(self, exc: BaseException, trace: str) -> None:
        self.count.setText(f"Cannot read derivatives: {error_text(exc)}")
        show_error(self, "Cannot read derivatives", exc, trace)
        self._list_done()

    def _listed(self, rows: list[DerivativeRow]) -> None:
        wanted = self._select_after or self.selected_name()
        self._select_after = None
        self.rows = rows
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            state = "problem" if row.problem else "not built yet"
            cells = [row.name, KIND_WORDS.get(row.kind, row.kind), row.input,
                     state if row.rows is None else f"{row.rows:,}"]
            about = f"updated {row.published_at[:16]}, version {row.version[:12]}" if row.version else state
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(row.problem or (about if c in (0, 3) else text))
                if c == 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        self.table.resizeColumnsToContents()
        columns = header.length()
        header.setStretchLastSection(True)
        self.table.blockSignals(False)
        needed = columns + 2 * self.table.frameWidth() + self.table.verticalScrollBar().sizeHint().width()
        self.table.setMinimumWidth(min(needed, 560))
        total = sum(self.splitter.sizes())
        if total > 0:
            left = max(self.table.minimumWidth(), min(total // 3, total - 460))
            self.splitter.setSizes([left, total - left])
        built = sum(1 for r in rows if r.version)
        self.count.setText(f"{len(rows)} derivative(s), {built} built." if rows else
                           "No derivatives yet: click New aggregate… (counts by period and "
                           "dimension) or New view… (a flat table from FHIR resources).")
        names = [r.name for r in rows]
        target = names.index(wanted) if wanted in names else (0 if rows else -1)
        self._list_done()
        if target >= 0:
            self.table.setCurrentCell(target, 0)
        self._row_changed(target, force=True)
        self.changed.emit()

    def selected_name(self) -> str | None:
        row = self.table.currentRow()
        return self.rows[row].name if 0 <= row < len(self.rows) else None

    def select(self, name: str) -> bool:
        for r, row in enumerate(self.rows):
            if row.name == name:
                self.table.setCurrentCell(r, 0)
                return True
        return False

    def _enable(self) -> None:
        has = self.selected_name() is not None
        running = self.job is not None
        for button in (self.edit_button, self.remove_button, self.build_button, self.rebuild_button):
            button.setEnabled(has and not running)
        self.build_all_button.setEnabled(bool(self.rows) and not running)

    # --- showing one -------------------------------------------------------------------------
    def _row_changed(self, row: int, force: bool = False) -> None:
        self._enable()
        if not 0 <= row < len(self.rows):
            self.shown = None
            self.model.set_table(pa.table({}))
            self.chart.clear("Select a derivative with a time grain to see it over time.")
            self.preview_note.setText("")
            self.lineage.clear()
            self.spec_view.setPlainText("")
            return
        info = self.rows[row]
        if not force and self.shown is not None and self.shown.name == info.name:
            return
        self.spec_view.setPlainText(json.dumps(info.spec, indent=2, sort_keys=True) if info.spec
                                    else info.problem)
        self.load_selected()

    def load_selected(self) -> None:
        name = self.selected_name()
        if name is None:
            return
        self.preview_note.setText(f"Reading {name}…")
        job = jobs.Job(load_shown, self.ws, name, with_progress=False)
        job.signals.finished.connect(self._shown)
        job.signals.failed.connect(lambda exc, trace: self._show_failed(name, exc, trace))
        self.show_job = job
        jobs.start(job)

    def _show_failed(self, name: str, exc: BaseException, trace: str) -> None:
        self.show_job = None
        self.preview_note.setText(f"Cannot read {name}: {error_text(exc)}")

    def _shown(self, shown: Shown) -> None:
        self.show_job = None
        if shown.name != self.selected_name():
            if self.selected_name() is not None:
                self.load_selected()
            return
        self.shown = shown
        info = self.rows[self.table.currentRow()]
        if shown.table is None:
            self.model.set_table(pa.table({}))
            self.preview_note.setText(shown.problem)
            self.chart.clear(shown.problem)
            self.lineage.clear()
            return
        self.model.set_table(shown.table)
        fit_columns(self.preview)
        self.preview_note.setText(f"{shown.table.num_rows:,} row(s), {shown.table.num_columns} column(s) "
                                  f"of version {shown.version[:12]}.{counting_note(shown.lineage or {})}")
        if is_time_series(shown.table):
            threshold = info.spec.get("suppress_below", self.ws.suppress_below)
            self.chart.show_table(shown.table, dimensions_of(info.spec, shown.table),
                                  info.spec.get("grain", "month"), shown.name, threshold,
                                  exported=self._chart_exported(shown) if shown.published else None)
            if shown.name == self._chart_when_built:
                self._chart_when_built = None
                self.show_chart()
        else:
            self.chart.clear("This derivative has no time grain (no period column): see the Preview tab.")
        self._fill_lineage(shown.lineage or {})

    def _chart_exported(self, shown: Shown) -> Callable[[Path], None]:
        """What an exported chart leaves behind: an audit record, as every export's."""
        def record(path: Path) -> None:
            audit.record(self.ws, "export", derivative=shown.name, version=shown.version,
                         format=path.suffix.lstrip(".").lower(), what="chart")
        return record

    def _fill_lineage(self, data: dict) -> None:
        self.lineage.clear()

        def add(parent: Any, key: str, value: Any) -> None:
            if isinstance(value, dict):
                node = QTreeWidgetItem([key, ""])
                for k, v in value.items():
                    add(node, str(k), v)
            elif isinstance(value, list) and value and isinstance(value[0], (dict, list)):
                node = QTreeWidgetItem([key, f"{len(value)} item(s)"])
                for i, v in enumerate(value):
                    add(node, f"{key}[{i}]", v)
            else:
                text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                node = QTreeWidgetItem([key, text])
                node.setToolTip(1, text)
            if isinstance(parent, QTreeWidget):
                parent.addTopLevelItem(node)
            else:
                parent.addChild(node)

        for key in ("name", "version", "published_at", "spec_hash"):
            if key in data:
                add(self.lineage, key, data[key])
        if data.get("counts"):
            add(self.lineage, "suppression counts", counting_note(data).strip())
        if "inputs" in data:
            add(self.lineage, "inputs", data["inputs"])
        if "spec" in data:
            add(self.lineage, "spec", data["spec"])
        for i in range(self.lineage.topLevelItemCount()):
            if (item := self.lineage.topLevelItem(i)) is not None:
                item.setExpanded(item.text(0) == "inputs")

    def show_chart(self) -> None:
        self.tabs.setCurrentWidget(self.chart)

    # --- editing ------------------------------------------------------------------------------
    def open_aggregate_form(self, spec: dict | None = None) -> AggregateDialog:
        dialog = AggregateDialog(self.ws, self, spec)
        return self._open(dialog)

    def open_view_editor(self, spec: dict | None = None) -> ViewDialog:
        dialog = ViewDialog(self.ws, self, spec)
        return self._open(dialog)

    def _open(self, dialog: Any) -> Any:
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.saved.connect(self._spec_saved)
        dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.open()
        return dialog

    def edit_selected(self) -> None:
        row = self.table.currentRow()
        if not 0 <= row < len(self.rows) or not self.rows[row].spec:
            return
        spec = self.rows[row].spec
        if spec.get("kind") == "aggregate":
            self.open_aggregate_form(spec)
        elif spec.get("kind") == "view":
            self.open_view_editor(spec)
        else:
            QMessageBox.information(self, "Edit derivative",
                                    "SQL derivatives are not edited here: change the spec file and add it "
                                    "to the workspace again (its Spec tab shows what it holds now).")

    def _spec_saved(self, name: str) -> None:
        self._chart_when_built = name
        self.refresh(select=name)
        self.start_build(name=name)

    def _remove_selected(self) -> None:
        name = self.selected_name()
        if name is None:
            return
        answer = QMessageBox.question(self, "Remove derivative",
                                      f"Delete derivative {name} with every version of it?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            Catalog(self.ws).remove(name)
        except LithotseError as exc:
            show_error(self, "Cannot remove derivative", exc)
            return
        self.shown = None
        self.refresh()

    # --- building -------------------------------------------------------------------------------
    def start_build(self, full: bool = False, name: str | None = None) -> bool:
        name = name or self.selected_name()
        if name is None or self.job is not None:
            return False
        self._start(jobs.Job(build, self.ws, name, full=full),
                    f"{'Rebuilding' if full else 'Building'} {name}…")
        return True

    def start_build_all(self) -> bool:
        if self.job is not None or not self.rows:
            return False
        self._start(jobs.Job(build_all, self.ws), "Building every derivative that is out of date…")
        return True

    def _start(self, job: jobs.Job, message: str) -> None:
        self.job = job
        job.signals.progress.connect(self.strip.show_progress)
        job.signals.finished.connect(self._built)
        job.signals.failed.connect(self._build_failed)
        job.signals.cancelled.connect(self._build_cancelled)
        self.strip.started(message)
        self._enable()
        jobs.start(job)

    def cancel_build(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _built(self, result: BuildResult | list[BuildResult]) -> None:
        self.job = None
        results = result if isinstance(result, list) else [result]
        self.strip.stopped(built_text(results))
        self.refresh()
        self.built.emit(results)

    def _build_failed(self, exc: BaseException, trace: str) -> None:
        self.job = None
        if isinstance(exc, BuildsFailed):  # the others were built: show them as such
            sentence = build_sentence(exc.results)
            self.strip.stopped(f"{sentence[:1].upper()}{sentence[1:]}.", ok=False)
            self.refresh()
            self.built.emit(exc.results)
        else:
            self.strip.stopped(f"Build failed: {error_text(exc)}", ok=False)
        self._enable()
        show_error(self, "Build failed", exc, trace)

    def _build_cancelled(self) -> None:
        kept = self.job.kept if self.job else ""
        self.job = None
        if kept:  # derivatives built before the one cancelled stay published
            self.strip.stopped(f"Build cancelled after {kept}: the others are unchanged.")
            self.refresh()
        else:
            self.strip.stopped("Build cancelled: the current version is unchanged.")
        self._enable()

    # --- screenshots -------------------------------------------------------------------------
    def prepare_screenshot(self) -> None:
        """Show the chart of the time-series aggregate with the most rows, the page's most telling view."""
        series = [row for row in self.rows if row.version and row.spec.get("kind") == "aggregate"
                  and row.spec.get("grain", "none") != "none"]
        if series:
            self.select(max(series, key=lambda row: row.rows or 0).name)
            self.show_chart()
