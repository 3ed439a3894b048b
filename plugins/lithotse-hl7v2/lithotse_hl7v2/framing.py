"""Cutting a file of HL7 v2 text into messages, streaming, without decoding or parsing fields.

Files in the wild end segments with CR (the standard), LF or CRLF, sometimes mixed in one
file; wrap messages in MLLP blocks (``0x0B ... 0x1C 0x0D``); and group them in FHS/BHS
batches whose headers and trailers are often missing or unbalanced. Exporters also leak
line breaks *inside* field values, so a physical line only starts a new segment when it
looks like one: a three-character segment id followed by the field separator (or nothing).
Any other line continues the previous segment, keeping the break as ``\\n`` in its value.

Batch envelope segments (FHS, BHS, BTS, FTS) are accepted wherever they appear and end the
message before them. Segments that follow an envelope segment (or the start of the file)
without an MSH first form an *orphan* unit, which the reader rejects: that is how a batch
header dropped into the middle of a message shows up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

_EOL = re.compile(rb"\r\n|\r|\n")
_SEGMENT_ID = re.compile(rb"[A-Z][A-Z0-9]{2}")
HEADER_IDS = frozenset({"MSH", "FHS", "BHS"})
ENVELOPE_IDS = frozenset({"FHS", "BHS", "BTS", "FTS"})
_MLLP_START = b"\x0b"
_MLLP_END = b"\x1c"
_UTF8_BOM = b"\xef\xbb\xbf"
CHUNK_SIZE = 1 << 20


@dataclass
class Segment:
    """One logical segment: its id ('' for text before any segment) and its physical lines."""

    id: str
    line: int
    parts: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class Unit:
    """A message (starting with MSH) or an orphan run of segments that no MSH introduced."""

    number: int
    segments: list[Segment]
    after: Segment | None = None

    @property
    def is_message(self) -> bool:
        return self.segments[0].id == "MSH"

    @property
    def line(self) -> int:
        return self.segments[0].line


def physical_lines(fh: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, bytes)`` for CR, LF or CRLF ends, reading the file in chunks.

    A UTF-8 byte-order mark (left by Windows editors) is dropped from the start.
    """
    buf = fh.read(len(_UTF8_BOM))
    if buf == _UTF8_BOM:
        buf = b""
    number = 0
    while True:
        chunk = fh.read(chunk_size)
        final = not chunk
        buf += chunk
        pos = 0
        for match in _EOL.finditer(buf):
            if not final and match.end() == len(buf) and match.group() == b"\r":
                break  # this CR may be the first half of a CRLF split across chunks
            number += 1
            yield number, buf[pos:match.start()]
            pos = match.end()
        buf = buf[pos:]
        if final:
            if buf:
                yield number + 1, buf
            return


def _segment_id(line: bytes, separator: bytes) -> str | None:
    """The segment id when ``line`` starts a segment, else None (a continuation line)."""
    if len(line) < 3 or not _SEGMENT_ID.fullmatch(line[:3]):
        return None
    seg_id = line[:3].decode("ascii")
    if len(line) == 3:
        return seg_id
    fourth = line[3:4]
    if seg_id in HEADER_IDS:
        return None if fourth.isalnum() else seg_id
    return seg_id if fourth == separator else None


def logical_segments(lines: Iterable[tuple[int, bytes]]) -> Iterator[Segment]:
    """Join continuation lines to their segment; drop blank lines and MLLP block markers."""
    current: Segment | None = None
    separator = b"|"
    for number, raw in lines:
        line = raw.lstrip(_MLLP_START).rstrip(_MLLP_END)
        if not line.strip():
            continue
        head = line.lstrip(b" \t")
        seg_id = _segment_id(head, separator)
        if seg_id is None:
            if current is None:
                current = Segment("", number)
            current.parts.append((number, line))
            continue
        if current is not None:
            yield current
        if seg_id in HEADER_IDS and len(head) > 3:
            separator = head[3:4]
        current = Segment(seg_id, number, [(number, head)])
    if current is not None:
        yield current


def message_units(segments: Iterable[Segment]) -> Iterator[Unit]:
    """Group segments into units: each MSH starts a message; envelope segments end one."""
    current: Unit | None = None
    last_envelope: Segment | None = None
    number = 0
    for seg in segments:
        if seg.id in ENVELOPE_IDS:
            if current is not None:
                yield current
                current = None
            last_envelope = seg
            continue
        if seg.id == "MSH" or current is None:
            if current is not None:
                yield current
            number += 1
            current = Unit(number, [seg], None if seg.id == "MSH" else last_envelope)
            last_envelope = None
            continue
        current.segments.append(seg)
    if current is not None:
        yield current


def read_units(fh: BinaryIO) -> Iterator[Unit]:
    """Every message unit of an open binary file, in order."""
    return message_units(logical_segments(physical_lines(fh)))


def msh_fields(segment: Segment) -> list[bytes]:
    """Raw MSH fields by HL7 number (index 1 is MSH-1), without decoding: for a quick survey."""
    text = b"\n".join(part for _, part in segment.parts)
    if len(text) < 4:
        return [b"MSH"]
    fields = text.split(text[3:4])
    return [b"MSH", text[3:4], *fields[1:]]
