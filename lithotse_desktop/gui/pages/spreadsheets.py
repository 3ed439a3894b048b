"""Spreadsheets: derivatives into Excel — export a file, bind a workbook range, copy a formula.

* Export writes the chosen derivative (and date range) to .xlsx, .csv or .parquet.
* Bind puts it into a workbook as an Excel table that ``Refresh`` later rewrites in place;
  the page remembers which workbooks were bound from this workspace (``desktop-workbooks.json``
  in the workspace folder) so they can all be refreshed with one click.
* Formulas: a ready ``=LITHOTSE_VALUE(...)`` cell formula for the Excel add-in and the local
  API's URL (plus a Power Query M snippet) for Power Query, copied to the clipboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...atomic import atomic_write_bytes
from ...dates import DateRange
from ...derive.service import read_table
from ...errors import ConfigError, LithotseError
from ...excel.export import FORMATS
from ...excel.formula import build_value_formula
from ...excel.ops import bind_workbook, refresh_workbook
from ...excel.ops import export_derivative as export_published
from ...excel.workbook import read_bindings
from ...serve.links import power_query_m, serve_port, table_url
from ...workspace import Workspace
from .. import jobs
from ..common import JobStrip, WrappedField, compact_table, error_text, named, scroll_area, show_error

REMEMBERED = "desktop-workbooks.json"
ALL = "(any)"


def describe_derivatives(ws: Workspace) -> list[dict]:
    """Name, version, measures, dimensions (and a sample of each dimension's values) per published
    derivative; row-level ones never reach a spreadsheet, so they are not offered."""
    from ...cache.lookup import describe_all

    out = []
    for meta in describe_all(ws):
        if meta.get("restricted"):
            continue
        meta = dict(meta)
        meta["values"] = {}
        if meta.get("version") and meta.get("dimensions"):
            try:
                _version, table = read_table(ws, meta["name"])
            except LithotseError:
                table = None
            if table is not None:
                for dim in meta["dimensions"]:
                    if dim in table.column_names:
                        values = {v for v in table.column(dim).to_pylist() if v is not None}
                        meta["values"][dim] = sorted(map(str, values))[:500]
        out.append(meta)
    return out


def remembered_workbooks(ws: Workspace) -> list[str]:
    path = ws.root / REMEMBERED
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [str(p) for p in data.get("workbooks", []) if isinstance(p, str)]


def remember_workbooks(ws: Workspace, paths: list[str]) -> None:
    unique = list(dict.fromkeys(paths))
    atomic_write_bytes(ws.root / REMEMBERED, json.dumps({"workbooks": unique}, indent=2).encode())


def workbook_tables(path: str) -> str:
    """The bound tables of one workbook, as the list shows them (or why they cannot be read)."""
    from openpyxl import load_workbook

    if not Path(path).exists():
        return "(file missing)"
    try:
        wb = load_workbook(path, read_only=False, keep_links=True)
        bindings = read_bindings(wb)
    except Exception as exc:  # an unreadable workbook is shown in its row, never raised
        return f"(cannot read: {exc})"
    return ", ".join(f"{b.table} ← {b.derivative} at {b.sheet}!{b.cell}" for b in bindings) or "(none)"


def export_derivative(ws: Workspace, name: str, rng: DateRange, fmt: str, path: Path) -> tuple[Path, int]:
    return export_published(ws, name, fmt, path, rng=rng)


def refresh_many(ws: Workspace, paths: list[str]) -> list[tuple[str, Any]]:
    """Refresh each workbook; one that fails is reported in its own row, the others still refresh."""
    out: list[tuple[str, Any]] = []
    for path in paths:
        try:
            out.append((path, refresh_workbook(ws, Path(path))))
        except LithotseError as exc:
            out.append((path, exc))
    return out


class SpreadsheetsPage(QWidget):
    workbooksChanged = Signal()
    handedOver = Signal()  # a derivative went towards a spreadsheet: bound, exported or copied

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.metas: list[dict] = []
        self.job: jobs.Job | None = None
        self.meta_job: jobs.Job | None = None
        self._again = False
        self.workbooks: list[str] = []

        # --- what: derivative and range --------------------------------------------------
        self.derivative = named(QComboBox(), "Derivative", "The derivative to export, bind or look up")
        self.derivative.currentIndexChanged.connect(lambda _i: self._derivative_changed())
        self.from_edit = named(QLineEdit(), "From date", "First period, YYYY-MM-DD; empty: from the start")
        self.to_edit = named(QLineEdit(), "To date", "Last period, YYYY-MM-DD; empty: to the end")
        for edit in (self.from_edit, self.to_edit):
            edit.setPlaceholderText("YYYY-MM-DD (open)")
            edit.textChanged.connect(lambda _t: self._update_formulas())
        self.range_error = named(QLabel(""), "Date range problem")
        self.range_error.setWordWrap(True)
        what = QGroupBox("Derivative")
        wform = QFormLayout(what)
        wform.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        label = QLabel("&Derivative")
        label.setBuddy(self.derivative)
        wform.addRow(label, self.derivative)
        dates = QHBoxLayout()
        dates.addWidget(self.from_edit)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.to_edit)
        range_label = QLabel("&From")
        range_label.setBuddy(self.from_edit)
        wform.addRow(range_label, dates)
        wform.addRow("", self.range_error)

        # --- export ----------------------------------------------------------------------
        self.format = named(QComboBox(), "Export format")
        self.format.addItems(FORMATS)
        self.format.setCurrentText("xlsx")
        self.export_button = named(QPushButton("&Export…"), "Export derivative",
                                   "Write the derivative to a file you choose")
        self.export_button.clicked.connect(self.choose_export)
        export = QGroupBox("Export a file")
        erow = QHBoxLayout(export)
        fmt_label = QLabel("Fo&rmat")
        fmt_label.setBuddy(self.format)
        erow.addWidget(fmt_label)
        erow.addWidget(self.format)
        erow.addStretch(1)
        erow.addWidget(self.export_button)

        # --- bind ------------------------------------------------------------------------
        self.workbook = named(QLineEdit(), "Workbook file", "An .xlsx file; created when missing")
        self.workbook.setPlaceholderText("path/to/report.xlsx")
        self.browse = named(QPushButton("Bro&wse…"), "Choose workbook")
        self.browse.clicked.connect(self._choose_workbook)
        self.sheet = named(QLineEdit("Lithotse"), "Sheet", "Sheet to put the table on (created if missing)")
        self.cell = named(QLineEdit("A1"), "Top-left cell", "Where the table starts, e.g. B3")
        self.table_name = named(QLineEdit(), "Excel table name", "Default: lithotse_<derivative>")
        self.table_name.setPlaceholderText("lithotse_<derivative>")
        self.bind_button = named(QPushButton("&Bind"), "Bind to workbook",
                                 "Write the derivative as an Excel table that Refresh keeps current")
        self.bind_button.clicked.connect(self.start_bind)
        bind = QGroupBox("Bind to a workbook range")
        bform = QFormLayout(bind)
        bform.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        book_row = QHBoxLayout()
        book_row.addWidget(self.workbook, 1)
        book_row.addWidget(self.browse)
        book_label = QLabel("&Workbook")
        book_label.setBuddy(self.workbook)
        bform.addRow(book_label, book_row)
        place_row = QHBoxLayout()
        place_row.addWidget(self.sheet, 2)
        cell_label = QLabel("C&ell")
        cell_label.setBuddy(self.cell)
        place_row.addWidget(cell_label)
        place_row.addWidget(self.cell, 1)
        sheet_label = QLabel("S&heet")
        sheet_label.setBuddy(self.sheet)
        bform.addRow(sheet_label, place_row)
        table_row = QHBoxLayout()
        table_row.addWidget(self.table_name, 1)
        table_row.addWidget(self.bind_button)
        table_label = QLabel("&Table")
        table_label.setBuddy(self.table_name)
        bform.addRow(table_label, table_row)

        # --- bound workbooks -------------------------------------------------------------
        self.books = named(QTableWidget(0, 2), "Bound workbooks", "Workbooks bound from this workspace")
        self.books.setHorizontalHeaderLabels(["Workbook", "Tables"])
        compact_table(self.books)
        self.books.setMinimumHeight(90)
        self.books.currentCellChanged.connect(lambda *_: self._enable())
        self.add_book = named(QPushButton("Add &existing…"), "Add bound workbook",
                              "List a workbook bound elsewhere so it can be refreshed here")
        self.add_book.clicked.connect(self._add_existing)
        self.refresh_button = named(QPushButton("Re&fresh"), "Refresh workbook",
                                    "Rewrite the selected workbook's tables with current data")
        self.refresh_button.clicked.connect(lambda: self.start_refresh(all_books=False))
        self.refresh_all = named(QPushButton("Refresh &all"), "Refresh all workbooks")
        self.refresh_all.clicked.connect(lambda: self.start_refresh(all_books=True))
        self.forget = named(QPushButton("Forget"), "Forget workbook",
                            "Stop listing the selected workbook (the file is not changed)")
        self.forget.clicked.connect(self._forget)
        books = QGroupBox("Bound workbooks")
        bv = QVBoxLayout(books)
        bv.addWidget(self.books, 1)
        brow = QHBoxLayout()
        for button in (self.add_book, self.forget):
            brow.addWidget(button)
        brow.addStretch(1)
        brow.addWidget(self.refresh_button)
        brow.addWidget(self.refresh_all)
        bv.addLayout(brow)

        # --- formulas --------------------------------------------------------------------
        self.measure = named(QComboBox(), "Formula measure")
        self.dimension = named(QComboBox(), "Formula dimension", "Narrow the value to one dimension value")
        self.dim_value = named(QComboBox(), "Formula dimension value")
        self.dim_value.setEditable(True)
        if (typed := self.dim_value.lineEdit()) is not None:
            typed.setAccessibleName("Formula dimension value text")
        for combo in (self.measure, self.dimension):
            combo.currentIndexChanged.connect(lambda _i: self._update_formulas())
        self.dimension.currentIndexChanged.connect(lambda _i: self._fill_values())
        self.dim_value.currentTextChanged.connect(lambda _t: self._update_formulas())
        self.formula = named(WrappedField(), "Excel formula", "Paste into a cell of a workbook with the add-in")
        self.copy_formula = named(QPushButton("Copy f&ormula"), "Copy formula")
        self.copy_formula.clicked.connect(lambda: self._copy(self.formula.text(), "Formula"))
        self.url = named(WrappedField(), "Power Query URL",
                         "The table's address on the local API, which this app serves while it is open")
        self.copy_url = named(QPushButton("Copy &URL"), "Copy Power Query URL")
        self.copy_url.clicked.connect(lambda: self._copy(self.url.text(), "URL"))
        self.copy_m = named(QPushButton("Copy Power &Query (M)"), "Copy Power Query M",
                            "A query that sends the API token in a header, not in the URL")
        self.copy_m.clicked.connect(self._copy_m)
        self.copy_token = named(QPushButton("Copy API to&ken"), "Copy API token",
                                "The workspace's local API token (keep it private)")
        self.copy_token.clicked.connect(self._copy_token)
        formulas = QGroupBox("Excel formula and Power Query")
        fgrid = QGridLayout(formulas)
        # one choice per row: measure and dimension names can be long, and a row of three squeezed them
        for row, (text, widget) in enumerate((("Mea&sure", self.measure), ("Dime&nsion", self.dimension),
                                              ("&Value", self.dim_value))):
            lab = QLabel(text)
            lab.setBuddy(widget)
            fgrid.addWidget(lab, row, 0)
            fgrid.addWidget(widget, row, 1, 1, 2)
        fgrid.setColumnStretch(1, 1)
        fgrid.addWidget(QLabel("Formula"), 3, 0)
        fgrid.addWidget(self.formula, 3, 1)
        fgrid.addWidget(self.copy_formula, 3, 2)
        fgrid.addWidget(QLabel("URL"), 4, 0)
        fgrid.addWidget(self.url, 4, 1)
        fgrid.addWidget(self.copy_url, 4, 2)
        mrow = QHBoxLayout()
        mrow.addStretch(1)
        mrow.addWidget(self.copy_m)
        mrow.addWidget(self.copy_token)
        fgrid.addLayout(mrow, 5, 0, 1, 3)
        self.formula_note = named(QLabel(""), "Formula note")
        self.formula_note.setWordWrap(True)
        fgrid.addWidget(self.formula_note, 6, 0, 1, 3)
        fgrid.setRowStretch(7, 1)

        self.strip = JobStrip("Spreadsheet job", cancellable=False)
        self.result = named(QPlainTextEdit(), "Spreadsheet result")
        self.result.setReadOnly(True)
        self.result.setMaximumHeight(72)
        self.result.setPlaceholderText("What the last export, bind or refresh did shows here.")

        inner = QWidget()
        layout = QGridLayout(inner)
        layout.addWidget(what, 0, 0)
        layout.addWidget(export, 1, 0)
        layout.addWidget(formulas, 2, 0)
        layout.addWidget(bind, 0, 1)
        layout.addWidget(books, 1, 1, 2, 1)
        layout.addWidget(self.strip, 3, 0, 1, 2)
        layout.addWidget(self.result, 4, 0, 1, 2)
        layout.setColumnStretch(0, 1)
        layout.setColumnStretch(1, 1)
        layout.setRowStretch(2, 1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll_area(inner, "Spreadsheets"))
        self.set_workspace(ws)

    # --- workspace and derivative list ------------------------------------------------------
    def set_workspace(self, ws: Workspace) -> None:
        self.ws = ws
        self.workbooks = remembered_workbooks(ws)
        self._fill_books()
        self.reload()

    @property
    def busy(self) -> bool:
        return self.meta_job is not None

    def reload(self) -> None:
        """Re-read derivatives (with dimension values for the formula builder) off the GUI thread."""
        if self.meta_job is not None:
            self._again = True
            return
        self.meta_job = jobs.Job(describe_derivatives, self.ws, with_progress=False)
        self.meta_job.signals.finished.connect(self._described)
        self.meta_job.signals.failed.connect(self._describe_failed)
        jobs.start(self.meta_job)

    def _meta_done(self) -> None:
        self.meta_job = None
        if self._again:
            self._again = False
            self.reload()

    def _describe_failed(self, exc: BaseException, _trace: str) -> None:
        self.formula_note.setText(f"Cannot read derivatives: {error_text(exc)}")
        self._meta_done()

    def _described(self, metas: list[dict]) -> None:
        keep = self.derivative.currentText()
        self.metas = metas
        self.derivative.blockSignals(True)
        self.derivative.clear()
        for meta in metas:
            self.derivative.addItem(meta["name"], meta["name"])
            if not meta.get("version"):
                self.derivative.setItemData(self.derivative.count() - 1, "not built yet",
                                            Qt.ItemDataRole.ToolTipRole)
        index = self.derivative.findText(keep)
        self.derivative.setCurrentIndex(index if index >= 0 else 0)
        self.derivative.blockSignals(False)
        self._meta_done()
        self._derivative_changed()

    def meta(self) -> dict | None:
        name = self.derivative.currentData()
        return next((m for m in self.metas if m["name"] == name), None)

    def select_derivative(self, name: str) -> None:
        self.derivative.setCurrentIndex(self.derivative.findData(name))

    def _derivative_changed(self) -> None:
        meta = self.meta() or {}
        self.measure.blockSignals(True)
        self.measure.clear()
        self.measure.addItems(list(meta.get("measures") or {}))
        self.measure.blockSignals(False)
        self.dimension.blockSignals(True)
        self.dimension.clear()
        self.dimension.addItem(ALL, None)
        for dim in meta.get("dimensions") or []:
            self.dimension.addItem(dim, dim)
        self.dimension.blockSignals(False)
        self._fill_values()
        self._enable()

    def _fill_values(self) -> None:
        meta = self.meta() or {}
        dim = self.dimension.currentData()
        self.dim_value.blockSignals(True)
        self.dim_value.clear()
        if dim:
            self.dim_value.addItems(meta.get("values", {}).get(dim, []))
        self.dim_value.setEnabled(dim is not None)
        self.dim_value.blockSignals(False)
        self._update_formulas()

    def range(self) -> DateRange | None:
        try:
            rng = DateRange.parse(self.from_edit.text().strip() or None, self.to_edit.text().strip() or None)
        except ConfigError as exc:
            self.range_error.setText(str(exc).replace("--from", "From").replace("--to", "To"))
            return None
        self.range_error.setText("")
        return rng

    def _range_texts(self) -> tuple[str, str]:
        rng = self.range()
        if rng is None:
            return "", ""
        return (rng.start.isoformat() if rng.start else "", rng.end.isoformat() if rng.end else "")

    def _update_formulas(self) -> None:
        meta = self.meta()
        if meta is None:
            self.formula.setText("")
            self.url.setText("")
            self.formula_note.setText("No derivatives yet: create one on the Derivatives page.")
            return
        start, end = self._range_texts()
        dims = {}
        if self.dimension.currentData() and self.dim_value.currentText():
            dims[self.dimension.currentData()] = self.dim_value.currentText()
        measure = self.measure.currentText()
        self.formula.setText(build_value_formula(meta["name"], measure, start, end, dims) if measure else "")
        notes = []
        try:
            port = serve_port(self.ws)
        except ConfigError as exc:
            port = None
            notes.append(str(exc))
        self.url.setText(table_url(port, meta["name"], start, end) if port is not None else "")
        self.formula.setCursorPosition(0)
        self.url.setCursorPosition(0)
        if not meta.get("version"):
            notes.append(f"{meta['name']} is not built yet: build it before using these.")
        if not measure:
            notes.append("This derivative has no numeric measure for a cell formula.")
        if port is not None:
            notes.append("Formulas (Lithotse Excel add-in), the URL and Power Query read the local API, "
                         f"which this app serves on port {port} while it is open; Power Query also needs "
                         "the API token.")
        self.formula_note.setText(" ".join(notes))

    def _enable(self) -> None:
        has = self.meta() is not None
        built = has and bool((self.meta() or {}).get("version"))
        idle = self.job is None
        self.export_button.setEnabled(built and idle)
        self.bind_button.setEnabled(built and idle)
        self.copy_formula.setEnabled(has and bool(self.measure.count()))
        self.copy_url.setEnabled(has)
        self.copy_m.setEnabled(has)
        selected = 0 <= self.books.currentRow() < len(self.workbooks)
        self.refresh_button.setEnabled(selected and idle)
        self.forget.setEnabled(selected and idle)
        self.refresh_all.setEnabled(bool(self.workbooks) and idle)

    # --- clipboard ----------------------------------------------------------------------
    def _copy(self, text: str, what: str) -> None:
        QApplication.clipboard().setText(text)
        self.strip.stopped(f"{what} copied to the clipboard.")
        if what != "API token":
            self.handedOver.emit()

    def _copy_m(self) -> None:
        meta = self.meta()
        if meta is None:
            return
        try:
            port = serve_port(self.ws)
        except ConfigError as exc:
            show_error(self, "Cannot build the Power Query", exc)
            return
        start, end = self._range_texts()
        self._copy(power_query_m(port, meta["name"], start, end), "Power Query (M)")

    def _copy_token(self) -> None:
        from ...serve.token import workspace_token

        try:
            token = workspace_token(self.ws)
        except LithotseError as exc:
            show_error(self, "Cannot read the API token", exc)
            return
        self._copy(token, "API token")

    # --- jobs ---------------------------------------------------------------------------
    def _run(self, job: jobs.Job, message: str, done: Any) -> None:
        self.job = job
        job.signals.finished.connect(done)
        job.signals.failed.connect(self._failed)
        self.strip.started(message)
        self.result.setPlainText("")
        self._enable()
        jobs.start(job)

    def _failed(self, exc: BaseException, trace: str) -> None:
        self.job = None
        self.strip.stopped(f"Failed: {error_text(exc)}")
        self.result.setPlainText(error_text(exc))
        self._enable()
        if not isinstance(exc, LithotseError):
            show_error(self, "Spreadsheet job failed", exc, trace)

    def choose_export(self) -> None:
        meta = self.meta()
        if meta is None:
            return
        fmt = self.format.currentText()
        path, _f = QFileDialog.getSaveFileName(self, "Export derivative", f"{meta['name']}.{fmt}",
                                               f"{fmt.upper()} files (*.{fmt})")
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> bool:
        meta, rng = self.meta(), self.range()
        if meta is None or rng is None or self.job is not None:
            return False
        fmt = self.format.currentText()
        job = jobs.Job(export_derivative, self.ws, meta["name"], rng, fmt, path, with_progress=False)
        self._run(job, f"Exporting {meta['name']} to {path.name}…", self._exported)
        return True

    def _exported(self, answer: tuple[Path, int]) -> None:
        self.job = None
        path, rows = answer
        self.strip.stopped(f"Exported {rows:,} row(s) to {path}.")
        self.result.setPlainText(str(path))
        self._enable()
        self.handedOver.emit()

    def _choose_workbook(self) -> None:
        path, _f = QFileDialog.getSaveFileName(self, "Workbook to bind", self.workbook.text() or "report.xlsx",
                                               "Excel workbooks (*.xlsx)",
                                               options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.workbook.setText(path)

    def start_bind(self) -> bool:
        meta, rng = self.meta(), self.range()
        path = self.workbook.text().strip()
        if meta is None or rng is None or self.job is not None:
            return False
        if not path:
            self.strip.stopped("Choose a workbook file first.")
            self.workbook.setFocus()
            return False
        start, end = self._range_texts()
        job = jobs.Job(bind_workbook, self.ws, Path(path), meta["name"], sheet=self.sheet.text().strip() or "Lithotse",
                       cell=self.cell.text().strip() or "A1", from_=start or None, to=end or None,
                       table=self.table_name.text().strip() or None, with_progress=False)
        self._run(job, f"Binding {meta['name']} into {Path(path).name}…", lambda placed: self._bound(path, placed))
        return True

    def _bound(self, path: str, placed: Any) -> None:
        self.job = None
        self.strip.stopped(f"Bound table {placed.binding.table} at {placed.binding.sheet}!{placed.ref}: "
                           f"{placed.rows:,} row(s) of {placed.binding.derivative}.")
        self.result.setPlainText(f"{path}\nversion {placed.version}")
        self.workbooks = [*self.workbooks, str(Path(path).resolve())]
        remember_workbooks(self.ws, self.workbooks)
        self.workbooks = remembered_workbooks(self.ws)
        self._fill_books(select=str(Path(path).resolve()))
        self._enable()
        self.workbooksChanged.emit()
        self.handedOver.emit()

    def start_refresh(self, all_books: bool) -> bool:
        if self.job is not None:
            return False
        row = self.books.currentRow()
        paths = list(self.workbooks) if all_books else (
            [self.workbooks[row]] if 0 <= row < len(self.workbooks) else [])
        if not paths:
            return False
        job = jobs.Job(refresh_many, self.ws, paths, with_progress=False)
        self._run(job, f"Refreshing {len(paths)} workbook(s)…", self._refreshed)
        return True

    def _refreshed(self, results: list[tuple[str, Any]]) -> None:
        self.job = None
        lines, failed = [], 0
        for path, outcome in results:
            if isinstance(outcome, Exception):
                failed += 1
                lines.append(f"{Path(path).name}: failed: {error_text(outcome)}")
            else:
                tables = ", ".join(f"{p.binding.table} ({p.rows:,} rows, version {p.version[:12]})"
                                   for p in outcome)
                lines.append(f"{Path(path).name}: {tables}")
        ok = len(results) - failed
        self.strip.stopped(f"Refreshed {ok} workbook(s)" + (f"; {failed} failed." if failed else "."))
        self.result.setPlainText("\n".join(lines))
        self._fill_books()
        self._enable()

    def _add_existing(self) -> None:
        path, _f = QFileDialog.getOpenFileName(self, "Bound workbook", "", "Excel workbooks (*.xlsx)")
        if path:
            self.add_workbook(path)

    def add_workbook(self, path: str) -> None:
        self.workbooks = [*self.workbooks, str(Path(path).resolve())]
        remember_workbooks(self.ws, self.workbooks)
        self.workbooks = remembered_workbooks(self.ws)
        self._fill_books(select=str(Path(path).resolve()))

    def _forget(self) -> None:
        row = self.books.currentRow()
        if 0 <= row < len(self.workbooks):
            del self.workbooks[row]
            remember_workbooks(self.ws, self.workbooks)
            self._fill_books()

    def _fill_books(self, select: str | None = None) -> None:
        self.books.setRowCount(len(self.workbooks))
        for r, path in enumerate(self.workbooks):
            for c, text in enumerate((path, workbook_tables(path))):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.books.setItem(r, c, item)
            if path == select:
                self.books.setCurrentCell(r, 0)
        self.books.resizeColumnToContents(0)
        if self.books.currentRow() < 0 and self.workbooks:
            self.books.setCurrentCell(0, 0)
        self._enable()
