"""What a connector is: declared settings, streams, fetching payloads and reading them back.

A connector plugin returns :class:`Connector` subclasses from the
``lithotse_register_connectors`` hook. The core lands each :class:`Payload` unchanged in
L1 and later asks the same connector to ``read`` it back as typed Arrow record batches,
so parsing lives in one place and landing never harmonises anything.

The contract in short (docs/plugins.md has it in full): the core, not the connector, applies
the date range, when it reads landings back; ``fetch`` uses the range only to ask the source
for less. Plugins import these names from :mod:`lithotse_desktop.plugin`.
"""

from __future__ import annotations

import datetime as dt
import enum
import fnmatch
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa

from .dates import DateRange
from .errors import ConfigError
from .progress import Progress


class FieldType(str, enum.Enum):  # noqa: UP042 - a StrEnum would change str() and f-strings of members plugins use
    """Setting kinds the desktop app knows how to draw (file picker, calendar, password box...)."""

    PATH = "path"
    URL = "url"
    TEXT = "text"
    CHOICE = "choice"
    SECRET = "secret"
    DATE = "date"
    INTEGER = "integer"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class ConfigField:
    name: str
    type: FieldType
    label: str = ""
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type.value, "label": self.label or self.name,
                "required": self.required, "default": self.default,
                "choices": list(self.choices), "help": self.help}

    def coerce(self, value: Any) -> Any:
        """Turn a text value (from the CLI or a form) into this field's Python type."""
        if value is None:
            return None
        if self.type is FieldType.INTEGER:
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"setting {self.name}: {value!r} is not a whole number") from None
        if self.type is FieldType.BOOLEAN:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"setting {self.name}: {value!r} is not true or false")
        if self.type is FieldType.CHOICE and self.choices and str(value) not in self.choices:
            raise ConfigError(f"setting {self.name}: {value!r} is not one of {', '.join(self.choices)}")
        if self.type is FieldType.DATE and value:
            try:
                dt.date.fromisoformat(str(value))
            except ValueError:
                raise ConfigError(f"setting {self.name}: {value!r} is not an ISO date") from None
        return str(value) if not isinstance(value, (str, int, float, bool)) else value


@dataclass(frozen=True)
class StreamInfo:
    """One stream a source offers: a FHIR resource type, a CSV file, a sheet, an HL7 message type.

    ``date_field`` is the column date ranges apply to (None: the stream has no dates and every
    row is in every range); ``date_fields`` are further date columns a derivative may choose.
    The column's Arrow type decides a row's day: ``date32``/``date64`` as written; a timestamp
    with a time zone, its date in the workspace zone; a timestamp without one, taken as already
    in the workspace zone; see :mod:`lithotse_desktop.dates`.

    ``key`` names the columns that identify a record when the same record can arrive in two
    different files (an export run again, a corrected or appended file, overlapping extracts):
    derivatives then keep one row per key, the newest. Without a key a record is its raw
    object and its position in that object: landing the same object again, for any range,
    never counts a row twice, but a changed file is a new object whose rows all count.

    ``person_key`` names the column(s) holding the id of the person a record is about (a FHIR
    patient reference, HL7 PID-3, a CSV ``PATIENT`` column), or is None when records carry
    none. Small-cell suppression counts distinct people per cell through it; without one it
    counts records, and derivatives say so in their lineage. A row whose person key is null
    belongs to no one known: it counts as a record but adds no person.
    """

    name: str
    date_field: str | None = None
    date_fields: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    description: str = ""
    person_key: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.person_key, str):
            object.__setattr__(self, "person_key", (self.person_key,))
        elif self.person_key is not None:
            object.__setattr__(self, "person_key", tuple(self.person_key) or None)

    def to_json(self) -> dict:
        return {"name": self.name, "date_field": self.date_field,
                "date_fields": list(self.date_fields), "key": list(self.key),
                "person_key": list(self.person_key) if self.person_key else None,
                "description": self.description}


