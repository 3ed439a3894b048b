"""Sources & Import: configured sources, the Add-source dialog, and running an import."""

from __future__ import annotations

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
    QVBoxLayout,
    QWidget,
)

from ...connectors import StreamInfo
from ...errors import LithotseError
from ...jobs import ImportOutcome, import_and_build
from ...pathtext import display_paths
from ...plugins import get_plugin_manager
from ...raw.sources import make_connector
from ...workspace import Workspace, check_name
from .. import jobs
from ..common import JobStrip, dialog_buttons, error_text, labelled_row, named, scroll_area, show_error
from ..daterange import DateRangePicker
from ..forms import ConnectorForm


class AddSourceDialog(QDialog):
    """Name a source, pick a connector and fill the form drawn from its declared fields."""

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.setWindowTitle("Add source")
        named(self, "Add source")
        self.added: str | None = None
        self.form: ConnectorForm | None = None

        self.name_edit = named(QLineEdit(), "Source name",
                               "A short name: a letter first, then letters, digits, _ or -")
        self.connector_box = named(QComboBox(), "Connector", "What kind of data the source holds")
        manager = get_plugin_manager()
        for name, cls in sorted(manager.connectors().items()):
            info = cls.describe()
            self.connector_box.addItem(f"{info['title']} ({name})", name)
        self.about = QLabel("")
        self.about.setWordWrap(True)
        self.error = named(QLabel(""), "Add source error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        top = QFormLayout()
        labelled_row(top, "&Name *", self.name_edit)
        labelled_row(top, "&Connector", self.connector_box)
        top.addRow("", self.about)

        self.settings_scroll = scroll_area(None, "Connector settings")

        self.buttons, self.ok = dialog_buttons(
            self, QDialogButtonBox.StandardButton.Ok, "&Add source", "Add source",
            "Save the source; secrets go to the secrets store, never to the config", "Cancel adding a source",
            self._save)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        group = QGroupBox("Settings")
        inner = QVBoxLayout(group)
        inner.addWidget(self.settings_scroll)
        layout.addWidget(group, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

        self.connector_box.currentIndexChanged.connect(self._draw_form)
        if self.connector_box.count() == 0:
            self.about.setText("No connectors are installed: add a plugin on the Plugins page.")
            self.ok.setEnabled(False)
        self._draw_form()
        self.resize(600, 540)

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
        self.error.setText("")

    def _save(self) -> None:
        """Validate with the connector's own rules, then store via the workspace."""
        name = self.name_edit.text().strip()
        connector = self.connector_box.currentData()
        if self.form is None or connector is None:
            return
        settings, secrets = self.form.values()
        try:
            check_name(name, "source")
            get_plugin_manager().connector(connector).validate_settings({**settings, **secrets})
            self.ws.add_source(name, connector, settings, secrets)
        except LithotseError as exc:
            self.error.setText(error_text(exc))
            return
        self.added = name
        self.accept()


class SourcesPage(QWidget):
    """List of sources on the left; the selected source's import controls on the right."""

    imported = Signal(object)
    cancelled = Signal()
    sourcesChanged = Signal()

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self.job: jobs.Job | None = None
        self._streams_job: jobs.Job | None = None
        self._streams_for: str | None = None
        self._source_text = ""

        self.list = named(QListWidget(), "Sources", "Configured sources of this workspace")
        self.list.currentItemChanged.connect(lambda *_: self._show_source())
        self.add_button = named(QPushButton("&Add source…"), "Add source",
                                "Configure a new source from an installed connector")
        self.add_button.clicked.connect(self.open_add_dialog)
        self.remove_button = named(QPushButton("Remove source"), "Remove source",
                                   "Forget the selected source (landed data stays in the raw store)")
        self.remove_button.clicked.connect(self._remove_source)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(QLabel("<b>Sources</b>"))
        lv.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        lv.addLayout(row)

        self.details = named(QLabel(""), "Source details")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.streams = named(QListWidget(), "Streams to import",
                             "Tick the streams to import; none ticked imports every stream")
        self.streams.setMaximumHeight(120)
        self.picker = DateRangePicker()
        self.full = named(QCheckBox("&Full re-import (ignore what was already landed)"),
                          "Full re-import")
        self.import_button = named(QPushButton("&Import"), "Import",
                                   "Land the selected source's data for the chosen range")
        self.import_button.setDefault(True)
        self.import_button.clicked.connect(self.start_import)
        self.strip = JobStrip("Import")
        self.strip.status.setText("Choose a source and a date range, then click Import.")
        self.strip.cancelRequested.connect(self.cancel_import)
        self.summary = named(QPlainTextEdit(), "Import result")
        self.summary.setReadOnly(True)
        self.summary.setPlaceholderText("The result of the last import shows here.")

        right_inner = QWidget()
        rv = QVBoxLayout(right_inner)
        rv.addWidget(self.details)
        streams_box = QGroupBox("Streams")
        QVBoxLayout(streams_box).addWidget(self.streams)
        range_box = QGroupBox("Date range")
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
        result_layout.addWidget(self.summary)
        rv.addWidget(result_box, 2)
        right = scroll_area(right_inner, "Import controls")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([260, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.reload()

    # --- sources ---------------------------------------------------------------
    def set_workspace(self, ws: Workspace) -> None:
        self.ws = ws
        self.reload()

    def reload(self, select: str | None = None) -> None:
        current = select or (self.list.currentItem().text() if self.list.currentItem() else None)
        self.list.clear()
        for src in self.ws.sources():
            item = QListWidgetItem(src.name)
            item.setToolTip(f"connector {src.connector}")
            self.list.addItem(item)
            if src.name == current:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self._show_source()

    def selected_source(self) -> str | None:
        item = self.list.currentItem()
        return item.text() if item else None

    def open_add_dialog(self) -> AddSourceDialog:
        """Open the dialog without blocking; the list reloads when a source was added."""
        dialog = AddSourceDialog(self.ws, self)
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
                                      f"Forget source {name}? Its landed data stays in the raw store.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.ws.remove_source(name)
        except LithotseError as exc:
            show_error(self, "Cannot remove source", exc)
            return
        self.reload()
        self.sourcesChanged.emit()

    def _show_source(self) -> None:
        name = self.selected_source()
        self.streams.clear()
        running = self.job is not None
        self.import_button.setEnabled(name is not None and not running)
        self.remove_button.setEnabled(name is not None and not running)
        if name is None:
            self.details.setText("No sources yet: click <b>Add source…</b> to configure one.")
            return
        src = self.ws.source(name)
        settings = ", ".join(f"{k} = {display_paths(v)}"
                             for k, v in sorted(src.settings.items())) or "no settings"
        secrets = f"; secrets (kept outside the config): {', '.join(sorted(src.secrets))}" if src.secrets else ""
        self._source_text = f"<b>{name}</b> — connector <i>{src.connector}</i><br>{settings}{secrets}"
        self.details.setText(self._source_text)
        self._load_streams(name)

    def _load_streams(self, name: str) -> None:
        """Ask the connector for its streams off the GUI thread: some ask a server."""
        self._streams_for = name
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

    def _streams_failed(self, exc: BaseException, _trace: str) -> None:
        self._streams_job = None
        self.details.setText(f"{self._source_text}<br>Cannot open this source: {error_text(exc)}")

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
                            full=self.full.isChecked(), build=False)
        self.job.signals.progress.connect(self.strip.show_progress)
        self.job.signals.finished.connect(self._finished)
        self.job.signals.failed.connect(self._failed)
        self.job.signals.cancelled.connect(self._cancelled)
        self.import_button.setEnabled(False)
        self.remove_button.setEnabled(False)
        self.strip.started(f"Importing {name} for {rng}…")
        self.summary.setPlainText("")
        jobs.start(self.job)

    def cancel_import(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _job_ended(self) -> None:
        self.job = None
        has_source = self.selected_source() is not None
        self.import_button.setEnabled(has_source)
        self.remove_button.setEnabled(has_source)

    def _finished(self, outcome: ImportOutcome) -> None:
        self._job_ended()
        result = outcome.imported
        landings = result.landings
        records = sum(item.manifest.records for item in landings)
        inside = sum(item.manifest.records_in_range for item in landings)
        if landings:
            head = (f"Imported {len(landings)} landing(s) from {result.source}: {records:,} records, "
                    f"{inside:,} in range {result.date_range}.")
        else:
            head = (f"Nothing new from {result.source} for {result.date_range}: "
                    "every file was already landed for this range.")
        self.strip.stopped(head)
        self.summary.setPlainText("\n".join([head, *(item.summary() for item in landings),
                                             *result.skipped_lines()]))
        self.imported.emit(outcome)

    def _failed(self, exc: BaseException, trace: str) -> None:
        self._job_ended()
        self.strip.stopped(f"Import failed: {error_text(exc)}")
        self.summary.setPlainText(error_text(exc))
        show_error(self, "Import failed", exc, trace)

    def _cancelled(self) -> None:
        self._job_ended()
        self.strip.stopped("Import cancelled.")
        self.summary.setPlainText("Import cancelled before it finished.")
        self.cancelled.emit()
