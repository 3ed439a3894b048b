"""Lithotse connector for CSV and TSV files: one stream per file, landed byte for byte.

Stream names come from the file's path below the configured folder without its suffix,
with folders joined by dots and anything but letters, digits, ``.``, ``_`` and ``-``
replaced by ``_`` (``synthea-conditions.csv`` is stream ``synthea-conditions``,
``2024/labs.tsv`` is ``2024.labs``). Two files that would get the same name are refused
rather than renamed, so a stream never changes meaning when files are added.

Encoding (byte-order mark, else UTF-8, else cp1252), delimiter (comma, semicolon, tab or
pipe) and column types are decided from the whole file at import and recorded in the
landing's metadata; reading a landing back uses that record. The date column is the
``date_column`` setting (a comma-separated list: the first one present in a file wins)
or else detected: the first column whose first values are all ISO dates or date-times,
preferring one whose name looks like a date (``START``, ``date``, ``admit_date``...). The
person key is the ``person_column`` setting or else a column named like a person id
(``PATIENT``, ``patient_id``, ``MRN``...; see ``lithotse_desktop.plugin.person_column``).

Column names are the header line's text by the rule of ``lithotse_desktop.names`` (shared with
the spreadsheet connector). Blank and total records after the last data record (the first
filled field a total label, no ISO date) are left out: the layout records how many records
the file's data holds and counts what was left out (``left_out``). See README.md.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lithotse_desktop.plugin import (
    ConfigError,
    ConfigField,
    Connector,
    FetchRequest,
    FieldType,
    InputError,
    NativeColumn,
    NativeRead,
    Payload,
    RawObject,
    StreamInfo,
    files_to_fetch,
    hookimpl,
    list_files,
    missing_person_column,
    person_column,
    split_names,
)

from .parse import Layout, analyze, peek, typed_batches

NATIVE_ENCODINGS = ("utf-8", "utf-8-sig")
"""Encodings an engine is asked to read itself; a landing in any other is read here."""

__all__ = ["CsvConnector", "lithotse_register_connectors", "stream_name"]

_DELIMITER_WORDS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}


def _split(text: Any) -> list[str]:
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


def _resolve(text: Any, names: list[str]) -> list[str]:
    """The columns a comma-separated setting names, as the file spells them (case aside);
    a name the file lacks is kept as written."""
    by_fold = {n.casefold(): n for n in names}
    return [n if n in names else by_fold.get(n.casefold(), n)
            for n in split_names(text, set(names) | set(by_fold))]


def stream_name(relative: Path) -> str:
    """A stable, safe stream name for a file's path relative to the configured folder."""
    parts = [*relative.parent.parts, relative.stem]
    return ".".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._") or "file" for part in parts)


@dataclass(frozen=True)
class _Entry:
    stream: str
    path: Path
    label: str


