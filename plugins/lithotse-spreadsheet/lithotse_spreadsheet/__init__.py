"""Lithotse connector for spreadsheets (.xlsx, .xlsm, .xls, .ods): one stream per sheet.

Stream names: when ``path`` is a single workbook, the stream is the sheet name
(``Visits``, ``Lab Results`` becomes ``Lab_Results``); when it is a folder, the stream is
``<file path without suffix>.<sheet>`` (``clinic.Visits``, ``2024/clinic.Visits`` becomes
``2024.clinic.Visits``), with anything but letters, digits, ``.``, ``_`` and ``-``
replaced by ``_``. Names that would collide are refused, never renumbered, so a stream
keeps its meaning as files and sheets come and go. Sheets without any cell are not offered
unless named in the ``sheets`` setting.

L1 keeps files unchanged, so each sheet's payload is the whole workbook; the sheet it
stands for travels in the payload metadata (``meta["sheet"]``) with the header row, the
kept columns and their types, and ``read`` reads only that sheet. (The core stores
objects per stream, so a workbook landed for three sheets is stored three times.)

Column types come from every row of the sheet at import: whole numbers become int64,
other numbers float64, date cells date32 (timestamp when some carry a time), TRUE/FALSE
bool, anything mixed text. The date column is the ``date_column`` setting (comma-separated
alternatives, first present wins) or detected: the first column with a date-like name
whose first value is a date, else the first column holding only dates. The person key is
the ``person_column`` setting, or else a column named like a person id (``PATIENT``,
``patient_id``, ``MRN``...).

Column names are the header row's text by the rule of ``lithotse_desktop.names`` (shared with
the CSV connector). A sheet without a table at the header row (no such row, a blank one, or
none of the ``date_column`` alternatives) is passed over with ``FetchRequest.skip`` and its
reason, unless the ``sheets`` setting names it. Blank rows are never records, and total rows
under the data (the first filled cell a total label, no date) are left out; the landing's
meta records the last row of data and counts what was left out (``left_out``). See README.md.
"""

from __future__ import annotations

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

from .book import NoTable, SheetLayout, analyze, batches, guarded, open_book, safe, where, worksheets

__all__ = ["SpreadsheetConnector", "lithotse_register_connectors"]

MEDIA_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
    ".xls": "application/vnd.ms-excel",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
}


def _split(text: Any) -> list[str]:
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


def _resolve(text: Any, names: list[str]) -> list[str]:
    """The columns a comma-separated setting names, as the sheet spells them (case aside);
    a name the sheet lacks is kept as written."""
    by_fold = {n.casefold(): n for n in names}
    return [n if n in names else by_fold.get(n.casefold(), n)
            for n in split_names(text, set(names) | set(by_fold))]


@dataclass(frozen=True)
class _Entry:
    stream: str
    path: Path
    label: str
    sheet: str


