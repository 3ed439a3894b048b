"""Property tests: any bytes end as typed batches or an InputError, and valid tables round-trip."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lithotse_csv import CsvConnector
from lithotse_desktop.connectors import FetchRequest, RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.raw.index import open_index
from lithotse_desktop.workspace import Workspace
from tests.conftest import TEST_DATA

SEEDS = [
    b'visit_date,code,note\n2024-01-01,1,"a, b"\n2024-02-01,2,"multi\nline"\n',
    b"when;value\n2024-01-01T10:00:00+02:00;1.5\n2024-01-02T00:00:00Z;2\n",
    b"\xef\xbb\xbfday\tn\n2023-12-31\t7\n",
    (TEST_DATA / "csv" / "synthea-conditions.csv").read_bytes()[:600],
]
PIECES = [b",", b";", b"\t", b"|", b'"', b'""', b"\n", b"\r\n", b"\r", b"\x00", b"\x1b", b"\xff",
          b"\x81", b"\xc3", b"\xef\xbb\xbf", b"2024-13-01", b"2024-02-30", b"x", b" ", b"T25:00"]


@st.composite
def mutated(draw) -> bytes:
    """A valid file with a few insertions, deletions, overwrites or a truncation."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "insert", "delete", "overwrite", "truncate"]))
        piece = draw(st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=3)))
        if op == "insert":
            data[pos:pos] = piece
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "overwrite":
            data[pos:pos + len(piece)] = piece
        else:
            del data[pos:]
    return bytes(data)


MALFORMED = st.one_of(mutated(), st.binary(max_size=200),
                      st.text(alphabet='ab1,;"\n\r\t-:T 2', max_size=80).map(str.encode))


def land_and_read(path: Path) -> list[pa.RecordBatch]:
    conn = CsvConnector({"path": str(path)})
    infos = {i.name: i for i in conn.streams()}
    batches = []
    for payload in conn.fetch(FetchRequest("p", list(infos), DateRange(), {})):
        obj = RawObject(payload.path, payload.stream, payload.name, payload.media_type, payload.meta)
        checked = list(conn.read(obj))
        for batch in checked:
            date_field = infos[payload.stream].date_field
            if date_field:
                kind = batch.schema.field(date_field).type
                assert pa.types.is_date32(kind) or pa.types.is_timestamp(kind)
            batches.append(batch)
        # reading back a committed landing skips per-cell checks and must give the same table
        trusted = RawObject(payload.path, payload.stream, payload.name, payload.media_type, payload.meta,
                            validated=True)
        assert pa.Table.from_batches(list(conn.read(trusted))).equals(pa.Table.from_batches(checked))
    return batches


@settings(max_examples=1000, deadline=None)
@given(MALFORMED)
def test_any_bytes_read_or_raise_input_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.csv"
        path.write_bytes(data)
        try:
            batches = land_and_read(path)
        except InputError as exc:
            assert exc.location.startswith("input.csv")
            return
        assert len({b.schema for b in batches}) == 1
        conn = CsvConnector({"path": str(path)})
        again = list(conn.read(RawObject(path, "input", "input.csv", "text/csv", {})))
        assert [b.num_rows for b in again] == [b.num_rows for b in batches]


TEXT = st.text(st.characters(codec="cp1252", exclude_categories=["Cc", "Cs"],
                             include_characters="\n\r\t"), max_size=12).map(lambda s: "t" + s)
ROW = st.tuples(st.one_of(st.none(), st.dates()), st.integers(-10**15, 10**15), TEXT)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=15),
       delimiter=st.sampled_from([",", ";", "\t", "|"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
       newline=st.sampled_from(["\n", "\r\n"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_NONNUMERIC, csv.QUOTE_ALL]))
def test_written_tables_read_back_exactly(rows, delimiter, encoding, newline, quoting):
    # csv.writer only quotes a lone \r when it is part of the line terminator.
    assume(quoting != csv.QUOTE_MINIMAL or newline == "\r\n" or not any("\r" in t for *_, t in rows))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerow(["visit_date", "n", "txt"])
    writer.writerows([(d.isoformat() if d else "", n, t) for d, n, t in rows])
    data = buffer.getvalue().encode(encoding)
    if encoding == "cp1252" and not data.isascii():
        # cp1252 text that is also valid UTF-8 is read as UTF-8, rightly: skip those.
        try:
            data.decode("utf-8")
            assume(False)
        except UnicodeDecodeError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        path.write_bytes(data)
        got = [r for b in land_and_read(path) for r in b.to_pylist()]
    assert got == [{"visit_date": d, "n": n, "txt": t} for d, n, t in rows]


@pytest.fixture(scope="module")
def installed_plugins():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_failed_import_leaves_raw_store_empty(installed_plugins, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "in"
        folder.mkdir()
        (folder / "good.csv").write_bytes(SEEDS[0])
        (folder / "maybe.csv").write_bytes(data)
        ws = Workspace.create(root / "ws")
        ws.add_source("src", "csv", {"path": str(folder)}, {})
        try:
            result = run_import(ws, "src", DateRange.parse("2024-01-01", "2024-12-31"))
        except InputError:
            assert list(ws.store("raw").list("")) == []
            index = open_index(ws)
            try:
                assert index.landings() == []
            finally:
                index.close()
            return
        assert {item.manifest.stream for item in result.landings} == {"good", "maybe"}
