"""Sources & Import: configured sources, the Add/Edit-source dialog, and running an import.

A source is checked as it is added or edited (its connector's ``check``: a folder that exists, a
server that answers, a token it accepts), with each problem in red. The list says per source
when it was last imported, how many records it holds and their dates. An import rebuilds the
derivatives it feeds and ends in one sentence; the technical lines wait behind Details.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...connectors import StreamInfo
from ...errors import LithotseError
from ...jobs import ImportOutcome, import_and_build
from ...pathtext import display_paths
from ...plugins import get_plugin_manager
from ...raw.index import open_index
from ...raw.sources import make_connector
from ...secrets import load_secret
from ...workspace import Workspace, check_name
from .. import jobs
from ..common import (
    ErrorLabel,
    JobStrip,
    confirm_discard,
    dialog_buttons,
    error_text,
    labelled_row,
    named,
    scroll_area,
    show_error,
)
from ..daterange import DateRangePicker
from ..forms import ConnectorForm
from ..words import day_text, import_sentence, landed_span, landing_details, plural, span_text


@dataclass
class SourceSummary:
    """What the list says of a source: when it was last imported, its records and their dates."""

    landings: int = 0
    records: int = 0
    last: str = ""
    low: dt.date | None = None
    high: dt.date | None = None

    def text(self) -> str:
        if not self.landings:
            return "not imported yet"
        when = self.last[:10]
        try:
            when = day_text(dt.date.fromisoformat(when))
        except ValueError:
            pass
        return f"imported {when} · {plural(self.records, 'record')}\n{span_text(self.low, self.high)}"


def source_summaries(ws: Workspace) -> dict[str, SourceSummary]:
    """Per source, from the manifest index (read off the GUI thread)."""
    index = open_index(ws)
    try:
        landings = index.landings()
    finally:
        index.close()
    out: dict[str, SourceSummary] = {}
    by_source: dict[str, list] = {}
    for m in landings:
        by_source.setdefault(m.source, []).append(m)
    for name, manifests in by_source.items():
        low, high = landed_span(manifests)
        out[name] = SourceSummary(len(manifests), sum(m.records for m in manifests),
                                  max(m.landed_at for m in manifests), low, high)
    return out


def check_source(connector: str, settings: dict, secrets: dict) -> list[str]:
    """The connector's own check of settings about to be saved (run on a worker thread)."""
    cls = get_plugin_manager().connector(connector)
    return cls(cls.validate_settings({**settings, **secrets})).check()