PERSON_COLUMN_NAMES = ("patient", "patient_id", "patientid", "person", "person_id", "personid", "pid", "pt_id",
                       "pat_id", "patient_number", "patient_no", "patient_key", "subject_id", "subjectid",
                       "participant_id", "mrn", "mrn_no", "patient_mrn", "pt_mrn", "pat_mrn", "pat_mrn_id", "mrn_id",
                       "medical_record_number", "medical_record_no", "med_rec_no", "mr_no", "chart_no",
                       "chart_number", "chart_id", "unit_number", "unit_no", "ur_number", "ur_no", "urn",
                       "hospital_number", "hospital_no", "nhs_number", "nhs_no", "chi_number", "health_card_number",
                       "health_card_no", "empi", "empi_id",
                       "enterprise_id", "member_id", "memberid", "client_id", "record_id")
"""Column names taken as the person key of a table when no ``person_column`` is set (compared
by their letters and digits only, ignoring case, ``#`` read as "no": ``Patient MRN``,
``patient-mrn`` and ``PATIENT_MRN`` are all ``patient_mrn``, ``MR #`` is ``mr_no``), in this order
of preference: names of a person's own key first, then record numbers, then enterprise and
membership ids; ``record_id`` last (REDCap's participant id)."""

NO_PERSON = ("none", "-")


def person_column(names: Iterable[str], setting: Any) -> tuple[str, ...] | None:
    """The person key of a table with columns ``names``: the ``person_column`` setting when it
    is given (None when that column is missing, or when it says ``none``), else the first column
    named like a person id (:data:`PERSON_COLUMN_NAMES`)."""
    names = list(names)
    text = str(setting or "").strip()
    if text.lower() in NO_PERSON:
        return None
    if text:
        return (text,) if text in names else None
    normalized = {_letters_and_digits(n): n for n in reversed(names)}
    for wanted in PERSON_COLUMN_NAMES:
        if _letters_and_digits(wanted) in normalized:
            return (normalized[_letters_and_digits(wanted)],)
    return next(((n,) for n in names if _named_like_a_person_id(n)), None)


PERSON_ID_WORDS = frozenset({"mrn", "emrn", "cmrn", "umrn", "empi", "upi", "mpi", "phn", "nhi", "ihi", "chi", "mbi",
                             "hicn", "urn"})
"""Words that are a person's number on their own (enterprise and health-service numbers: New
Zealand's NHI, Australia's IHI, Scotland's CHI, Medicare's MBI and HICN)."""
PERSON_OWNER_WORDS = frozenset({"patient", "pat", "pt", "person", "member", "subscriber", "beneficiary", "client",
                                "resident", "participant", "subject", "enrollee", "medicaid", "medicare"})
ID_WORDS = frozenset({"id", "no", "num", "number", "nbr", "key", "sk", "durable", "identifier"})
QUALIFIER_WORDS = frozenset({"local", "enterprise", "hospital", "facility", "fac", "master", "primary", "unique",
                             "source", "internal"})
"""Words before a person's number saying whose system issued it (``Local Patient ID``, ``Enterprise MRN``)."""


def _named_like_a_person_id(name: str) -> bool:
    """A column named like a person's id though not in :data:`PERSON_COLUMN_NAMES`: a person's
    number on its own (``CMRN``, ``Enterprise MRN``, ``NHI``), or whose number it is followed by
    words saying it is one and nothing else (``PAT_NUM``, ``Pt #``, ``PatientDurableKey``,
    ``Local Patient ID``); ``Patient Visit Number``, ``patient_no_show`` or ``chi_square`` are not
    (pass 39: a visit number taken as the person counted visits as people)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.replace("#", " no "))
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    while words and words[0] in QUALIFIER_WORDS:
        words = words[1:]
    if not words:
        return False
    if words[0] in PERSON_ID_WORDS:
        return set(words[1:]) <= ID_WORDS
    if words in (["subject"], ["participant"]):
        return True
    return words[0] in PERSON_OWNER_WORDS and len(words) > 1 and set(words[1:]) <= ID_WORDS | PERSON_ID_WORDS


def _letters_and_digits(name: str) -> str:
    """A column name as compared: letters and digits only, ``#`` read as "no" (``MR #``, ``Chart #``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("#", "no"))


