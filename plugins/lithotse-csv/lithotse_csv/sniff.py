"""How a delimited text file is written: its encoding, delimiter, header names and line numbers.

These guesses are made once per file when it is imported and stored in the landing's
metadata, so reading the landed bytes back later never has to guess again. The helpers
that find a line number only run after something went wrong, so that error messages can
point at a line a person can open in an editor.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from lithotse_desktop.plugin import InputError

CHUNK = 1 << 20
SAMPLE = 64 << 10
DELIMITERS = (",", ";", "\t", "|")
TAB_SUFFIXES = (".tsv", ".tab")
# C0 control characters other than tab, newline, vertical tab, form feed and carriage return
# do not occur in text files; finding one means the file is binary (or UTF-16 read as bytes).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")


def _noop() -> None:
    return None


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _control_problem(text: str, lines_before: int) -> tuple[int, str] | None:
    found = _CONTROL.search(text)
    if found is None:
        return None
    line = lines_before + text.count("\n", 0, found.start()) + 1
    return line, (f"binary data (control byte 0x{ord(found.group()):02x}); "
                  "this is not a text file")


def _decode_problem(path: Path, encoding: str, check: Callable[[], None],
                    guessed: bool = False) -> tuple[int, str, bool] | None:
    """Decode the whole file; return (line, reason, is_binary) for the first problem, else None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            pending = decoder.getstate()[0]
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                good = (pending + chunk)[:exc.start].decode(encoding, errors="replace")
                binary = _control_problem(good, lines)
                if binary:
                    return binary[0], binary[1], True
                bad = (pending + chunk)[exc.start:exc.start + 1]
                line = lines + good.count("\n") + 1
                return line, undecodable(bad, encoding, guessed), False
            binary = _control_problem(text, lines)
            if binary:
                return binary[0], binary[1], True
            lines += text.count("\n")
            check()
            if not chunk:
                return None


def undecodable(byte: bytes, encoding: str, guessed: bool) -> str:
    """Why a byte stopped decoding, worded for whether the encoding was the user's or a guess."""
    if guessed:
        return (f"byte 0x{byte.hex()} is neither UTF-8 nor cp1252 text; set the encoding "
                "setting if you know the file's encoding")
    return (f"byte 0x{byte.hex()} cannot be decoded as {encoding}; set the encoding setting "
            "if the file uses another one")


def scan_encoding(path: Path, name: str, forced: str | None = None,
                  check: Callable[[], None] = _noop) -> str:
    """Read the whole file once and return the encoding that decodes all of it.

    A byte-order mark decides; otherwise UTF-8 is tried and then cp1252 (what Windows
    spreadsheet programs write). A forced encoding is only checked. Binary data and bytes
    neither encoding can decode raise InputError naming the line.
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
    bom = _bom_encoding(head)
    candidates = [forced] if forced else [bom] if bom else ["utf-8", "cp1252"]
    problem: tuple[int, str, bool] | None = None
    for encoding in candidates:
        problem = _decode_problem(path, encoding, check, guessed=len(candidates) > 1)
        if problem is None:
            return encoding
        if problem[2]:
            break
    assert problem is not None
    raise InputError(f"{name}, line {problem[0]}", problem[1])


def sample_text(path: Path, name: str, forced: str | None = None) -> tuple[str, str]:
    """The first 64 KiB as text plus a best guess of the encoding from those bytes alone."""
    with open(path, "rb") as fh:
        raw = fh.read(SAMPLE)
    encoding = forced or _bom_encoding(raw)
    if encoding is None:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(raw, final=len(raw) < SAMPLE)
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1252"
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw, final=False)
    problem = _control_problem(text, 0)
    if problem:
        raise InputError(f"{name}, line {problem[0]}", problem[1])
    return text.lstrip("\ufeff"), encoding


def sniff_delimiter(text: str, suffix: str) -> str:
    """The delimiter that splits the header into the most fields and the rows most consistently."""
    if "\n" in text:
        text = text[: text.rfind("\n") + 1] if len(text) >= SAMPLE // 2 else text
    order = ("\t", ",", ";", "|") if suffix.lower() in TAB_SUFFIXES else DELIMITERS
    best: tuple[tuple[float, int], str] | None = None
    for delimiter in order:
        try:
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            rows = [row for row in itertools.islice(reader, 200) if row]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(len(row) == width for row in rows) / len(rows), width)
        if best is None or score > best[0]:
            best = (score, delimiter)
    return best[1] if best else order[0]


def header_width(text: str, delimiter: str) -> int:
    """Number of fields in the first non-blank record of a sample (1 when it has none)."""
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        return next((len(row) for row in reader if row), 1)
    except csv.Error:
        return 1


def text_encoding(encoding: str) -> str:
    return "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding


def _records(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) of every non-blank record, as the fast parser splits them."""
    with open(path, encoding=text_encoding(encoding), errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        previous = 0
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if row:
                yield start, row


def record_line(path: Path, encoding: str, delimiter: str, record: int) -> int | None:
    """The line where data record ``record`` (0-based, header excluded) starts, if it can be told."""
    try:
        for index, (start, _row) in enumerate(_records(path, encoding, delimiter)):
            if index == record + 1:
                return start
    except (csv.Error, OSError):
        return None
    return None


def structural_problem(path: Path, name: str, encoding: str, delimiter: str,
                       guessed: bool = False) -> InputError | None:
    """After the fast parser refused a file: the first undecodable byte, ragged row or bad quote."""
    decoded = _decode_problem(path, encoding, _noop, guessed)
    if decoded:
        return InputError(f"{name}, line {decoded[0]}", decoded[1])
    width: int | None = None
    previous = 0
    with open(path, encoding=text_encoding(encoding), errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            for row in reader:
                start, previous = previous + 1, reader.line_num
                if not row:
                    continue
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    return InputError(f"{name}, line {start}",
                                      f"expected {width} fields as in the header, found {len(row)}")
        except csv.Error as exc:
            if "field limit" in str(exc):
                return None
            where = f"{name}, line {previous + 1}"
            if "end of data" in str(exc):
                return InputError(where, "a quoted field starting here is never closed")
            return InputError(where, f"malformed quoting ({exc})")
    return None