class SpreadsheetConnector(Connector):
    name = "spreadsheet"
    version = "0.2.0"
    title = "Spreadsheets (Excel, LibreOffice)"
    description = ("Workbooks kept by hand or exported from a portal: one stream per sheet, "
                   "typed columns, a date column chosen or detected.")
    fields = (
        ConfigField("path", FieldType.PATH, "Workbook or folder", required=True,
                    help="An .xlsx/.xlsm/.xls/.ods file, or a folder searched (with subfolders) for them."),
        ConfigField("date_column", FieldType.TEXT, "Date column",
                    help="Column holding each record's date; comma-separate alternatives. "
                         "Detected when empty."),
        ConfigField("header_row", FieldType.INTEGER, "Header row", default=1,
                    help="The row (1 = first) holding the column names; rows above it are ignored."),
        ConfigField("key", FieldType.TEXT, "Record key columns",
                    help="Comma-separated columns identifying a record; applied to the sheets "
                         "that have all of them."),
        ConfigField("person_column", FieldType.TEXT, "Person column",
                    help="Column holding the id of the person each row is about (a patient id, an "
                         "MRN): small-cell suppression counts distinct people through it. When empty, "
                         "a column named PATIENT, patient_id, person_id, MRN, subject_id or member_id "
                         "is taken; 'none' counts rows instead."),
        ConfigField("sheets", FieldType.TEXT, "Sheets",
                    help="Comma-separated sheet names to import; all sheets with data when empty."),
    )

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.root = Path(str(self.settings["path"])).expanduser()
        header_row = self.settings.get("header_row")
        self.header_row = 1 if header_row in (None, "") else int(header_row)
        if self.header_row < 1:
            raise ConfigError(f"setting header_row: {header_row!r} must be 1 or more")
        self.date_setting = self.settings.get("date_column")
        self.date_columns = _split(self.date_setting)
        self.key_setting = self.settings.get("key")
        self.sheets = _split(self.settings.get("sheets"))
        self._entry_list: list[_Entry] | None = None
        self._peeked: dict[tuple[Path, str], SheetLayout | InputError] = {}

    def _files(self) -> list[tuple[Path, Path]]:
        if self.root.is_file():
            return [(self.root, Path(self.root.name))]
        found = []
        for path in list_files(self.root, ["*"]):
            relative = path.relative_to(self.root)
            if any(part.startswith((".", "~$")) for part in relative.parts):
                continue
            if path.suffix.lower() in MEDIA_TYPES:
                found.append((path, relative))
        if not found:
            raise ConfigError(f"{self.root}: no spreadsheets (.xlsx, .xlsm, .xls, .ods)")
        return found

    def _stream_name(self, relative: Path, sheet: str) -> str:
        if self.root.is_file():
            return safe(sheet)
        parts = [*relative.parent.parts, relative.stem]
        return ".".join([*(safe(p) for p in parts), safe(sheet)])

    def _entries(self) -> list[_Entry]:
        if self._entry_list is not None:
            return self._entry_list
        wanted = {s.casefold(): s for s in self.sheets}
        matched: set[str] = set()
        entries: dict[str, _Entry] = {}
        for path, relative in self._files():
            label = relative.as_posix()
            with open_book(path, label) as book:
                names = worksheets(book, label)
                for sheet in names:
                    if wanted and sheet.casefold() not in wanted:
                        continue
                    matched.add(sheet.casefold())
                    if not wanted and self._is_empty(book, label, sheet):
                        continue
                    entry = _Entry(self._stream_name(relative, sheet), path, label, sheet)
                    if entry.stream in entries:
                        other = entries[entry.stream]
                        raise ConfigError(f"{other.label} sheet {other.sheet!r} and {label} sheet "
                                          f"{sheet!r} would both be stream {entry.stream!r}")
                    entries[entry.stream] = entry
            if self.root.is_file() and set(wanted) - matched:
                missing = next(wanted[k] for k in wanted if k not in matched)
                raise InputError(where(label, missing), f"no such sheet; sheets: {', '.join(names)}")
        if set(wanted) - matched:
            missing = next(wanted[k] for k in wanted if k not in matched)
            raise InputError(where(self.root.name, missing), "no workbook in the folder has this sheet")
        self._entry_list = list(entries.values())
        return self._entry_list

    @staticmethod
    def _is_empty(book: Any, label: str, sheet: str) -> bool:
        with guarded(where(label, sheet), "cannot be read"):
            data = book.get_sheet_by_name(sheet)
            return data.height == 0 or data.width == 0

    def _peek(self, entry: _Entry) -> SheetLayout:
        ident = (entry.path, entry.sheet)
        if ident not in self._peeked:
            try:
                with open_book(entry.path, entry.label) as book:
                    self._peeked[ident] = analyze(book, entry.label, entry.sheet, self.header_row,
                                                  sample_only=True, detect=not self.date_columns)
            except InputError as exc:
                self._peeked[ident] = exc
        found = self._peeked[ident]
        if isinstance(found, InputError):
            raise found
        return found

    def _date_field(self, layout: SheetLayout) -> str | None:
        if self.date_columns:
            return next((c for c in _resolve(self.date_setting, layout.names) if c in layout.names), None)
        return layout.date_column

    def _key(self, layout: SheetLayout) -> tuple[str, ...]:
        key = tuple(_resolve(self.key_setting, layout.names))
        return key if key and all(k in layout.names for k in key) else ()

    def _named(self, entry: _Entry) -> bool:
        return entry.sheet.casefold() in {s.casefold() for s in self.sheets}

    def streams(self) -> list[StreamInfo]:
        infos = []
        for entry in self._entries():
            title = f"{entry.label}, sheet {entry.sheet!r}"
            try:
                layout = self._peek(entry)
            except NoTable as exc:
                infos.append(StreamInfo(entry.stream, description=f"{title} (no table: {exc.reason}; "
                                                                  "skipped at import)"))
                continue
            except InputError as exc:
                infos.append(StreamInfo(entry.stream, description=f"{title} (unreadable: {exc})"))
                continue
            infos.append(self._info(entry.stream, title, layout))
        return infos

    def _info(self, stream: str, title: str, layout: SheetLayout) -> StreamInfo:
        date_field = self._date_field(layout)
        date_fields = tuple(dict.fromkeys([*([date_field] if date_field else []), *layout.date_columns]))
        return StreamInfo(stream, date_field, date_fields, self._key(layout), title,
                          person_column(layout.names, self.settings.get("person_column")))

    def landed_stream(self, name: str, landed: RawObject) -> StreamInfo:
        """From the sheet layout the landing recorded, so a build never needs the workbook."""
        layout = SheetLayout.from_meta(landed.meta or {})
        if layout is None:
            return self.stream(name)
        return self._info(name, f"{landed.name}, sheet {layout.sheet!r}", layout)

    def _tables(self) -> dict[str, list[str]]:
        """The columns of every readable sheet of the source, by file and sheet."""
        tables = {}
        for entry in self._entries():
            try:
                tables[where(entry.label, entry.sheet)] = self._peek(entry).names
            except (InputError, NoTable):
                continue
        return tables

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        if reason := missing_person_column(self._tables(), self.settings.get("person_column")):
            raise ConfigError(reason)
        for entry, prior, tracker in files_to_fetch(request, self._entries()):
            try:
                peeked = self._peek(entry)
                date_field = self._date_field(peeked)
                if self.date_columns and date_field is None:
                    raise NoTable(where(entry.label, entry.sheet, self.header_row),
                                  f"no date column {' or '.join(map(repr, self.date_columns))}; "
                                  f"columns: {', '.join(peeked.names)}")
            except NoTable as exc:
                if self._named(entry):
                    raise
                request.skip(entry.stream, str(exc))
                continue
            seed = prior.get("columns") if isinstance(prior, dict) else None
            request.progress.update(f"checking {entry.label}, sheet {entry.sheet}")
            with open_book(entry.path, entry.label) as book:
                layout = analyze(book, entry.label, entry.sheet, self.header_row,
                                 date_column=date_field, detect=False,
                                 seed=seed if isinstance(seed, dict) else None,
                                 check=request.progress.check)
            cursor = tracker.mark(entry.path, request.date_range)
            cursor["columns"] = dict(zip(layout.names, layout.kinds, strict=True))
            media = MEDIA_TYPES.get(entry.path.suffix.lower(), "application/octet-stream")
            yield Payload(entry.stream, entry.label, entry.path, media, cursor=cursor,
                          meta=layout.to_meta())

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        meta = obj.meta or {}
        layout = SheetLayout.from_meta(meta)
        sheet = layout.sheet if layout else meta.get("sheet")
        if not isinstance(sheet, str):
            raise InputError(obj.name, "the landing does not say which sheet it holds (meta['sheet'])")
        try:
            with open_book(obj.local_file(), obj.name) as book:
                if layout is None:
                    layout = analyze(book, obj.name, sheet, self.header_row)
                yield from batches(book, obj.name, layout)
        except InputError:
            raise
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            raise InputError(where(obj.name, sheet), f"cannot be read: {exc}") from None


@hookimpl
def lithotse_register_connectors() -> list[type[Connector]]:
    return [SpreadsheetConnector]