def missing_person_column(tables: dict[str, list[str]], setting: Any) -> str | None:
    """Why the ``person_column`` setting fits none of a source's tables (label → columns), or None.

    Connectors refuse such a source at import: a mistyped setting would otherwise count every
    table's records in place of its people and quietly weaken the small-cell rule it was set
    for. A table without the column (a code list beside the visits) is counted by records, and
    its lineage says so."""
    text = str(setting or "").strip()
    if not text or text.lower() in NO_PERSON or not tables or any(text in names for names in tables.values()):
        return None
    shown = "; ".join(f"{label}: {', '.join(names)}" for label, names in list(tables.items())[:3])
    more = f"; and {len(tables) - 3} more" if len(tables) > 3 else ""
    return f"person_column {text!r} is not a column of any table of this source ({shown}{more})"


@dataclass
class FetchRequest:
    """What an import asks of a connector.

    ``streams``: the streams to fetch. ``date_range``: the days asked for; use it to ask the
    source for less (a query, skipping files already landed for a covering range), never to
    drop rows: the core keeps only in-range rows when it reads landings back. ``state``: per
    stream, the cursors of its committed landings folded oldest first (a newer one replaces an
    older, except that ``files`` maps merge; see :class:`FileTracker`); empty when ``full``.
    ``progress``: ``update`` for messages, ``check()`` in long loops (raises when cancelled).

    A stream that turns out to hold no records to import (a workbook's ``Notes`` sheet with
    no table at the header row) is passed over with :meth:`skip` and the reason, instead of
    failing the other streams; the import shows the reason. An import whose every stream was
    skipped fails with those reasons.
    """

    source: str
    streams: list[str]
    date_range: DateRange
    state: dict[str, Any]
    full: bool = False
    progress: Progress = field(default_factory=Progress)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, stream: str, reason: str) -> None:
        """Pass over ``stream`` in this import; ``reason`` (naming the file and sheet) is shown."""
        self.skipped.append((stream, reason))


@dataclass
class Payload:
    """One file or response body to land unchanged.

    ``path`` is a local file holding the bytes (the connector's own file or a temp file it
    downloaded; ``cleanup`` is called once the core has staged and checked them). ``name`` is
    shown in listings and errors (a file's relative path). ``cursor`` (JSON data) is the stream's
    incremental state once this payload is committed; ``meta`` (JSON data) is kept in the
    manifest and comes back as ``RawObject.meta``. Neither may hold secrets. ``prefiltered``
    says the source restricted the data to the range by a rule the rows' dates cannot
    reproduce: the core then keeps every row of it instead of the in-range ones.

    ``meta["left_out"]``, when a connector sets it, counts the rows of the file it does not
    read as records, by reason (``{"total": 1, "blank": 2}`` for the total and blank rows under
    a table); imports show it beside the record count.
    """

    stream: str
    name: str
    path: Path
    media_type: str = "application/octet-stream"
    cursor: Any = None
    prefiltered: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    cleanup: Callable[[], None] | None = None


@dataclass(frozen=True)
class RawObject:
    """A landed object as a reader sees it: its bytes plus what the manifest says of it.

    ``path`` is a local file holding the bytes, except for a connector that sets
    ``reads_streams``: reading back an object from a remote store (S3), it gets ``path=None``
    and ``open``, which starts a fresh stream of the bytes on each call, so nothing is copied
    to disk first. Prefer :meth:`open_stream` when you can read a stream; :meth:`local_file`
    materialises a local copy (once, in the workspace's cache) where a real file is needed.

    ``validated`` is true when reading back a committed landing, which this same connector
    already read in full without error at landing time; a connector may then skip per-cell
    checks that cannot fail (it must still produce the same rows and types).
    """

    path: Path | None
    stream: str
    name: str
    media_type: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    validated: bool = False
    open: Callable[[], BinaryIO] | None = None
    fetch: Callable[[], Path] | None = None

    def open_stream(self) -> BinaryIO:
        """A new binary stream of the object's bytes (from its store, or the local file)."""
        if self.open is not None:
            return self.open()
        return open(self.local_file(), "rb")

    def local_file(self) -> Path:
        """A local file with the bytes: ``path``, or a copy fetched from the store now."""
        if self.path is not None:
            return Path(self.path)
        if self.fetch is None:
            raise ConfigError(f"{self.name}: this object has no local copy to read")
        return self.fetch()


