"""One HL7 v2 message to rows: what makes a message malformed, and the stream schemas.

A message is rejected (never skipped) when its text is not valid in its declared character
set or holds raw control characters, when MSH lacks usable separators, a message type
(MSH-9), a control id (MSH-10) or a valid date/time (MSH-7), or when any date/time the connector
reads (EVN-2, PID-7 of ADT, PV1-44, PV1-45, OBR-7, OBX-14) is not an HL7 date/time.

Values are stripped; empty values and the HL7 null ``""`` become nulls. Single components
are unescaped (``\\F\\`` and friends); composite values kept whole (locations, doctors,
flags, coded results) are the text as written, separators and escapes included.
"""

from __future__ import annotations

import codecs
import datetime as dt
import math
import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lithotse_desktop.plugin import deferred_import

from .framing import Unit, msh_fields
from .timestamps import FORMAT, parse_dtm

if TYPE_CHECKING:
    import hl7
else:
    hl7 = deferred_import("hl7")

TEXT_TYPES = frozenset({"ST", "TX", "FT"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)", re.ASCII)
TYPE_CODE = re.compile(r"[A-Z][A-Z0-9]{2}")
_DELIMITERS = frozenset(string.punctuation)
_HL7_NULL = '""'
_ISO8859 = re.compile(r"8859/(\d{1,2})")

_TS = pa.timestamp("us")
_TS_UTC = pa.timestamp("us", tz="UTC")


def _timestamp_fields(name: str) -> list[pa.Field]:
    return [pa.field(name, _TS), pa.field(f"{name}_utc", _TS_UTC)]


def _strings(*names: str) -> list[pa.Field]:
    return [pa.field(name, pa.string()) for name in names]


MESSAGES_SCHEMA = pa.schema([
    pa.field("message_index", pa.int32()),
    *_strings("message_control_id", "message_type", "trigger_event", "message_structure",
              "detail_stream"),
    *_timestamp_fields("message_datetime"),
    *_strings("sending_application", "sending_facility", "receiving_application",
              "receiving_facility", "processing_id", "version_id", "patient_id"),
    pa.field("segment_count", pa.int32()),
    pa.field("segment_ids", pa.string()),
])

ADT_SCHEMA = pa.schema([
    *_strings("message_control_id", "message_type", "event_type"),
    *_timestamp_fields("event_datetime"),
    pa.field("patient_id", pa.string()),
    pa.field("birth_date", pa.date32()),
    *_strings("sex", "patient_class", "assigned_location", "attending_doctor",
              "visit_number"),
    *_timestamp_fields("admit_datetime"),
    *_timestamp_fields("discharge_datetime"),
    *_timestamp_fields("effective_datetime"),
])

ORU_SCHEMA = pa.schema([
    pa.field("message_control_id", pa.string()),
    pa.field("obx_seq", pa.int32()),
    *_strings("obx_set_id", "patient_id", "service_code", "service_text"),
    *_timestamp_fields("observation_datetime"),
    *_strings("observation_code", "observation_text", "observation_system", "value_type", "value"),
    pa.field("value_numeric", pa.float64()),
    *_strings("value_comparator", "units", "reference_range", "abnormal_flags", "result_status"),
    *_timestamp_fields("result_datetime"),
    *_timestamp_fields("effective_datetime"),
])

SCHEMAS = {"messages": MESSAGES_SCHEMA, "adt": ADT_SCHEMA, "oru": ORU_SCHEMA}
DETAIL_STREAMS = {"ADT": "adt", "ORU": "oru"}


class Rejected(Exception):
    """Why one message (or orphan unit) is malformed; ``control_id`` is MSH-10 when readable."""

    def __init__(self, reason: str, control_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.control_id = control_id


@dataclass
class ParsedMessage:
    control_id: str
    message_type: str
    summary: dict[str, Any]
    adt: dict[str, Any] | None = None
    oru: list[dict[str, Any]] = field(default_factory=list)

    def rows(self, stream: str) -> list[dict[str, Any]]:
        if stream == "messages":
            return [self.summary]
        if stream == "adt":
            return [self.adt] if self.adt is not None else []
        if stream == "oru":
            return self.oru
        raise KeyError(stream)


def charset(fields: list[bytes]) -> tuple[str, str]:
    """Python codec and label for MSH-18 (first repetition); UTF-8 when it is empty."""
    if len(fields) <= 18:
        return "utf-8", "UTF-8"
    value = fields[18]
    encoding_chars = fields[2] if len(fields) > 2 else b""
    for sep in encoding_chars[:2]:
        value = value.split(bytes([sep]))[0]
    label = value.decode("latin-1").strip()
    name = label.upper()
    if name in ("", "ASCII", "UNICODE UTF-8", "UTF-8", "UTF8"):
        return "utf-8", label or "UTF-8"
    match = _ISO8859.fullmatch(name)
    if match:
        name = f"iso8859-{match.group(1)}"
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a name with a NUL byte
        raise Rejected(f"MSH-18 character set {label!r} is not supported") from None
    if "\r|^~\\&".encode(codec, errors="replace") != b"\r|^~\\&":
        raise Rejected(f"MSH-18 character set {label!r} is not supported (not ASCII-compatible)")
    return codec, label


def _decode(unit: Unit, codec: str, label: str) -> list[str]:
    texts = []
    for seg in unit.segments:
        parts = []
        for line, data in seg.parts:
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                hint = "" if label != "UTF-8" else "; declare the character set in MSH-18"
                raise Rejected(f"line {line}: not valid {label} text "
                               f"(byte 0x{data[exc.start]:02x}){hint}") from None
            bad = _CONTROL.search(text)
            if bad:
                raise Rejected(f"line {line}: control character 0x{ord(bad.group()):02x} in "
                               f"segment {seg.id or 'text'!r}; HL7 text must escape it as "
                               f"\\X{ord(bad.group()):02X}\\")
            parts.append(text)
        texts.append("\n".join(parts))
    return texts


def _check_msh(msh: str) -> str:
    """Validate the delimiter part of MSH; return the field separator."""
    if len(msh) < 4:
        raise Rejected("MSH is truncated: no field separator (MSH-1)")
    sep = msh[3]
    if sep not in _DELIMITERS:
        raise Rejected(f"MSH-1 field separator {sep!r} is not a punctuation character")
    end = msh.find(sep, 4)
    if end < 0:
        raise Rejected("MSH is truncated: no fields after the encoding characters (MSH-2)")
    enc = msh[4:end]
    if not 4 <= len(enc) <= 5:
        raise Rejected(f"MSH-2 encoding characters {enc!r} must be 4 or 5 characters "
                       "(component, repetition, escape, subcomponent[, truncation])")
    if any(c not in _DELIMITERS for c in enc):
        raise Rejected(f"MSH-2 encoding characters {enc!r} must all be punctuation characters")
    component, repetition, escape, sub = tuple(enc[:4])
    if component == repetition or escape in (component, repetition) or sub in (component, repetition):
        raise Rejected(f"MSH-2 encoding characters {enc!r} use one character for two separators")
    return sep


class _Fields:
    """Plain-string access to one parsed segment, HL7 numbering (MSH-3 is field 3)."""

    def __init__(self, seg_id: str, line: int, segment: hl7.Segment | None, message: hl7.Message):
        self.id = seg_id
        self.line = line
        self.segment = segment
        self.message = message

    def value(self, number: int, component: int = 1, rep: int = 1) -> str | None:
        """One component, unescaped."""
        if self.segment is None:
            return None
        try:
            text = self.segment.extract_field(1, number, rep, component, 1)
        except IndexError:
            return None
        except ValueError:
            raise Rejected(f"line {self.line}: {self.id}-{number} has a malformed escape sequence") from None
        return _clean(str(text).replace("\r", "\n"))

    def repetitions(self, number: int) -> int:
        """How many repetitions a field has (0 when it is absent)."""
        if self.segment is None or number >= len(self.segment):
            return 0
        return len(self.segment[number])

    def raw(self, number: int, rep: int | None = None) -> str | None:
        """A whole field (or one repetition) as written, separators and escapes kept."""
        if self.segment is None or number >= len(self.segment):
            return None
        item = self.segment[number]
        if rep is not None:
            if rep > len(item):
                return None
            item = item[rep - 1]
        return _clean(str(item))

    def text(self, number: int) -> str | None:
        """A text field (ST/TX/FT): repetitions are lines, escapes (``\\.br\\`` too) decoded."""
        if self.segment is None or number >= len(self.segment):
            return None
        lines = []
        for rep in self.segment[number]:
            try:
                lines.append(self.message.unescape(str(rep)).replace("\r", "\n"))
            except ValueError:
                raise Rejected(f"line {self.line}: {self.id}-{number} has a malformed escape "
                               "sequence") from None
        return _clean("\n".join(lines))

    def dtm(self, number: int, label: str) -> tuple[dt.datetime, dt.datetime | None] | None:
        text = self.value(number)
        if text is None:
            return None
        try:
            return parse_dtm(text)
        except ValueError as exc:
            raise Rejected(f"line {self.line}: {self.id}-{number} {label} {text!r} is not an HL7 "
                           f"date/time {FORMAT} ({exc})") from None


def _clean(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", _HL7_NULL) else text


def _put(row: dict[str, Any], name: str, value: tuple[dt.datetime, dt.datetime | None] | None) -> None:
    row[name] = value[0] if value else None
    row[f"{name}_utc"] = value[1] if value else None


def parse_message(unit: Unit) -> ParsedMessage:
    """Validate one unit and build its rows for every stream; raise Rejected when malformed."""
    if not unit.is_message:
        first = unit.segments[0]
        if first.id == "":
            snippet = first.parts[0][1][:40].decode("latin-1")
            raise Rejected(f"line {first.line}: text that is not an HL7 segment: {snippet!r}")
        cause = (f" (the message before was cut by {unit.after.id} on line {unit.after.line})"
                 if unit.after is not None else "")
        raise Rejected(f"segment {first.id!r} before MSH on line {first.line}{cause}")
    codec, label = charset(msh_fields(unit.segments[0]))
    control_id = None
    try:
        texts = _decode(unit, codec, label)
        sep = _check_msh(texts[0])
        raw_msh = texts[0].split(sep)
        control_id = _clean(raw_msh[9]) if len(raw_msh) > 9 else None
        return _build(unit, texts, control_id)
    except Rejected as exc:
        exc.control_id = control_id
        raise


def _build(unit: Unit, texts: list[str], control_id: str | None) -> ParsedMessage:
    try:
        message = hl7.parse("\r".join(texts))
    except (hl7.ParseException, ValueError, IndexError) as exc:
        raise Rejected(f"python-hl7 cannot parse the message: {exc}") from None
    segments = [_Fields(seg.id, seg.line, parsed, message)
                for seg, parsed in zip(unit.segments, message, strict=False)]
    msh = segments[0]
    message_type = msh.value(9, 1)
    if message_type is None:
        raise Rejected("MSH-9 message type is empty")
    if not TYPE_CODE.fullmatch(message_type):
        raise Rejected(f"MSH-9 message type {message_type!r} is not a three-character code")
    if control_id is None:
        raise Rejected("MSH-10 message control id is empty")
    message_dtm = msh.dtm(7, "date/time of message")
    if message_dtm is None:
        raise Rejected("MSH-7 date/time of message is empty")

    def first(seg_id: str) -> _Fields:
        return next((s for s in segments if s.id == seg_id),
                    _Fields(seg_id, msh.line, None, message))

    pid = first("PID")
    patient_id = person_id(pid)
    summary: dict[str, Any] = {
        "message_index": unit.number, "message_control_id": control_id,
        "message_type": message_type, "trigger_event": msh.value(9, 2),
        "message_structure": msh.value(9, 3), "detail_stream": DETAIL_STREAMS.get(message_type),
        "sending_application": msh.value(3), "sending_facility": msh.value(4),
        "receiving_application": msh.value(5), "receiving_facility": msh.value(6),
        "processing_id": msh.value(11), "version_id": msh.value(12), "patient_id": patient_id,
        "segment_count": len(segments), "segment_ids": " ".join(s.id for s in segments),
    }
    _put(summary, "message_datetime", message_dtm)
    parsed = ParsedMessage(control_id, message_type, summary)
    if message_type == "ADT":
        parsed.adt = _adt_row(msh, first("EVN"), pid, first("PV1"), control_id, message_dtm)
    elif message_type == "ORU":
        parsed.oru = _oru_rows(segments, control_id, patient_id, message_dtm)
    return parsed


PERSON_ID_TYPES = ("MR", "MRN", "MRT", "PI", "PE", "EPI", "EMPI", "PRN", "PN", "PT", "UR", "HR")
"""Identifier type codes (PID-3.5) naming a person, in order of preference: medical record number
(HL7 table 0203's MR, and the local spellings MRN, MRT), patient internal identifier, living
subject enterprise number (PE; EPI and EMPI as Epic and enterprise indexes write it), patient
record number, person number, patient external identifier, unit record and hospital numbers."""
VISIT_ID_TYPES = frozenset({"AN", "ANC", "AND", "ANON", "ANT", "AM", "VN", "VS", "BA", "BC", "FILL", "PLAC",
                            "ACCT", "ACC", "ACCOUNT", "FIN", "FN", "VISIT", "VIS", "ENC", "CSN", "HAR", "ADM",
                            "EN", "RRI"})
"""Identifier types of a visit, an account, an order or an employer, never of one person: HL7's
(account, visit, billing, order numbers; EN, the employer's) and the local spellings sending
systems use (Cerner's FIN, Epic's CSN and HAR, ACCT, VISIT, ENC)."""


def person_id(pid: _Fields) -> str | None:
    """The patient's id from PID-3: the repetition typed as a person's identifier
    (:data:`PERSON_ID_TYPES`, in that order), else the first without a type, else the first whose
    type is not a visit's or an account's (:data:`VISIT_ID_TYPES`), else none. Sending systems put
    an account or visit number first as often as not; taken as the person, it counted one
    patient's admissions as people."""
    found = []
    for rep in range(1, pid.repetitions(3) + 1):
        value = pid.value(3, 1, rep)
        if value:
            found.append(((pid.value(3, 5, rep) or "").strip().upper(), value))
    for wanted in PERSON_ID_TYPES:
        for kind, value in found:
            if kind == wanted:
                return value
    local = next((value for kind, value in found if any(m in kind for m in PERSON_ID_MARKS)
                  and not _visit_like(kind)), None)
    untyped = next((value for kind, value in found if not kind), None)
    return local or untyped or next((value for kind, value in found if not _visit_like(kind)), None)


PERSON_ID_MARKS = ("MRN", "MPI", "PATID", "PERSON", "UPI")
"""Parts of local type codes that name a person's number (``CMRN``, ``FACMRN``, ``UMRN``, ``MPI``)."""
VISIT_ID_MARKS = ("VIS", "ENC", "ACC", "FIN", "CSN", "HAR", "BILL", "ADM")
"""Parts of local type codes that name a visit's, an encounter's or an account's number."""


def _visit_like(kind: str) -> bool:
    return kind in VISIT_ID_TYPES or any(m in kind for m in VISIT_ID_MARKS)


def _adt_row(msh: _Fields, evn: _Fields, pid: _Fields, pv1: _Fields, control_id: str,
             message_dtm: tuple[dt.datetime, dt.datetime | None]) -> dict[str, Any]:
    event_dtm = evn.dtm(2, "recorded date/time") or message_dtm
    admit = pv1.dtm(44, "admit date/time")
    discharge = pv1.dtm(45, "discharge date/time")
    birth = pid.dtm(7, "date/time of birth")
    row: dict[str, Any] = {
        "message_control_id": control_id, "message_type": msh.raw(9, 1),
        "event_type": msh.value(9, 2) or evn.value(1), "patient_id": person_id(pid),
        "birth_date": birth[0].date() if birth else None, "sex": pid.value(8),
        "patient_class": pv1.value(2), "assigned_location": pv1.raw(3, 1),
        "attending_doctor": pv1.raw(7, 1), "visit_number": pv1.value(19, 1),
    }
    _put(row, "event_datetime", event_dtm)
    _put(row, "admit_datetime", admit)
    _put(row, "discharge_datetime", discharge)
    _put(row, "effective_datetime", admit or event_dtm)
    return row


def _oru_rows(segments: list[_Fields], control_id: str, patient_id: str | None,
              message_dtm: tuple[dt.datetime, dt.datetime | None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    obr: _Fields | None = None
    obr_dtm = None
    for seg in segments:
        if seg.id == "OBR":
            obr = seg
            obr_dtm = seg.dtm(7, "observation date/time")
        elif seg.id == "OBX":
            rows.append(_obx_row(seg, obr, obr_dtm, len(rows) + 1, control_id, patient_id,
                                 message_dtm))
    return rows


def _obx_row(obx: _Fields, obr: _Fields | None, obr_dtm, seq: int, control_id: str,
             patient_id: str | None, message_dtm) -> dict[str, Any]:
    value_type = obx.value(2)
    value = obx.text(5) if (value_type or "ST") in TEXT_TYPES else obx.raw(5)
    numeric, comparator = _numeric(obx, value_type, value)
    result_dtm = obx.dtm(14, "date/time of the observation")
    row: dict[str, Any] = {
        "message_control_id": control_id, "obx_seq": seq, "obx_set_id": obx.value(1),
        "patient_id": patient_id,
        "service_code": obr.value(4, 1) if obr else None,
        "service_text": obr.value(4, 2) if obr else None,
        "observation_code": obx.value(3, 1), "observation_text": obx.value(3, 2),
        "observation_system": obx.value(3, 3), "value_type": value_type, "value": value,
        "value_numeric": numeric, "value_comparator": comparator,
        "units": obx.value(6, 1) or obx.value(6, 2), "reference_range": obx.value(7),
        "abnormal_flags": obx.raw(8), "result_status": obx.value(11),
    }
    _put(row, "observation_datetime", obr_dtm)
    _put(row, "result_datetime", result_dtm)
    _put(row, "effective_datetime", result_dtm or obr_dtm or message_dtm)
    return row


def _number(text: str | None) -> float | None:
    if text is None or not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _numeric(obx: _Fields, value_type: str | None, value: str | None) -> tuple[float | None, str | None]:
    """The number in an NM value, or in an SN value that is a plain [comparator] number."""
    if value_type == "NM":
        return _number(value), None
    if value_type == "SN":
        comparator, number = obx.value(5, 1), obx.value(5, 2)
        if obx.value(5, 3) is None and obx.value(5, 4) is None and _number(number) is not None:
            return _number(number), comparator
    return None, None
