"""Property tests: damaged workbooks and random grids end as typed batches or an InputError."""

from __future__ import annotations

import datetime as dt
import io
import re
import tempfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lithotse_desktop.connectors import FetchRequest, RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.names import is_total_label
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.raw.index import open_index
from lithotse_desktop.workspace import Workspace
from lithotse_spreadsheet import SpreadsheetConnector

DATA = Path(__file__).parent / "data"


def _xlsx_bytes() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Visits"
    sheet.append(["Visit Date", "n", "note"])
    sheet.append([dt.date(2024, 1, 2), 3, "a"])
    sheet.append([dt.datetime(2024, 1, 3, 8, 0), 4.5, None])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


SEEDS = [("seed.xlsx", _xlsx_bytes()), ("seed.xls", (DATA / "clinic.xls").read_bytes()),
         ("seed.ods", (DATA / "clinic.ods").read_bytes())]


@st.composite
def damaged(draw) -> tuple[str, bytes]:
    """A real workbook with bytes overwritten, inserted or cut off."""
    name, blob = draw(st.sampled_from(SEEDS))
    data = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["overwrite", "overwrite", "insert", "truncate"]))
        piece = draw(st.binary(min_size=1, max_size=8))
        if op == "overwrite":
            data[pos:pos + len(piece)] = piece
        elif op == "insert":
            data[pos:pos] = piece
        else:
            del data[pos:]
    return name, bytes(data)


def land_and_read(path: Path) -> dict[str, list[pa.RecordBatch]]:
    conn = SpreadsheetConnector({"path": str(path)})
    infos = {i.name: i for i in conn.streams()}
    out: dict[str, list[pa.RecordBatch]] = {}
    for payload in conn.fetch(FetchRequest("p", list(infos), DateRange(), {})):
        obj = RawObject(payload.path, payload.stream, payload.name, payload.media_type, payload.meta)
        for batch in conn.read(obj):
            date_field = infos[payload.stream].date_field
            if date_field:
                kind = batch.schema.field(date_field).type
                assert pa.types.is_date32(kind) or pa.types.is_timestamp(kind)
            out.setdefault(payload.stream, []).append(batch)
    return out


@settings(max_examples=1000, deadline=None)
@given(damaged())
def test_damaged_workbooks_read_or_raise_input_error(case):
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            land_and_read(path)
        except InputError as exc:
            assert exc.location.startswith(name)


CELL = st.one_of(
    st.none(), st.booleans(), st.integers(-10**9, 10**9),
    st.floats(-1e9, 1e9, allow_nan=False).filter(lambda f: f == 0 or abs(f) > 1e-6),
    # text starting with "=" is a formula to openpyxl, saved with no value computed (read as blank)
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=8).filter(lambda s: not s.startswith("=")),
    st.dates(dt.date(1901, 1, 1), dt.date(2099, 12, 31)),
    st.datetimes(dt.datetime(1901, 1, 1), dt.datetime(2099, 12, 31)).map(lambda d: d.replace(microsecond=0)),
    st.sampled_from(["2024-01-05", "2024-02-30", "2024-01-05T10:00", "soon", " 12 "]),
)


@settings(max_examples=250, deadline=None)
@given(grid=st.lists(st.lists(CELL, min_size=1, max_size=5), min_size=1, max_size=8))
def test_random_grids_read_or_raise_input_error(grid):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Grid"
    for row in grid:
        sheet.append(row)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.xlsx"
        book.save(path)
        try:
            batches = land_and_read(path)
        except InputError as exc:
            assert exc.location.startswith("grid.xlsx")
            return
    blank = {None, ""}
    data_rows = [row for row in grid[1:] if any(v not in blank for v in row)]
    while data_rows and total_row(data_rows[-1]):
        data_rows.pop()
    assert sum(b.num_rows for bs in batches.values() for b in bs) == (len(data_rows) if batches else 0)
    for found in batches.values():
        assert len({b.schema for b in found}) == 1


ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?")


def total_row(row: list) -> bool:
    """A row under the data that reads as totals: a total label first, and no date anywhere."""
    def is_date(value) -> bool:
        if isinstance(value, dt.date):
            return True
        if not isinstance(value, str) or not ISO.fullmatch(value.strip()):
            return False
        try:
            dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return False
        return True

    first = next((v for v in row if v not in (None, "")), None)
    return is_total_label(first) and not any(is_date(v) for v in row)


@pytest.fixture(scope="module")
def installed_plugins():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damaged())
def test_failed_import_leaves_raw_store_empty(installed_plugins, case):
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "in"
        folder.mkdir()
        (folder / "good.xlsx").write_bytes(SEEDS[0][1])
        (folder / name).write_bytes(data)
        ws = Workspace.create(root / "ws")
        ws.add_source("src", "spreadsheet", {"path": str(folder)}, {})
        try:
            result = run_import(ws, "src")
        except InputError:
            assert list(ws.store("raw").list("")) == []
            index = open_index(ws)
            try:
                assert index.landings() == []
            finally:
                index.close()
            return
        assert "good.Visits" in {item.manifest.stream for item in result.landings}