NATIVE_FORMATS = ("csv", "ndjson")
"""Formats an engine may be told to read a landed object in itself (see :class:`NativeRead`)."""
NATIVE_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "date32": pa.date32(),
    "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", "UTC"), "day": pa.date32(),
    "instant": pa.timestamp("us", "UTC"), "patient_reference": pa.string(), "record": pa.string(),
}
"""How a column's value is read from its field's text, and the Arrow type it gets.

``text``: as written. ``int64``, ``float64``, ``date32``, ``timestamp`` (no offset) and
``timestamptz`` (an instant; an offset or UTC): the text trimmed of Unicode white space, empty as
null, the rest read as that type (dates ISO 8601, minutes without seconds allowed). ``day``: the
calendar day of an ISO date or date-time as written (``2024`` is 1 January, ``2024-03`` the 1st
of March, a date-time's own day whatever its offset). ``instant``: a date-time with a time of day
as an instant; null for a date alone. ``patient_reference``: the id of a ``[base/]Patient/<id>
[/_history/<v>]`` reference or of ``urn:uuid:<id>``; of several paths, the first giving an id.
``record``: the record's whole text (NDJSON: its line without surrounding white space)."""


@dataclass(frozen=True)
class NativeColumn:
    """One column of a natively read object: its name, where its text comes from — a CSV
    field's position, or for NDJSON the JSON paths (dotted member names) of which the first
    present one counts — and how the text becomes the value (a key of :data:`NATIVE_TYPES`)."""

    name: str
    field: int | tuple[str, ...]
    parse: str


@dataclass(frozen=True)
class NativeRead:
    """How an engine reads one landed object itself, giving exactly the rows and types ``read``
    gives: an engine-neutral description the engine turns into its own reader and SQL.

    ``format`` is one of :data:`NATIVE_FORMATS`; the text is ``encoding`` (``utf-8``, a byte-order
    mark allowed), records end at ``\n``, ``\r\n`` or ``\r`` and empty lines are no records.

    - ``csv``: ``width`` fields a record, split at ``delimiter``; a field in ``quote`` characters
      may hold the delimiter and line breaks, a doubled quote in it is one quote; an empty field
      is null. ``skip`` leading records are not rows (a header line); of the records after them
      only the first ``limit`` are rows (None: all), so rows the connector leaves out under the
      data (totals, blank lines) stay out.
    - ``ndjson``: a record is a line holding a JSON value (lines of white space only are none);
      with ``keep`` = (path, text) only records whose text at that path is ``text`` are rows.

    Rows are numbered in file order from 0 after those rules: that number is their ``_row``.
    """

    format: str
    columns: tuple[NativeColumn, ...]
    width: int = 1
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"
    skip: int = 0
    limit: int | None = None
    keep: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.format not in NATIVE_FORMATS:
            raise ValueError(f"native format {self.format!r}: expected one of {', '.join(NATIVE_FORMATS)}")
        for column in self.columns:
            if column.parse not in NATIVE_TYPES:
                raise ValueError(f"column {column.name!r}: parse {column.parse!r} is not one of "
                                 f"{', '.join(NATIVE_TYPES)}")
            if self.format == "csv" and not (isinstance(column.field, int) and 0 <= column.field < self.width):
                raise ValueError(f"column {column.name!r}: field {column.field!r} is not a position in the record")
            if self.format == "ndjson" and not (isinstance(column.field, tuple)
                                                and all(isinstance(p, str) and p for p in column.field)):
                raise ValueError(f"column {column.name!r}: field {column.field!r} is not a tuple of JSON paths")
        if len(self.delimiter) != 1 or len(self.quote) != 1:
            raise ValueError("a native read's delimiter and quote are one character each")

    def schema(self) -> pa.Schema:
        """The Arrow schema of the rows (what ``read`` yields for the object)."""
        return pa.schema([pa.field(c.name, NATIVE_TYPES[c.parse]) for c in self.columns])


