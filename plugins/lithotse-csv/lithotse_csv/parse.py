"""Streaming a delimited file through pyarrow's CSV reader, and the layout decided for it.

Every field is read as text and typed afterwards (see :mod:`lithotse_csv.columns`), so the
types come from the whole file rather than from pyarrow's look at its first block, and a
landing always reads back with the schema recorded when it was imported.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa

from lithotse_desktop.plugin import InputError, deferred_import, header_names, is_total_label

from . import columns as col
from . import sniff

if TYPE_CHECKING:  # imported when a file is read: every command loads the plugin
    import pyarrow.csv as pacsv

pc = deferred_import("pyarrow.compute")

BLOCK = 1 << 24
PEEK_BLOCK = 1 << 18
MAX_BLOCK = 1 << 29
META_FORMAT = "lithotse-csv/1"

Opener = Callable[[], BinaryIO]


@dataclass
class Layout:
    """Everything needed to read a file back without guessing again.

    ``data_records`` is how many records the file holds above the blank and total rows under
    its data (None in landings made before those were left out: every record is read), and
    ``left_out`` counts those rows by reason."""

    encoding: str
    delimiter: str
    names: list[str]
    kinds: list[str]
    date_column: str | None
    date_columns: list[str]
    data_records: int | None = None
    left_out: dict[str, int] = field(default_factory=dict)

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, col.ARROW_TYPES[k]) for n, k in zip(self.names, self.kinds, strict=True)])

    def to_meta(self) -> dict[str, Any]:
        return {"format": META_FORMAT, "encoding": self.encoding, "delimiter": self.delimiter,
                "columns": [[n, k] for n, k in zip(self.names, self.kinds, strict=True)],
                "date_column": self.date_column, "date_columns": list(self.date_columns),
                "data_records": self.data_records, "left_out": dict(self.left_out)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Layout | None:
        if meta.get("format") != META_FORMAT:
            return None
        try:
            pairs = [(str(n), str(k)) for n, k in meta["columns"]]
            data_records = meta.get("data_records")
            layout = cls(str(meta["encoding"]), str(meta["delimiter"]), [n for n, _ in pairs],
                         [k for _, k in pairs], meta.get("date_column"),
                         list(meta.get("date_columns") or []),
                         None if data_records is None else int(data_records),
                         {str(k): int(v) for k, v in dict(meta.get("left_out") or {}).items()})
        except (KeyError, TypeError, ValueError):
            return None
        if any(k not in col.ARROW_TYPES for k in layout.kinds) or len(layout.delimiter) != 1:
            return None
        return layout


class _Terminated(io.RawIOBase):
    """Bytes with a final newline added when a non-empty input lacks one: pyarrow cannot read a
    header-only file whose single line is unterminated."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._last = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._ended:
            return 0
        data = self._fh.read(len(buffer))
        if data:
            self._last = data[-1:]
        else:
            self._ended = True
            data = b"\n" if self._last not in (b"", b"\n", b"\r") else b""
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


def _source(path: Path | None, encoding: str, opener: Opener | None = None) -> Any:
    """What pyarrow reads: the file by name where possible, else a (terminated) byte stream."""
    base = encoding.lower().replace("_", "-").removesuffix("-sig")
    ascii_newline = "\n".encode(base, errors="replace") == b"\n"
    if opener is not None:
        stream = opener()
        return io.BufferedReader(_Terminated(stream), 1 << 20) if ascii_newline else stream
    if path is None:
        raise ValueError("a path or a stream opener is needed")
    if not ascii_newline:
        return str(path)
    with open(path, "rb") as fh:
        fh.seek(0, io.SEEK_END)
        if fh.tell() == 0:
            return str(path)
        fh.seek(-1, io.SEEK_END)
        last = fh.read(1)
    return str(path) if last in (b"\n", b"\r") else io.BufferedReader(_Terminated(open(path, "rb")))


def _open(source: Any, encoding: str, delimiter: str, width: int,
          block: int) -> pacsv.CSVStreamingReader:
    import pyarrow.csv as pacsv

    native = encoding.replace("_", "-").lower() in ("utf-8", "utf8", "utf-8-sig")
    read = pacsv.ReadOptions(autogenerate_column_names=True, block_size=block,
                             encoding="utf8" if native else encoding, use_threads=True)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(width)},
                                   null_values=[""], strings_can_be_null=True,
                                   quoted_strings_can_be_null=True)
    return pacsv.open_csv(source, read_options=read, parse_options=parse,
                          convert_options=convert)


def _failure(path: Path | None, name: str, encoding: str, delimiter: str, exc: Exception,
             guessed: bool) -> InputError:
    text = str(exc)
    if "Empty CSV file" in text:
        return InputError(f"{name}, line 1", "the file is empty: a header row is expected")
    found = None if path is None else sniff.structural_problem(path, name, encoding, delimiter, guessed)
    return found or InputError(name, f"cannot be read as delimited text: {text}")