class AddSourceDialog(QDialog):
    """Name a source, pick a connector and fill the form drawn from its declared fields; or, given
    ``editing``, change an existing source's settings (a secret left empty keeps its value)."""

    def __init__(self, ws: Workspace, parent: QWidget | None = None, editing: str | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.editing = editing
        title = f"Edit source {editing}" if editing else "Add source"
        self.setWindowTitle(title)
        named(self, title)
        self.added: str | None = None
        self.form: ConnectorForm | None = None
        self.check_job: jobs.Job | None = None

        self.name_edit = named(QLineEdit(editing or ""), "Source name",
                               "A short name: a letter first, then letters, digits, _ or -")
        self.name_edit.setReadOnly(editing is not None)
        self.connector_box = named(QComboBox(), "Connector", "What kind of data the source holds")
        manager = get_plugin_manager()
        for name, cls in sorted(manager.connectors().items()):
            info = cls.describe()
            self.connector_box.addItem(f"{info['title']} ({name})", name)
        self.about = QLabel("")
        self.about.setWordWrap(True)
        self.error = ErrorLabel("Add source")
        self.checking = named(QLabel(""), "Source check")

        top = QFormLayout()
        labelled_row(top, "&Name *", self.name_edit)
        labelled_row(top, "&Connector", self.connector_box)
        top.addRow("", self.about)

        self.settings_scroll = scroll_area(None, "Connector settings")

        self.buttons, self.ok = dialog_buttons(
            self, QDialogButtonBox.StandardButton.Ok, "&Save source" if editing else "&Add source",
            "Save source" if editing else "Add source",
            "Check the settings, then save them; secrets go to the secrets store, never to the config",
            "Cancel editing the source" if editing else "Cancel adding a source", self._save)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        group = QGroupBox("Settings")
        inner = QVBoxLayout(group)
        inner.addWidget(self.settings_scroll)
        layout.addWidget(group, 1)
        layout.addWidget(self.checking)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

        self.connector_box.currentIndexChanged.connect(self._draw_form)
        if self.connector_box.count() == 0:
            self.about.setText("No connectors are installed: add a plugin on the Plugins page.")
            self.ok.setEnabled(False)
        if editing is not None:
            src = ws.source(editing)
            self.select_connector(src.connector)
            self.connector_box.setEnabled(False)
            self._draw_form()
            if self.form is not None:
                self.form.set_values(src.settings, secret_hint="leave empty to keep the saved value")
        else:
            self._draw_form()
        self.resize(640, 560)
        self._confirm: QMessageBox | None = None
        self._clean: str | None = self._snapshot()

    def _snapshot(self) -> str:
        """What the user has typed or chosen, to tell whether closing would lose anything."""
        values: dict[str, object] = {}
        for name, editor in (self.form.editors.items() if self.form is not None else ()):
            try:
                values[name] = editor.read()
            except (LithotseError, ValueError) as exc:  # a half-typed number is still an edit
                values[name] = f"unreadable: {exc}"
        return json.dumps([self.name_edit.text(), self.connector_box.currentData(), values],
                          sort_keys=True, default=str)

    def has_changes(self) -> bool:
        return self._clean is not None and self._snapshot() != self._clean

    def reject(self) -> None:
        """Cancel, Escape or the close button: ask before throwing typed settings away."""
        if not self.has_changes() or self._confirm is not None:
            super().reject()
            return
        question = "Discard the changes to this source?" if self.editing else "Discard this new source?"
        self._confirm = confirm_discard(self, question, self._discard_answered)

    def _discard_answered(self, discard: bool) -> None:
        self._confirm = None
        if discard:
            self._clean = None
            super().reject()

    def select_connector(self, name: str) -> None:
        self.connector_box.setCurrentIndex(self.connector_box.findData(name))

    def _draw_form(self) -> None:
        name = self.connector_box.currentData()
        if name is None:
            return
        info = get_plugin_manager().connector(name).describe()
        self.about.setText(info.get("description") or "")
        self.form = ConnectorForm(info)
        self.settings_scroll.setWidget(self.form)
        self.error.show_error("")

    def _values(self) -> tuple[str, str, dict, dict]:
        assert self.form is not None
        settings, secrets = self.form.values()
        name = self.name_edit.text().strip()
        if self.editing is not None:
            kept = self.ws.source(self.editing).secrets
            secrets = {**{k: load_secret(ref) for k, ref in kept.items() if k not in secrets}, **secrets}
        return name, self.connector_box.currentData(), settings, secrets

    def _save(self) -> None:
        """Validate with the connector's own rules, check the source answers, then store it."""
        if self.form is None or self.connector_box.currentData() is None or self.check_job is not None:
            return
        try:
            name, connector, settings, secrets = self._values()
            if self.editing is None:
                check_name(name, "source")
                if name in {src.name for src in self.ws.sources()}:
                    raise LithotseError(f"a source named {name!r} exists already: choose another name")
            get_plugin_manager().connector(connector).validate_settings({**settings, **secrets})
        except LithotseError as exc:
            self.error.show_error(error_text(exc))
            return
        self.error.show_error("")
        self.checking.setText("Checking the source…")
        self.ok.setEnabled(False)
        self.check_job = jobs.Job(check_source, connector, settings, secrets, with_progress=False)
        self.check_job.signals.finished.connect(lambda problems: self._checked(problems, name, connector,
                                                                               settings, secrets))
        self.check_job.signals.failed.connect(lambda exc, _t: self._checked([error_text(exc)], name, connector,
                                                                            settings, secrets))
        jobs.start(self.check_job)

    def _checked(self, problems: list[str], name: str, connector: str, settings: dict, secrets: dict) -> None:
        self.check_job = None
        self.checking.setText("")
        self.ok.setEnabled(True)
        if problems:
            self.error.show_error("\n".join(problems))
            return
        try:
            self.ws.add_source(name, connector, settings, secrets, replace=self.editing is not None)
        except LithotseError as exc:
            self.error.show_error(error_text(exc))
            return
        self.added = name
        self.accept()


class SourcesPage(QWidget):
    """List of sources on the left; the selected source's import controls on the right."""

    imported = Signal(object)
    cancelled = Signal()
    sourcesChanged = Signal()
    summariesChanged = Signal()

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.job: jobs.Job | None = None
        self._streams_job: jobs.Job | None = None
        self._streams_for: str | None = None
        self._source_text = ""
        self._streams_problem = ""
        self.summaries: dict[str, SourceSummary] = {}
        self.summary_job: jobs.Job | None = None

        self.list = named(QListWidget(), "Sources", "Configured sources of this workspace")
        self.list.currentItemChanged.connect(lambda *_: self._show_source())
        self.add_button = named(QPushButton("&Add source…"), "Add source",
                                "Configure a new source from an installed connector")
        self.add_button.clicked.connect(self.open_add_dialog)
        self.edit_button = named(QPushButton("&Edit…"), "Edit source", "Change the selected source's settings")
        self.edit_button.clicked.connect(lambda: self.open_edit_dialog())
        self.remove_button = named(QPushButton("Remove"), "Remove source",
                                   "Forget the selected source (what it imported stays stored)")
        self.remove_button.clicked.connect(self._remove_source)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(QLabel("<b>Sources</b>"))
        lv.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.edit_button)
        row.addWidget(self.remove_button)
        lv.addLayout(row)

        self.details = named(QLabel(""), "Source details")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.streams = named(QListWidget(), "Streams to import",
                             "Tick the streams to import; none ticked imports every stream")
        self.streams.setMaximumHeight(140)
        self.picker = DateRangePicker()
        self.full = named(QCheckBox("&Full re-import (read every file again)"), "Full re-import")
        self.import_button = named(QPushButton("&Import"), "Import",
                                   "Import the selected source's data for the chosen dates, then rebuild "
                                   "the derivatives it feeds")
        self.import_button.setDefault(True)
        self.import_button.clicked.connect(self.start_import)
        self.strip = JobStrip("Import")
        self.strip.cancelRequested.connect(self.cancel_import)
        self.result = named(QLabel(""), "Import result")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = named(QToolButton(), "Show import details",
                                    "The technical lines of the last import: files, sizes, identifiers")
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.setArrowType(Qt.ArrowType.RightArrow)
        self.details_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.details_button.toggled.connect(self._toggle_details)
        self.summary = named(QPlainTextEdit(), "Import details")
        self.summary.setReadOnly(True)
        self.summary.setVisible(False)
        self.summary.setMaximumHeight(150)

        right_inner = QWidget()
        rv = QVBoxLayout(right_inner)
        rv.addWidget(self.details)
        streams_box = QGroupBox("Streams")
        QVBoxLayout(streams_box).addWidget(self.streams)
        range_box = QGroupBox("Dates")
        QVBoxLayout(range_box).addWidget(self.picker)
        split_row = QHBoxLayout()
        split_row.addWidget(range_box, 3)
        side = QVBoxLayout()
        side.addWidget(streams_box)
        side.addWidget(self.full)
        side.addWidget(self.import_button)
        side.addStretch(1)
        split_row.addLayout(side, 2)
        rv.addLayout(split_row, 3)
        result_box = QGroupBox("Import")
        result_layout = QVBoxLayout(result_box)
        result_layout.addWidget(self.strip)
        result_layout.addWidget(self.result)
        result_layout.addWidget(self.details_button)
        result_layout.addWidget(self.summary)
        rv.addWidget(result_box)
        rv.addStretch(1)
        right = scroll_area(right_inner, "Import controls")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([300, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self._idle_message()
        self.reload()

    # --- sources ---------------------------------------------------------------
    def set_workspace(self, ws: Workspace) -> None:
        self.ws = ws
        self.summaries = {}
        self.reload()

    def reload(self, select: str | None = None) -> None:
        current = select or self.selected_source()
        self.list.blockSignals(True)
        self.list.clear()
        for src in self.ws.sources():
            item = QListWidgetItem(self._item_text(src.name))
            item.setData(Qt.ItemDataRole.UserRole, src.name)
            item.setToolTip(f"connector {src.connector}")
            self.list.addItem(item)
            if src.name == current:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self.list.blockSignals(False)
        self._show_source()
        self.refresh_summaries()

    def _item_text(self, name: str) -> str:
        summary = self.summaries.get(name)
        return f"{name}\n{summary.text() if summary else 'not imported yet'}"

    def refresh_summaries(self) -> None:
        """Re-read per-source figures from the manifest index off the GUI thread."""
        if self.summary_job is not None:
            return
        self.summary_job = jobs.Job(source_summaries, self.ws, with_progress=False)
        self.summary_job.signals.finished.connect(self._summaries_loaded)
        self.summary_job.signals.failed.connect(lambda *_: setattr(self, "summary_job", None))
        jobs.start(self.summary_job)

    def _summaries_loaded(self, summaries: dict[str, SourceSummary]) -> None:
        self.summary_job = None
        self.summaries = summaries
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setText(self._item_text(item.data(Qt.ItemDataRole.UserRole)))
        self._show_details()
        self.summariesChanged.emit()

    def selected_source(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def open_add_dialog(self) -> AddSourceDialog:
        """Open the dialog without blocking; the list reloads when a source was added."""
        return self._open_dialog(AddSourceDialog(self.ws, self))

    def open_edit_dialog(self, name: str | None = None) -> AddSourceDialog | None:
        name = name or self.selected_source()
        if name is None:
            return None
        return self._open_dialog(AddSourceDialog(self.ws, self, editing=name))

    def _open_dialog(self, dialog: AddSourceDialog) -> AddSourceDialog:
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._source_added(dialog.added))
        dialog.open()
        return dialog

    def _source_added(self, name: str | None) -> None:
        self.reload(select=name)
        self.sourcesChanged.emit()

    def _remove_source(self) -> None:
        name = self.selected_source()
        if name is None:
            return
        answer = QMessageBox.question(self, "Remove source",
                                      f"Forget source {name}? What it imported stays stored and derivatives "
                                      "built from it keep their data.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.ws.remove_source(name)
        except LithotseError as exc:
            show_error(self, "Cannot remove source", exc)
            return
        self.reload()
        self.sourcesChanged.emit()

    def _idle_message(self) -> None:
        self.strip.stopped("Choose the dates, then click Import." if self.list.count() else "")
        self.result.setText("")
        self.summary.setPlainText("")
        self.details_button.setChecked(False)
        self.details_button.setVisible(False)

    def _show_source(self) -> None:
        name = self.selected_source()
        self.streams.clear()
        running = self.job is not None
        for button in (self.import_button, self.remove_button, self.edit_button):
            button.setEnabled(name is not None and not running)
        if not running:
            self._idle_message()
        if name is None:
            self.details.setText("No sources yet: click <b>Add source…</b> to say where your data is.")
            return
        self._show_details()
        self._load_streams(name)

    def _show_details(self) -> None:
        name = self.selected_source()
        if name is None:
            return
        try:
            src = self.ws.source(name)
        except LithotseError:
            return
        settings = ", ".join(f"{k} = {display_paths(v)}"
                             for k, v in sorted(src.settings.items())) or "no settings"
        secrets = f"; secrets (kept outside the config): {', '.join(sorted(src.secrets))}" if src.secrets else ""
        summary = self.summaries.get(name)
        status = summary.text().replace("\n", ", ") if summary else "not imported yet"
        status = status[0].upper() + status[1:]
        self._source_text = (f"<b>{name}</b> — connector <i>{src.connector}</i><br>{settings}{secrets}"
                             f"<br>{status}.")
        self.details.setText(self._source_text + self._streams_problem)

    def _load_streams(self, name: str) -> None:
        """Ask the connector for its streams off the GUI thread: some ask a server."""
        self._streams_for = name
        self._streams_problem = ""
        job = jobs.Job(lambda: (name, make_connector(self.ws, name).streams()), with_progress=False)
        job.signals.finished.connect(self._streams_loaded)
        job.signals.failed.connect(self._streams_failed)
        self._streams_job = job
        jobs.start(job)

    @property
    def streams_loading(self) -> bool:
        return self._streams_job is not None

    def _streams_loaded(self, answer: tuple[str, list[StreamInfo]]) -> None:
        name, offered = answer
        if name != self._streams_for:
            return
        self._streams_job = None
        self.streams.clear()
        for info in offered:
            item = QListWidgetItem(info.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            item.setToolTip(info.description or f"date field: {info.date_field or 'none'}")
            self.streams.addItem(item)
        self.details.setText(self._source_text)

    def _streams_failed(self, exc: BaseException, _trace: str) -> None:
        self._streams_job = None
        self._streams_problem = f"<br>Cannot open this source: {error_text(exc)}"
        self.details.setText(self._source_text + self._streams_problem)

    def chosen_streams(self) -> list[str] | None:
        ticked = [self.streams.item(i).text() for i in range(self.streams.count())
                  if self.streams.item(i).checkState() == Qt.CheckState.Checked]
        return ticked or None

    # --- import ----------------------------------------------------------------
    def start_import(self) -> None:
        name = self.selected_source()
        if name is None or self.job is not None:
            return
        rng = self.picker.range()
        self.job = jobs.Job(import_and_build, self.ws, name, rng, streams=self.chosen_streams(),
                            full=self.full.isChecked(), build=True)
        self.job.signals.progress.connect(self.strip.show_progress)
        self.job.signals.finished.connect(self._finished)
        self.job.signals.failed.connect(self._failed)
        self.job.signals.cancelled.connect(self._cancelled)
        for button in (self.import_button, self.remove_button, self.edit_button):
            button.setEnabled(False)
        self.strip.started(f"Importing {name}…")
        self.result.setText("")
        self.summary.setPlainText("")
        self.details_button.setVisible(False)
        jobs.start(self.job)

    def cancel_import(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _job_ended(self) -> None:
        self.job = None
        has_source = self.selected_source() is not None
        for button in (self.import_button, self.remove_button, self.edit_button):
            button.setEnabled(has_source)

    def _finished(self, outcome: ImportOutcome) -> None:
        self._job_ended()
        sentence = import_sentence(outcome)
        self.strip.stopped(sentence, ok=outcome.build_error is None)
        lines = [landing_details(item.manifest) for item in outcome.imported.landings]
        lines += outcome.imported.skipped_lines()
        lines += outcome.build_lines()
        self.summary.setPlainText("\n".join(lines) or "Nothing was written.")
        self.details_button.setVisible(bool(lines))
        self.refresh_summaries()
        self.imported.emit(outcome)

    def _toggle_details(self, shown: bool) -> None:
        self.summary.setVisible(shown)
        self.details_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def _failed(self, exc: BaseException, trace: str) -> None:
        self._job_ended()
        self.strip.stopped(f"Import failed: {error_text(exc)}", ok=False)
        self.summary.setPlainText(error_text(exc))
        show_error(self, "Import failed", exc, trace)

    def _cancelled(self) -> None:
        kept = self.job.kept if self.job else ""
        self._job_ended()
        if kept:  # the import landed; a build after it was cancelled
            self.strip.stopped(f"Cancelled after {kept}.", ok=False)
            self.summary.setPlainText(f"Kept: {kept}. The builds after it were cancelled: "
                                      "the other derivatives are unchanged (build them on the Derivatives page).")
            self.refresh_summaries()
        else:
            self.strip.stopped("Import cancelled.", ok=False)
            self.summary.setPlainText("Import cancelled before it finished: nothing was written.")
        self.cancelled.emit()