class Connector:
    """Base class for connectors. Subclasses set the class attributes and implement the methods.

    ``name`` is what sources and manifests refer to: unique among installed plugins, never
    renamed. ``version`` is recorded in landings and derivative versions: raise it whenever
    ``read`` yields different rows for the same bytes, so derivatives rebuild. ``fields``
    declare the settings (``self.settings`` after :meth:`validate_settings`); a SECRET field's
    value comes from the secrets store.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.0.0"
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    fields: ClassVar[tuple[ConfigField, ...]] = ()
    #: True when ``read`` copes with ``RawObject.path`` being None (reading ``open_stream()``
    #: or calling ``local_file()``): remote objects are then streamed, not copied first.
    reads_streams: ClassVar[bool] = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "version": cls.version, "title": cls.title or cls.name,
                "description": cls.description, "fields": [f.to_json() for f in cls.fields]}

    @classmethod
    def validate_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        known = {f.name: f for f in cls.fields}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"connector {cls.name}: unknown setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(known) or 'none'}")
        clean: dict[str, Any] = {}
        for name, spec in known.items():
            value = settings.get(name, spec.default)
            if value in (None, "") and spec.required:
                raise ConfigError(f"connector {cls.name}: setting {name} is required")
            clean[name] = spec.coerce(value) if spec.type is not FieldType.SECRET else value
        return clean

    def check(self) -> list[str]:
        """Problems to fix before importing, as sentences; empty when all is well (optional).

        Called when a source is added or edited. The default: each PATH setting exists, and each
        URL setting answers within five seconds, given the ``token`` setting (if the connector
        has one) as a bearer token; a 401 or 403 means the token was not accepted. Override it
        for a better check; keep it quick, read-only, and free of secret values.
        """
        problems = []
        for spec in self.fields:
            value = self.settings.get(spec.name)
            if value in (None, ""):
                continue
            if spec.type is FieldType.PATH and not Path(str(value)).expanduser().exists():
                problems.append(f"{spec.label or spec.name}: {value} does not exist")
            elif spec.type is FieldType.URL:
                problem = _url_problem(str(value), self.settings.get("token"))
                if problem:
                    problems.append(f"{spec.label or spec.name}: {problem}")
        return problems

    def streams(self) -> list[StreamInfo]:
        raise NotImplementedError

    def landed_stream(self, name: str, landed: RawObject) -> StreamInfo:
        """The stream as its landings hold it, under the current settings: what builds read.

        Derivatives are built from landed objects, not from the source, which may be gone by
        then (an export folder emptied, a drive unplugged, another machine reading a shared raw
        store). ``landed`` is the stream's newest landing (not its bytes: ``path`` is None).
        The default asks the source (:meth:`stream`); a connector whose stream info comes from
        the files themselves (their columns) should answer from ``landed.meta`` instead.
        """
        return self.stream(name)

    def stream(self, name: str) -> StreamInfo:
        for info in self.streams():
            if info.name == name:
                return info
        raise ConfigError(f"stream {name!r} is not offered; streams: "
                          f"{', '.join(s.name for s in self.streams()) or 'none'}")

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        """Yield a payload per new file or response of ``request.streams`` (see FetchRequest).

        Every payload of an import is staged and read back before any is committed, so one
        that fails to read lands nothing. Raise InputError (location and reason) for a source
        that answers badly, ConfigError for settings that cannot work; any other exception is
        reported as this connector's bug (``lithotse --debug`` shows its traceback).
        """
        raise NotImplementedError

    def native_read(self, obj: RawObject) -> NativeRead | None:
        """How an engine may read this committed landing's bytes itself, or None (the default):
        then the core reads it with :meth:`read` and hands the engine the rows.

        Optional. Implement it only where the description gives exactly the rows, order and
        types ``read`` gives for the same bytes and ``obj.meta`` (the Spark engine then reads the
        object where it lies, in parallel, instead of through Python). ``obj`` has no path: decide
        from ``obj.meta`` (what ``fetch`` recorded), peeking at the first bytes through
        ``obj.open_stream()`` if need be, and return None when unsure.
        """
        return None

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        """Yield typed record batches of a landed object; raise InputError on malformed data.

        Called at import on a staged copy (``obj.validated`` false) and whenever the stream is
        read. Without a key a record is its object and position, so the same bytes and meta
        must give the same rows in the same order every time. Every batch has the date field;
        column names and types stay the same across batches, files and versions; the names
        ``_landing_id``, ``_landed_at`` and ``_row`` are the core's. Name the file and line in
        an InputError: ``InputError(f"{obj.name}, line {n}", reason)``.
        """
        raise NotImplementedError

    def survey(self, obj: RawObject, info: StreamInfo, date_range: DateRange, timezone: str,
               progress: Progress) -> dict[str, Any] | None:
        """What an import records of a staged payload, in one pass that accepts and refuses
        exactly what :meth:`read` does (optional; the default None has the core read it back).

        Spares an import the rows the build extracts later: a connector that can count without
        materialising them returns ``records``, ``records_in_range`` (rows whose day of the
        stream's ``date_field`` in ``timezone`` lies in ``date_range``; every row when the range
        is open or the stream has no date field, none without a date otherwise), ``date_min``
        and ``date_max`` (ISO days of the in-file dates, or None). Errors as for :meth:`read`;
        a cancelled ``progress`` should stop it (raise :class:`~lithotse_desktop.errors.Cancelled`).
        """
        return None


def _url_problem(url: str, token: Any) -> str | None:
    """Why ``url`` cannot be used, or None: no answer, or the token refused (401/403)."""
    import urllib.error
    import urllib.request

    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return (f"{url} did not accept the token (HTTP {exc.code})" if token
                    else f"{url} asks for a token (HTTP {exc.code})")
        return None  # the server answers; a 404 or 405 on its base address is no problem
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} does not answer ({reason})"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class FileTracker:
    """Incremental state for file sources: which files (by path, size and mtime) were landed,
    and for which date ranges.

    A payload's cursor names its file only: ``{"files": {path: {"size", "mtime_ns"}}}``; a
    connector may add keys of its own to the file's entry or beside ``files`` (the newest
    landing's value wins). The range a file was landed for is its landing's, stored once in
    the manifest: the core folds a stream's landings into the state a fetch starts from (see
    :func:`fold_cursor`), where each unchanged file lists the ``ranges`` (``DateRange.to_json``)
    it was landed for. A file is new when it changed, or when the requested range is not
    covered by one of those.
    """

    seen: dict[str, dict]

    @classmethod
    def from_cursor(cls, cursor: Any) -> FileTracker:
        return cls(dict((cursor or {}).get("files", {})) if isinstance(cursor, dict) else {})

    def unchanged(self, path: Path) -> dict | None:
        """What was recorded of the file when it was last landed, if it has not changed since."""
        entry = self.seen.get(str(path))
        if entry is None:
            return None
        st = os.stat(path)
        if entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns:
            return None
        return entry

    def is_new(self, path: Path, rng: DateRange) -> bool:
        entry = self.unchanged(path)
        return entry is None or not any(DateRange.from_json(r).covers(rng) for r in entry.get("ranges", []))

    def mark(self, path: Path, rng: DateRange) -> dict:
        """Record a file as landed for ``rng`` and return the cursor to store with its payload.

        The cursor names only this file, and not the range (the manifest holds it): the core
        merges the ``files`` maps of a stream's landings, so manifests stay small however many
        files a folder holds or however many ranges a file was landed for."""
        st = os.stat(path)
        entry = self.unchanged(path) or {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        self.seen[str(path)] = _with_range(entry, rng)
        return {"files": {str(path): {k: v for k, v in entry.items() if k != "ranges"}}}


def _with_range(entry: dict, rng: DateRange) -> dict:
    """A file entry whose ``ranges`` also hold ``rng``; ranges it covers are dropped as redundant."""
    ranges = [DateRange.from_json(r) for r in entry.get("ranges", [])]
    if not any(r.covers(rng) for r in ranges):
        ranges = [r for r in ranges if not rng.covers(r)] + [rng]
    return {**entry, "ranges": [r.to_json() for r in ranges]}


def fold_cursor(state: Any, cursor: Any, landed: DateRange) -> Any:
    """A stream's incremental state after one more landing (of range ``landed``) with ``cursor``.

    A newer cursor replaces the state, except that ``files`` maps (see :class:`FileTracker`)
    are merged: each file the cursor names gains the landing's range, added to the ranges it
    had while unchanged (same size and mtime). Cursors of manifests written before version 2
    list each file's ``ranges`` as ``[from, to]`` pairs themselves; those are read too.

    The ``files`` map of ``state`` is updated in place (folding a stream of many landings then
    costs one step per file, not a copy of the map per landing); ``cursor`` is left as it is.
    """
    files = cursor.get("files") if isinstance(cursor, dict) else None
    if not isinstance(files, dict):
        return cursor
    before = state.get("files") if isinstance(state, dict) else None
    merged = before if isinstance(before, dict) else {}
    for path, entry in files.items():
        if not isinstance(entry, dict):
            continue
        known = merged.get(path)
        if not isinstance(known, dict):
            known = {}
        same = known.get("size") == entry.get("size") and known.get("mtime_ns") == entry.get("mtime_ns")
        folded = {**entry, "ranges": known.get("ranges", []) if same else []}
        for old in entry.get("ranges", []):
            if isinstance(old, (list, tuple)) and len(old) == 2:
                folded = _with_range(folded, DateRange.parse(*old))
        merged[path] = _with_range(folded, landed)
    return {**(state if isinstance(before, dict) else {}), **cursor, "files": merged}


def files_to_fetch(request: FetchRequest, entries: Iterable[Any]) -> Iterator[tuple[Any, Any, FileTracker]]:
    """``(entry, prior cursor, tracker)`` for each file whose stream was asked for and that is
    new since the stream's last landing (or every one, for a full import).

    ``entries`` are a file connector's own records with ``stream`` and ``path`` attributes,
    any number per stream (one file may feed several streams); they are read one at a time,
    so a generator may decide an entry's streams as it goes. The entries of a stream share
    its tracker: give each payload ``cursor=tracker.mark(entry.path, request.date_range)``, to
    which keys of your own may be added; that is what makes the file not new next time.
    """
    wanted = set(request.streams)
    trackers: dict[str, FileTracker] = {}
    for entry in entries:
        if entry.stream not in wanted:
            continue
        request.progress.check()
        prior = request.state.get(entry.stream)
        tracker = trackers.get(entry.stream)
        if tracker is None:
            tracker = trackers[entry.stream] = FileTracker.from_cursor(prior)
        if request.full or tracker.is_new(entry.path, request.date_range):
            yield entry, prior, tracker


def list_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Files below ``root`` (or ``root`` itself) whose names match a glob, ignoring case.

    Hidden files and folders (``.x``, macOS ``._x``) and Office lock files (``~$x``) are skipped.
    """
    root = Path(root).expanduser()
    if root.is_file():
        return [root]
    if not root.exists():
        raise ConfigError(f"{root}: no such file or folder")
    lowered = [p.lower() for p in patterns]
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if any(part.startswith((".", "~$")) for part in rel) or not path.is_file():
            continue
        if any(fnmatch.fnmatch(path.name.lower(), p) for p in lowered):
            found.append(path)
    return sorted(found)