class CsvConnector(Connector):
    name = "csv"
    version = "0.2.0"
    title = "CSV / TSV files"
    description = ("Delimited text exports (EHR extracts, Synthea, lab lists): one stream per "
                   "file, typed columns, a date column chosen or detected.")
    reads_streams = True
    fields = (
        ConfigField("path", FieldType.PATH, "File or folder", required=True,
                    help="A CSV/TSV file, or a folder searched (with subfolders) for matching files."),
        ConfigField("date_column", FieldType.TEXT, "Date column",
                    help="Column holding each record's date; comma-separate alternatives for "
                         "folders of different files. Detected when empty."),
        ConfigField("delimiter", FieldType.TEXT, "Delimiter",
                    help="One character, or comma/semicolon/tab/pipe. Detected when empty."),
        ConfigField("encoding", FieldType.TEXT, "Encoding",
                    help="e.g. utf-8, cp1252, latin-1. Detected when empty."),
        ConfigField("key", FieldType.TEXT, "Record key columns",
                    help="Comma-separated columns identifying a record (e.g. an encounter id); "
                         "applied to the files that have all of them."),
        ConfigField("person_column", FieldType.TEXT, "Person column",
                    help="Column holding the id of the person each record is about (a patient id, "
                         "an MRN): small-cell suppression counts distinct people through it. When "
                         "empty, a column named PATIENT, patient_id, person_id, MRN, subject_id or "
                         "member_id is taken; 'none' counts records instead."),
        ConfigField("pattern", FieldType.TEXT, "File patterns", default="*.csv,*.tsv",
                    help="Comma-separated globs matched case-insensitively against file names."),
    )

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.root = Path(str(self.settings["path"])).expanduser()
        self.patterns = [p.lower() for p in _split(self.settings.get("pattern") or "*.csv,*.tsv")]
        self.date_setting = self.settings.get("date_column")
        self.date_columns = _split(self.date_setting)
        self.key_setting = self.settings.get("key")
        self.delimiter = self._delimiter(self.settings.get("delimiter"))
        self.encoding = self._encoding(self.settings.get("encoding"))
        self._entry_list: list[_Entry] | None = None
        self._peeked: dict[Path, tuple[list[str], str | None, list[str]] | InputError] = {}

    @staticmethod
    def _delimiter(value: Any) -> str | None:
        if value in (None, ""):
            return None
        text = str(value)
        text = _DELIMITER_WORDS.get(text.strip().lower(), text)
        if len(text) != 1 or text in "\"\r\n":
            raise ConfigError(f"setting delimiter: {value!r} is not one character "
                              "(or comma, semicolon, tab, pipe)")
        return text

    @staticmethod
    def _encoding(value: Any) -> str | None:
        if value in (None, ""):
            return None
        try:
            return codecs.lookup(str(value).strip()).name
        except LookupError:
            raise ConfigError(f"setting encoding: {value!r} is not an encoding Python knows") from None

    def _entries(self) -> list[_Entry]:
        if self._entry_list is not None:
            return self._entry_list
        if self.root.is_file():
            found = [(self.root, Path(self.root.name))]
        else:
            found = []
            for path in list_files(self.root, ["*"]):
                relative = path.relative_to(self.root)
                if any(part.startswith((".", "~$")) for part in relative.parts):
                    continue
                if any(fnmatch.fnmatch(path.name.lower(), p) for p in self.patterns):
                    found.append((path, relative))
            if not found:
                raise ConfigError(f"{self.root}: no files matching {', '.join(self.patterns)}")
        entries: dict[str, _Entry] = {}
        for path, relative in found:
            entry = _Entry(stream_name(relative), path, relative.as_posix())
            if entry.stream in entries:
                raise ConfigError(f"{entries[entry.stream].label} and {entry.label} would both be "
                                  f"stream {entry.stream!r}; narrow the pattern setting")
            entries[entry.stream] = entry
        self._entry_list = list(entries.values())
        return self._entry_list

    def _peek(self, entry: _Entry) -> tuple[list[str], str | None, list[str]]:
        if entry.path not in self._peeked:
            try:
                self._peeked[entry.path] = peek(entry.path, entry.label, encoding=self.encoding,
                                                delimiter=self.delimiter)
            except InputError as exc:
                self._peeked[entry.path] = exc
        found = self._peeked[entry.path]
        if isinstance(found, InputError):
            raise found
        return found

    def _date_field(self, names: list[str], detected: str | None) -> str | None:
        if self.date_columns:
            return next((c for c in _resolve(self.date_setting, names) if c in names), None)
        return detected

    def _key(self, names: list[str]) -> tuple[str, ...]:
        key = tuple(_resolve(self.key_setting, names))
        return key if key and all(k in names for k in key) else ()

    def streams(self) -> list[StreamInfo]:
        infos = []
        for entry in self._entries():
            try:
                names, detected, dated = self._peek(entry)
            except InputError as exc:
                infos.append(StreamInfo(entry.stream, description=f"{entry.label} (unreadable: {exc})"))
                continue
            infos.append(self._info(entry.stream, entry.label, names, detected, dated))
        return infos

    def _info(self, stream: str, label: str, names: list[str], detected: str | None,
              dated: list[str]) -> StreamInfo:
        date_field = self._date_field(names, detected)
        date_fields = tuple(dict.fromkeys([*([date_field] if date_field else []), *dated]))
        return StreamInfo(stream, date_field, date_fields, self._key(names), label,
                          person_column(names, self.settings.get("person_column")))

    def landed_stream(self, name: str, landed: RawObject) -> StreamInfo:
        """From the columns the landing recorded, so a build never needs the source folder."""
        layout = Layout.from_meta(landed.meta or {})
        if layout is None:
            return self.stream(name)
        return self._info(name, landed.name, layout.names, layout.date_column, layout.date_columns)

    def _tables(self) -> dict[str, list[str]]:
        """The columns of every readable file of the source, by label."""
        tables = {}
        for entry in self._entries():
            try:
                tables[entry.label] = self._peek(entry)[0]
            except InputError:
                continue
        return tables

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        if reason := missing_person_column(self._tables(), self.settings.get("person_column")):
            raise ConfigError(reason)
        for entry, prior, tracker in files_to_fetch(request, self._entries()):
            names, detected, _ = self._peek(entry)
            date_field = self._date_field(names, detected)
            if self.date_columns and date_field is None:
                raise InputError(f"{entry.label}, line 1",
                                 f"no date column {' or '.join(map(repr, self.date_columns))}; "
                                 f"columns: {', '.join(names)}")
            seed = prior.get("columns") if isinstance(prior, dict) else None
            request.progress.update(f"checking {entry.label}")
            layout = analyze(entry.path, entry.label, encoding=self.encoding,
                             delimiter=self.delimiter, date_column=date_field, detect=False,
                             seed=seed if isinstance(seed, dict) else None,
                             check=request.progress.check)
            cursor = tracker.mark(entry.path, request.date_range)
            cursor["columns"] = dict(zip(layout.names, layout.kinds, strict=True))
            media = "text/tab-separated-values" if layout.delimiter == "\t" else "text/csv"
            yield Payload(entry.stream, entry.label, entry.path, media, cursor=cursor,
                          meta=layout.to_meta())

    def native_read(self, obj: RawObject) -> NativeRead | None:
        """The landing's recorded layout as a native read: the header line skipped, every field
        as text typed by its recorded kind, the blank and total records under the data left
        out by their recorded count. Landings without a layout, or in an encoding other than
        UTF-8, are read here."""
        layout = Layout.from_meta(obj.meta or {})
        if layout is None or layout.encoding.lower() not in NATIVE_ENCODINGS or layout.delimiter in "\"\r\n":
            return None
        columns = tuple(NativeColumn(name, i, "text" if kind == "string" else kind)
                        for i, (name, kind) in enumerate(zip(layout.names, layout.kinds, strict=True)))
        # a file recorded with nothing under its data has no limit: every record below the header
        # is a row, and the engine need not count them to know where the data ends
        nothing_left_out = "left_out" in (obj.meta or {}) and not any(layout.left_out.values())
        limit = None if nothing_left_out else layout.data_records
        return NativeRead("csv", columns, len(columns), delimiter=layout.delimiter, quote='"',
                          encoding="utf-8", skip=1, limit=limit)

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        try:
            layout = Layout.from_meta(obj.meta or {})
            if obj.path is None and layout is not None and obj.validated:
                # a committed landing in a remote store: stream it, its layout is on record
                yield from typed_batches(None, obj.name, layout, trusted=True, opener=obj.open_stream)
                return
            path = obj.local_file()
            if layout is None:
                layout = analyze(path, obj.name, encoding=self.encoding, delimiter=self.delimiter)
            yield from typed_batches(path, obj.name, layout, trusted=obj.validated)
        except InputError:
            raise
        except (pa.ArrowException, UnicodeError, ValueError, TypeError, OSError, csv.Error) as exc:
            raise InputError(obj.name, f"cannot be read: {exc}") from None


@hookimpl
def lithotse_register_connectors() -> list[type[Connector]]:
    return [CsvConnector]
