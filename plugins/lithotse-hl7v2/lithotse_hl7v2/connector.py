"""The ``hl7v2`` connector: files of HL7 v2 messages, landed unchanged, read back per message type.

Streams:

* ``messages`` - one row per message of any type (the header, patient id and segment list),
  so every message lands somewhere even when no detail stream knows its type;
* ``adt`` - one row per ADT message (PID/PV1 visit data);
* ``oru`` - one row per OBX of an ORU message, with its OBR.

A file lands once per stream it feeds (always ``messages``; ``adt``/``oru`` when it holds
such messages), byte for byte; only ``read`` normalises line ends, MLLP framing and
batch envelopes. Incremental state is the core's, one FileTracker per stream (``files_to_fetch``).
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lithotse_desktop.plugin import (
    ConfigField,
    Connector,
    FetchRequest,
    FieldType,
    InputError,
    Payload,
    RawObject,
    StreamInfo,
    files_to_fetch,
    list_files,
)

from .framing import Unit, msh_fields, read_units
from .records import DETAIL_STREAMS, SCHEMAS, TYPE_CODE, ParsedMessage, Rejected, parse_message

DEFAULT_PATTERNS = ("*.hl7", "*.txt", "*.msg")
MEDIA_TYPE = "x-application/hl7-v2+er7"
BATCH_ROWS = 5000


@dataclass(frozen=True)
class _FileStream:
    """A file and one stream it may feed: the unit the core's incremental check works on."""

    stream: str
    path: Path
    name: str


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _message_type(unit: Unit) -> str | None:
    """MSH-9.1 from raw bytes, for routing a file to streams without parsing it."""
    fields = msh_fields(unit.segments[0])
    if len(fields) <= 9 or len(fields[2]) < 1:
        return None
    code = fields[9].split(fields[2][:1])[0].strip()
    return code.decode("latin-1") if code else None


class Hl7v2Connector(Connector):
    name = "hl7v2"
    reads_streams = True  # files are read front to back, so an S3 object streams as it is read
    version = "0.1.0"
    title = "HL7 v2 messages"
    description = ("Files of HL7 v2 messages (ER7 pipe format; CR, LF or CRLF; MLLP framing; "
                   "FHS/BHS batches): ADT visits and ORU results.")
    fields = (
        ConfigField("path", FieldType.PATH, "File or folder", required=True,
                    help="An HL7 file, or a folder searched recursively."),
        ConfigField("pattern", FieldType.TEXT, "File pattern", default="",
                    help="File-name glob(s), comma-separated, any letter case; "
                         "default *.hl7, *.txt, *.msg."),
    )

    def streams(self) -> list[StreamInfo]:
        return [
            StreamInfo("messages", date_field="message_datetime",
                       date_fields=("message_datetime",), key=("message_control_id",), person_key=("patient_id",),
                       description="One row per message of any type: MSH header, patient id, "
                                   "segment ids."),
            StreamInfo("adt", date_field="effective_datetime",
                       date_fields=("effective_datetime", "admit_datetime", "discharge_datetime",
                                    "event_datetime"),
                       key=("message_control_id",), person_key=("patient_id",),
                       description="One row per ADT message: patient (PID) and visit (PV1). "
                                   "Date: admit date/time, else the event date/time."),
            StreamInfo("oru", date_field="effective_datetime",
                       date_fields=("effective_datetime", "result_datetime",
                                    "observation_datetime"),
                       key=("message_control_id", "obx_seq"), person_key=("patient_id",),
                       description="One row per OBX result with its OBR. Date: OBX-14, else "
                                   "OBR-7, else MSH-7."),
        ]

    def _files(self, root: Path) -> list[Path]:
        """Files whose name matches a pattern in any letter case, skipping hidden files and
        folders (editor backups and macOS ``._x.hl7`` forks would otherwise fail the import)."""
        given = [p.strip().lower() for p in str(self.settings.get("pattern") or "").split(",")]
        patterns = [p for p in given if p] or list(DEFAULT_PATTERNS)
        if root.is_file():
            return [root]
        found = []
        for path in list_files(root, ["*"]):
            parts = path.relative_to(root).parts
            if any(part.startswith(".") for part in parts):
                continue
            if any(fnmatch.fnmatchcase(path.name.lower(), p) for p in patterns):
                found.append(path)
        return found

    def _survey(self, path: Path, name: str) -> tuple[set[str], Counter]:
        """Streams a file feeds and its message types.

        A file whose framing or message types look wrong feeds every stream, so that reading
        it rejects the file whichever streams the import asked for.
        """
        types: Counter = Counter()
        broken = False
        try:
            with open(path, "rb") as fh:
                for unit in read_units(fh):
                    code = _message_type(unit) if unit.is_message else None
                    broken = broken or code is None or not TYPE_CODE.fullmatch(code)
                    types[code or "?"] += 1
        except OSError as exc:
            raise InputError(name, f"cannot read: {exc.strerror or exc}") from None
        if broken:
            return {s.name for s in self.streams()}, types
        return {"messages"} | {DETAIL_STREAMS[t] for t in types if t in DETAIL_STREAMS}, types

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        root = Path(self.settings["path"]).expanduser()
        order = [s.name for s in self.streams() if s.name in request.streams]
        entries = (_FileStream(stream, path, path.relative_to(root).as_posix() if root.is_dir() else path.name)
                   for path in self._files(root) for stream in order)
        surveyed: tuple[Path, set[str], Counter] | None = None
        for entry, _prior, tracker in files_to_fetch(request, entries):
            if surveyed is None or surveyed[0] != entry.path:
                surveyed = (entry.path, *self._survey(entry.path, entry.name))
            _, feeds, types = surveyed
            if entry.stream in feeds:
                yield Payload(entry.stream, entry.name, entry.path, MEDIA_TYPE,
                              cursor=tracker.mark(entry.path, request.date_range),
                              meta={"hl7_stream": entry.stream, "file": entry.name,
                                    "message_types": dict(sorted(types.items()))})

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        """Rows of ``obj.stream``; every message of the file is validated whatever the stream."""
        schema = SCHEMAS[obj.stream]
        rows: list[dict[str, Any]] = []
        total = rejected = 0
        first_error: tuple[Unit, Rejected] | None = None
        emitted = False
        try:
            with obj.open_stream() as fh:
                for unit in read_units(fh):
                    total += 1
                    try:
                        parsed: ParsedMessage = parse_message(unit)
                    except Rejected as exc:
                        rejected += 1
                        first_error = first_error or (unit, exc)
                        continue
                    if first_error is None:
                        rows.extend(parsed.rows(obj.stream))
                        if len(rows) >= BATCH_ROWS:
                            yield pa.RecordBatch.from_pylist(rows, schema=schema)
                            emitted = True
                            rows = []
        except OSError as exc:
            raise InputError(obj.name, f"cannot read: {exc.strerror or exc}") from None
        if first_error is not None:
            unit, rejection = first_error
            where = f"{obj.name}, message {unit.number}"
            if rejection.control_id:
                where += f" (MSH-10 {rejection.control_id!r})"
            raise InputError(where, f"{rejection.reason}; {rejected} of {_plural(total, 'message')} "
                                    "in the file rejected")
        if rows or not emitted:
            yield pa.RecordBatch.from_pylist(rows, schema=schema)