def text_batches(path: Path | None, name: str, encoding: str, delimiter: str, width: int,
                 guessed: bool = False, block_size: int = BLOCK, *,
                 opener: Opener | None = None) -> Iterator[pa.RecordBatch]:
    """Every record as text columns, the header row first; parse errors become InputError.

    ``width`` is the expected number of columns (pyarrow needs a type for each by name; a
    wrong guess costs a second open). ``guessed`` says the encoding is a guess from the
    first bytes, for the error wording. With ``opener`` the bytes come from the streams it
    opens (a landing in a remote store) instead of ``path``; errors then name no line.
    """
    opened: list[Any] = []
    block = block_size

    def open_reader(columns: int) -> pacsv.CSVStreamingReader:
        source = _source(path, encoding, opener)
        opened.append(source)
        return _open(source, encoding, delimiter, columns, block)

    try:
        reader = open_reader(width)
        if any(field.type != pa.string() for field in reader.schema):
            reader = open_reader(len(reader.schema))
        width = len(reader.schema)
        done = skip = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                # A record longer than the block: read again with bigger blocks, skipping
                # the records already passed on.
                if "straddl" not in str(exc) or block >= MAX_BLOCK:
                    raise
                block *= 8
                reader, skip = open_reader(width), done
                continue
            if skip:
                cut = min(skip, batch.num_rows)
                batch, skip = batch.slice(cut), skip - cut
            done += batch.num_rows
            yield batch
    except (pa.ArrowException, UnicodeError, LookupError) as exc:
        raise _failure(path, name, encoding, delimiter, exc, guessed) from None
    except OSError as exc:
        raise InputError(name, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        for source in opened:
            if not isinstance(source, str):
                source.close()


def _location(path: Path | None, name: str, layout_encoding: str, delimiter: str, record: int) -> str:
    line = None if path is None else sniff.record_line(path, layout_encoding, delimiter, record)
    return f"{name}, line {line}" if line else f"{name}, record {record + 1}"


def _header(path: Path, name: str, encoding: str, delimiter: str, batch: pa.RecordBatch) -> list[str]:
    raw = list(batch.slice(0, 1).to_pylist()[0].values())
    if all(not (value or "").strip() for value in raw):
        raise InputError(_location(path, name, encoding, delimiter, -1),
                         "the header row is blank: the first line must name the columns")
    return header_names(raw, lambda i: f"column_{i + 1}")


_DATE_TEXT = re.compile("|".join(f"(?:{col.PATTERNS[kind]})" for kind in col.DATE_KINDS))


def _is_total(values: list[Any]) -> bool:
    """A record whose first filled cell is a total label (Total, Grand total, Summe…) and that
    holds no date: the totals under a file's data, not a record."""
    first = next((v for v in values if v is not None), None)
    return is_total_label(first) and not any(v is not None and _DATE_TEXT.match(v) for v in values)


def data_end(prepared: list[pa.Array], rows: int) -> int:
    """How many of these records come before the blank and total rows that end them (all of
    them when the last record is data). Only the records at the end are looked at."""
    end = rows
    while end > 0:
        values = [column[end - 1].as_py() for column in prepared]
        if any(v is not None for v in values) and not _is_total(values):
            break
        end -= 1
    return end


def _left_out(held: list[list[pa.Array]]) -> dict[str, int]:
    """The held rows under the data by reason: blank (every field empty) or total."""
    rows = blank = 0
    for columns in held:
        if not columns:
            continue
        mask = pc.is_null(columns[0])
        for values in columns[1:]:
            mask = pc.and_(mask, pc.is_null(values))
        rows += len(mask)
        blank += pc.sum(mask.cast(pa.int64())).as_py() or 0
    return {"total": rows - blank, "blank": blank}


def _ends_inside_quotes(batch: pa.RecordBatch | None) -> bool:
    """Whether the last field of the file spans lines: the mark of a quote never closed,
    which pyarrow accepts by running the field to the end of the file."""
    if batch is None or batch.num_rows == 0:
        return False
    last = batch.column(batch.num_columns - 1)[batch.num_rows - 1].as_py()
    return last is not None and ("\n" in last or "\r" in last)


def analyze(path: Path, name: str, *, encoding: str | None = None, delimiter: str | None = None,
            date_column: str | None = None, detect: bool = True,
            seed: Mapping[str, str] | None = None,
            check: Callable[[], None] = lambda: None) -> Layout:
    """Decide a file's layout from all of it: encoding, delimiter, header, column types.

    ``date_column`` must be in the header when given; otherwise it is detected from the
    first rows when ``detect`` is set. Any cell of the date column that is not a date
    raises InputError naming its line.
    """
    enc = sniff.scan_encoding(path, name, encoding, check)
    text = sniff.sample_text(path, name, enc)[0]
    delim = delimiter or sniff.sniff_delimiter(text, path.suffix)
    names: list[str] | None = None
    inference: col.Inference | None = None
    dated: list[str] = []
    record = 0
    last: pa.RecordBatch | None = None
    # records under the last data record so far (blank or total rows), with the index of the
    # first: they are typed only once a data record below shows they are inside the data
    held: list[tuple[int, list[pa.Array]]] = []

    def feed(first: int, columns: list[pa.Array]) -> None:
        assert inference is not None
        problem = inference.feed(columns)
        if problem is not None:
            raise InputError(_location(path, name, enc, delim, first + problem.row), problem.message)

    for batch in text_batches(path, name, enc, delim, sniff.header_width(text, delim)):
        if names is None:
            if batch.num_rows == 0:
                continue
            names = _header(path, name, enc, delim, batch)
            batch = batch.slice(1)
            prepared = [col.prepare(c) for c in batch.columns]
            end = data_end(prepared, batch.num_rows)
            detected, dated = col.detect_date_column(names, [c[:end] for c in prepared] if end else prepared)
            if date_column is None and detect:
                date_column = detected
            elif date_column is not None and date_column not in names:
                raise InputError(f"{name}, line 1", f"no column named {date_column!r}; "
                                 f"columns: {', '.join(names)}")
            inference = col.Inference(names, date_column, dict(seed or {}))
        else:
            prepared = [col.prepare(c) for c in batch.columns]
            end = data_end(prepared, batch.num_rows)
        if end:
            for first, columns in held:
                feed(first, columns)
            held.clear()
            feed(record, [c[:end] for c in prepared])
        if end < batch.num_rows:
            held.append((record + end, [c[end:] for c in prepared]))
        record += batch.num_rows
        last = batch
        check()
    if _ends_inside_quotes(last):
        problem_found = sniff.structural_problem(path, name, enc, delim)
        if problem_found is not None:
            raise problem_found
    if names is None:
        raise InputError(f"{name}, line 1", "the file is empty: a header row is expected")
    assert inference is not None
    left_out = _left_out([columns for _, columns in held])
    return Layout(enc, delim, names, inference.result(), date_column, dated,
                  record - sum(left_out.values()), left_out)


def peek(path: Path, name: str, *, encoding: str | None = None,
         delimiter: str | None = None) -> tuple[list[str], str | None, list[str]]:
    """Header names, detected date column and date-valued columns from the first block only.

    Cheap enough to run for every file when listing streams; the full check happens at import.
    The encoding is guessed from the first 64 KiB; if UTF-8 was guessed but the first block
    does not decode, cp1252 is tried as the whole-file scan at import would.
    """
    text, enc = sniff.sample_text(path, name, encoding)
    delim = delimiter or sniff.sniff_delimiter(text, path.suffix)
    try:
        return _peek_first_block(path, name, enc, delim, sniff.header_width(text, delim),
                                 encoding is None and enc == "cp1252")
    except InputError:
        if encoding is not None or enc != "utf-8":
            raise
    return _peek_first_block(path, name, "cp1252", delim, sniff.header_width(text, delim), True)


def _peek_first_block(path: Path, name: str, enc: str, delim: str, width: int,
                      guessed: bool) -> tuple[list[str], str | None, list[str]]:
    for batch in text_batches(path, name, enc, delim, width, guessed, PEEK_BLOCK):
        if batch.num_rows == 0:
            continue
        names = _header(path, name, enc, delim, batch)
        prepared = [col.prepare(c) for c in batch.slice(1).columns]
        end = data_end(prepared, batch.num_rows - 1)
        detected, dated = col.detect_date_column(names, [c[:end] for c in prepared] if end else prepared)
        return names, detected, dated
    raise InputError(f"{name}, line 1", "the file is empty: a header row is expected")


def typed_batches(path: Path | None, name: str, layout: Layout, trusted: bool = False, *,
                  opener: Opener | None = None) -> Iterator[pa.RecordBatch]:
    """The file as record batches of the layout's schema; a cell that does not fit raises InputError.

    ``trusted``: the file was read in full with this layout before (a committed landing).
    ``opener``: read streams it opens instead of ``path`` (see :func:`text_batches`).
    """
    schema = layout.schema()
    header_seen = False
    record = 0
    emitted = False
    limit = layout.data_records
    for batch in text_batches(path, name, layout.encoding, layout.delimiter, len(layout.names),
                              opener=opener):
        if batch.num_columns != len(layout.names):
            raise InputError(f"{name}, line 1", f"the header has {batch.num_columns} fields but "
                             f"{len(layout.names)} were recorded when it was imported")
        if not header_seen:
            if batch.num_rows == 0:
                continue
            header_seen = True
            batch = batch.slice(1)
        if limit is not None:
            if record >= limit:
                break
            batch = batch.slice(0, limit - record)
        arrays = []
        for column, kind, raw in zip(layout.names, layout.kinds, batch.columns, strict=True):
            array, bad = col.convert(kind, raw, trusted)
            if bad is not None:
                value = raw[bad].as_py()
                what = "not an ISO date or date-time" if kind in col.DATE_KINDS else f"not {kind}"
                raise InputError(_location(path, name, layout.encoding, layout.delimiter, record + bad),
                                 f"column {column!r}: {value!r} is {what}")
            arrays.append(array)
        record += batch.num_rows
        emitted = True
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    if not header_seen:
        raise InputError(f"{name}, line 1", "the file is empty: a header row is expected")
    if not emitted:
        yield pa.RecordBatch.from_pylist([], schema=schema)
