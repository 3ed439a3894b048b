"""The spreadsheet connector: sheets as streams, cell types, bad workbooks, imports end to end."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest

from lithotse_desktop.connectors import FetchRequest, RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import ConfigError, InputError
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.raw.index import open_index
from lithotse_spreadsheet import SpreadsheetConnector

DATA = Path(__file__).parent / "data"
SOFFICE = Path("/usr/bin/soffice")

# What tests/plugins/spreadsheet/data/clinic.{xls,ods} hold (made from VISITS/LABS below
# with LibreOffice: ``soffice --headless --convert-to xls|ods clinic.xlsx``).
VISITS = [
    ["Visit Date", "Patient", "Weight kg", "Visits", "Note"],
    [dt.date(2023, 12, 30), "p1", 71.5, 1, "first"],
    [dt.date(2024, 1, 15), "p2", 80, 2, None],
    [dt.datetime(2024, 2, 1, 9, 30), "p1", 70.25, 3, "follow-up"],
    [dt.date(2024, 3, 5), "p3", None, 4, "last"],
]
LABS = [["Drawn", "Test", "Value"], [dt.date(2024, 1, 2), "HbA1c", 6.1],
        [dt.date(2024, 6, 2), "HbA1c", 5.9]]
EXPECTED_VISITS = [
    {"Visit Date": dt.datetime(2023, 12, 30), "Patient": "p1", "Weight kg": 71.5, "Visits": 1, "Note": "first"},
    {"Visit Date": dt.datetime(2024, 1, 15), "Patient": "p2", "Weight kg": 80.0, "Visits": 2, "Note": None},
    {"Visit Date": dt.datetime(2024, 2, 1, 9, 30), "Patient": "p1", "Weight kg": 70.25, "Visits": 3,
     "Note": "follow-up"},
    {"Visit Date": dt.datetime(2024, 3, 5), "Patient": "p3", "Weight kg": None, "Visits": 4, "Note": "last"},
]


def workbook(path: Path, sheets: dict[str, list[list]], *, start: str = "A1") -> Path:
    """Write an .xlsx/.xlsm with openpyxl; rows are placed from ``start``."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    col0 = openpyxl.utils.cell.column_index_from_string("".join(c for c in start if c.isalpha()))
    row0 = int("".join(c for c in start if c.isdigit()))
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.cell(row=row0 + r, column=col0 + c, value=value)
    book.save(path)
    return path


def load(path: Path, **settings) -> tuple[list, dict[str, pa.Schema], dict[str, list[dict]], list]:
    """Fetch and read every stream as the core would: (infos, schema by stream, rows by stream, payloads)."""
    conn = SpreadsheetConnector({"path": str(path), **settings})
    infos = conn.streams()
    schemas, rows, payloads = {}, {}, []
    for payload in conn.fetch(FetchRequest("t", [i.name for i in infos], DateRange(), {})):
        payloads.append(payload)
        obj = RawObject(payload.path, payload.stream, payload.name, payload.media_type, payload.meta)
        for batch in conn.read(obj):
            schemas[payload.stream] = batch.schema
            rows.setdefault(payload.stream, []).extend(batch.to_pylist())
    return infos, schemas, rows, payloads


@pytest.fixture
def clinic(tmp_path) -> Path:
    return workbook(tmp_path / "clinic.xlsx", {"Visits": VISITS, "Lab Results": LABS})


@pytest.fixture
def sheet_plugin():
    reset_plugin_manager()
    assert get_plugin_manager().connector("spreadsheet") is SpreadsheetConnector
    yield
    reset_plugin_manager()


# --- formats and types ----------------------------------------------------------------------

def test_xlsx_sheets_become_streams_with_typed_columns(clinic):
    infos, schemas, rows, payloads = load(clinic)
    assert [(i.name, i.date_field) for i in infos] == [("Visits", "Visit Date"), ("Lab_Results", "Drawn")]
    assert dict(zip(schemas["Visits"].names, schemas["Visits"].types, strict=True)) == {
        "Visit Date": pa.timestamp("us"), "Patient": pa.string(), "Weight kg": pa.float64(),
        "Visits": pa.int64(), "Note": pa.string()}
    assert schemas["Lab_Results"].field("Drawn").type == pa.date32()
    assert rows["Visits"] == EXPECTED_VISITS
    assert rows["Lab_Results"][1] == {"Drawn": dt.date(2024, 6, 2), "Test": "HbA1c", "Value": 5.9}
    assert {p.path for p in payloads} == {clinic}
    assert [p.meta["sheet"] for p in payloads] == ["Visits", "Lab Results"]


@pytest.mark.parametrize("fixture", ["clinic.xls", "clinic.ods"])
def test_xls_and_ods_fixtures_read_like_the_xlsx(tmp_path, fixture):
    shutil.copy(DATA / fixture, tmp_path / fixture)
    infos, schemas, rows, payloads = load(tmp_path / fixture)
    assert [i.name for i in infos] == ["Visits", "Lab_Results"]
    assert rows["Visits"] == EXPECTED_VISITS
    assert schemas["Visits"].field("Visits").type == pa.int64()
    assert payloads[0].media_type.startswith("application/vnd.")


@pytest.mark.parametrize("target", ["xls", "ods"])
def test_workbooks_converted_by_libreoffice_read_the_same(clinic, tmp_path, target):
    assert SOFFICE.exists(), f"{SOFFICE} is missing: bash scripts/system-deps.sh installs LibreOffice"
    out = tmp_path / "converted"
    subprocess.run([str(SOFFICE), "--headless", "--convert-to", target, "--outdir", str(out), str(clinic)],
                   check=True, capture_output=True, timeout=180)
    _, _, rows, _ = load(out / f"clinic.{target}")
    assert rows["Visits"] == EXPECTED_VISITS


def test_xlsm_is_read(tmp_path):
    path = workbook(tmp_path / "macro.xlsm", {"Data": [["day", "v"], [dt.date(2024, 5, 1), 2]]})
    _, _, rows, payloads = load(path)
    assert rows == {"Data": [{"day": dt.date(2024, 5, 1), "v": 2}]}
    assert payloads[0].media_type == "application/vnd.ms-excel.sheet.macroEnabled.12"


def test_mixed_and_special_cells(tmp_path):
    path = workbook(tmp_path / "m.xlsx", {"S": [
        ["when", "flag", "mixed", "big", "typed date", "", "code"],
        [dt.date(2024, 1, 1), True, 5, 2 ** 60, "2024-01-03", None, "007"],
        [dt.date(2024, 1, 2), False, "five", 1, dt.date(2024, 1, 4), "stray", 7],
    ]})
    _, schemas, rows, _ = load(path)
    schema = schemas["S"]
    assert dict(zip(schema.names, schema.types, strict=True)) == {
        "when": pa.date32(), "flag": pa.bool_(), "mixed": pa.string(), "big": pa.float64(),
        "typed date": pa.date32(), "column_F": pa.string(), "code": pa.string()}
    assert rows["S"][0]["mixed"] == "5" and rows["S"][1]["mixed"] == "five"
    assert rows["S"][0]["typed date"] == dt.date(2024, 1, 3)
    assert rows["S"][1]["code"] == "7"


def test_header_row_and_offset_data(tmp_path):
    rows = [["Clinic export"], [], ["date", "value"], [dt.date(2024, 2, 2), 1], [], [dt.date(2024, 2, 3), 2]]
    path = workbook(tmp_path / "o.xlsx", {"Export": rows}, start="C2")
    _, schemas, got, _ = load(path, header_row=4)
    assert schemas["Export"].names == ["date", "value"]
    assert got["Export"] == [{"date": dt.date(2024, 2, 2), "value": 1}, {"date": dt.date(2024, 2, 3), "value": 2}]


def test_sheets_setting_selects_and_empty_sheets_are_skipped(clinic, tmp_path):
    infos, *_ = load(clinic, sheets="lab results")
    assert [i.name for i in infos] == ["Lab_Results"]
    path = workbook(tmp_path / "e.xlsx", {"Data": [["d"], [dt.date(2024, 1, 1)]], "Empty": []})
    assert [i.name for i in load(path)[0]] == ["Data"]


def test_folder_streams_are_file_and_sheet(clinic, tmp_path):
    sub = tmp_path / "2024"
    sub.mkdir()
    shutil.copy(DATA / "clinic.ods", sub / "clinic.ods")
    (tmp_path / "~$clinic.xlsx").write_bytes(b"lock file")
    names = [i.name for i in SpreadsheetConnector({"path": str(tmp_path)}).streams()]
    assert names == ["2024.clinic.Visits", "2024.clinic.Lab_Results", "clinic.Visits", "clinic.Lab_Results"]
    shutil.copy(DATA / "clinic.xls", tmp_path / "clinic.xls")
    with pytest.raises(ConfigError, match=r"would both be stream 'clinic.Visits'"):
        SpreadsheetConnector({"path": str(tmp_path)}).streams()


def test_date_column_setting_and_key(clinic):
    infos, *_ = load(clinic, date_column="Drawn, Visit Date", key="Patient")
    assert {i.name: (i.date_field, i.key) for i in infos} == {
        "Visits": ("Visit Date", ("Patient",)), "Lab_Results": ("Drawn", ())}


def test_person_column_is_detected_or_set(clinic):
    """The Visits sheet's Patient column is the person key; the lab sheet names no person."""
    infos, *_ = load(clinic)
    assert {i.name: i.person_key for i in infos} == {"Visits": ("Patient",), "Lab_Results": None}
    infos, *_ = load(clinic, person_column="Note")
    assert {i.name: i.person_key for i in infos} == {"Visits": ("Note",), "Lab_Results": None}
    infos, *_ = load(clinic, person_column="none")
    assert {i.name: i.person_key for i in infos} == {"Visits": None, "Lab_Results": None}


def test_a_person_column_headed_with_spaces_is_detected(tmp_path):
    """Pass 35: a sheet headed ``Patient MRN`` was counted by rows (one patient's 15 visits
    published as 15 people): the names detected were spelt with ``_`` only."""
    book = workbook(tmp_path / "visits.xlsx", {"Visits": [["Visit Date", "Patient MRN", "Department"],
                                                          [dt.date(2024, 1, 2), "M1", "ONC"]]})
    infos, *_ = load(book)
    assert [i.person_key for i in infos] == [("Patient MRN",)]


def test_a_person_column_in_no_sheet_is_refused(clinic):
    with pytest.raises(ConfigError, match=r"person_column 'Patient_ID' is not a column of any table "
                                          r"of this source \(clinic\.xlsx?, sheet 'Visits': Visit Date, Patient"):
        load(clinic, person_column="Patient_ID")


def test_header_row_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="header_row"):
        SpreadsheetConnector({"path": str(tmp_path), "header_row": 0})


# --- malformed input -----------------------------------------------------------------------

def test_bad_date_names_file_sheet_and_row(tmp_path):
    rows = VISITS[:3] + [["soon", "p9", 1, 1, None]] + VISITS[3:]
    path = workbook(tmp_path / "clinic.xlsx", {"Visits": rows})
    with pytest.raises(InputError, match=r"^clinic.xlsx, sheet 'Visits', row 4: date column "
                                         r"'Visit Date': 'soon' is not a date$"):
        load(path)


def test_number_in_date_column_is_reported(tmp_path):
    path = workbook(tmp_path / "n.xlsx", {"S": [["date"], [dt.date(2024, 1, 1)], [45000]]})
    with pytest.raises(InputError, match=r"^n.xlsx, sheet 'S', row 3: date column 'date': "
                                         r"the number 45000 is not a date; format"):
        load(path)


def test_invalid_iso_date_text_is_reported(tmp_path):
    path = workbook(tmp_path / "i.xlsx", {"S": [["admit_date"], ["2024-01-01"], ["2024-02-30"]]})
    with pytest.raises(InputError, match=r"^i.xlsx, sheet 'S', row 3: date column 'admit_date': '2024-02-30'"):
        load(path)


@pytest.mark.parametrize("name,data", [
    ("truncated.xlsx", "half"),
    ("notes.xlsx", b"Visit Date,Patient\n2024-01-01,p1\n"),
    ("empty.ods", b""),
    ("junk.xls", bytes(range(256)) * 8),
])
def test_unreadable_files_are_input_errors(clinic, tmp_path, name, data):
    blob = clinic.read_bytes()[: len(clinic.read_bytes()) // 2] if data == "half" else data
    path = tmp_path / "bad"
    path.mkdir()
    (path / name).write_bytes(blob)
    with pytest.raises(InputError, match=rf"^{name}: is not a readable spreadsheet"):
        load(path / name)


def test_missing_sheet_is_reported(clinic):
    with pytest.raises(InputError, match=r"^clinic.xlsx, sheet 'Vitals': no such sheet; sheets: Visits, Lab Results"):
        load(clinic, sheets="Visits,Vitals")
    conn = SpreadsheetConnector({"path": str(clinic)})
    with pytest.raises(InputError, match=r"^clinic.xlsx, sheet 'Gone': no such sheet"):
        list(conn.read(RawObject(clinic, "Gone", "clinic.xlsx", "x", {"sheet": "Gone"})))


def skipped_by_fetch(path: Path, **settings) -> list[tuple[str, str]]:
    conn = SpreadsheetConnector({"path": str(path), **settings})
    request = FetchRequest("t", [i.name for i in conn.streams()], DateRange(), {})
    assert list(conn.fetch(request)) == []
    return request.skipped


def test_a_sheet_without_a_table_at_the_header_row_is_skipped_unless_named(clinic, tmp_path):
    path = workbook(tmp_path / "b.xlsx", {"S": [[None], [dt.date(2024, 1, 1)]]}, start="A2")
    assert skipped_by_fetch(path, header_row=2) == [
        ("S", "b.xlsx, sheet 'S', row 2: the header row is blank: it must name the columns "
              "(set header_row if the names are on another row)")]
    assert skipped_by_fetch(path, header_row=9) == [("S", "b.xlsx, sheet 'S': has no row 9 to take column "
                                                          "names from")]
    assert [s for s, _ in skipped_by_fetch(clinic, date_column="Seen")] == ["Visits", "Lab_Results"]
    with pytest.raises(InputError, match=r"^b.xlsx, sheet 'S', row 2: the header row is blank"):
        load(path, header_row=2, sheets="S")
    with pytest.raises(InputError, match=r"^b.xlsx, sheet 'S': has no row 9"):
        load(path, header_row=9, sheets="s")
    with pytest.raises(InputError, match=r"^clinic.xlsx, sheet 'Visits', row 1: no date column 'Seen'"):
        load(clinic, date_column="Seen", sheets="Visits")


def test_an_import_whose_every_sheet_is_skipped_fails_with_the_reasons(workspace, sheet_plugin, clinic):
    workspace.add_source("book", "spreadsheet", {"path": str(clinic), "date_column": "Seen"}, {})
    with pytest.raises(InputError, match=r"^source book: nothing to import: clinic.xlsx, sheet 'Visits', "
                                         r"row 1: no date column 'Seen'; .*; clinic.xlsx, sheet 'Lab Results'"):
        run_import(workspace, "book")
    assert list(workspace.store("raw").list("")) == []


def test_changed_workbook_under_a_landing_is_an_input_error(clinic, tmp_path):
    *_, payloads = load(clinic)
    workbook(clinic, {"Visits": [["Visit Date", "Who"], [dt.date(2024, 1, 1), "x"]]})
    conn = SpreadsheetConnector({"path": str(clinic)})
    with pytest.raises(InputError, match=r"^clinic.xlsx, sheet 'Visits', row 1: the header has changed"):
        list(conn.read(RawObject(clinic, "Visits", "clinic.xlsx", "x", payloads[0].meta)))


# --- imports through the installed plugin ---------------------------------------------------

def test_import_counts_range_and_reads_back_only_in_range_rows(workspace, sheet_plugin, clinic):
    start, end = dt.date(2024, 1, 1), dt.date(2024, 2, 29)
    visit_days = [row[0] if isinstance(row[0], dt.date) else None for row in VISITS[1:]]
    day = [d.date() if isinstance(d, dt.datetime) else d for d in visit_days]
    inside = sum(start <= d <= end for d in day)
    workspace.add_source("book", "spreadsheet", {"path": str(clinic)}, {})
    result = run_import(workspace, "book", DateRange(start, end))
    by_stream = {item.manifest.stream: item.manifest for item in result.landings}
    visits = by_stream["Visits"]
    assert (visits.records, visits.records_in_range) == (len(day), inside)
    assert visits.meta["sheet"] == "Visits" and visits.date_field == "Visit Date"
    assert (by_stream["Lab_Results"].records_in_range, by_stream["Lab_Results"].records_out_of_range) == (1, 1)
    raw = workspace.store("raw")
    assert raw.get_bytes(visits.object_key) == clinic.read_bytes()
    assert visits.sha256 == by_stream["Lab_Results"].sha256
    rows = [r for b in read_stream(workspace, "book", "Visits") for r in b.to_pylist()]
    assert [r["Patient"] for r in rows] == ["p2", "p1"]
    assert all(start <= r["Visit Date"].date() <= end for r in rows)


def test_incremental_import_and_new_workbooks(workspace, sheet_plugin, clinic, tmp_path):
    workspace.add_source("book", "spreadsheet", {"path": str(tmp_path)}, {})
    assert len(run_import(workspace, "book").landings) == 2
    assert run_import(workspace, "book").landings == []
    workbook(tmp_path / "home.xlsx", {"BP": [["taken on", "sys"], [dt.date(2024, 4, 1), 120]]})
    [new] = run_import(workspace, "book").landings
    assert (new.manifest.stream, new.manifest.date_field, new.manifest.records) == ("home.BP", "taken on", 1)
    workbook(clinic, {"Visits": VISITS + [[dt.date(2024, 5, 1), "p4", 60.5, 5, None]], "Lab Results": LABS})
    os.utime(clinic, ns=(10**9, 10**9))
    changed = run_import(workspace, "book").landings
    assert sorted(item.manifest.stream for item in changed) == ["clinic.Lab_Results", "clinic.Visits"]


def test_bad_workbook_aborts_import_and_lands_nothing(workspace, sheet_plugin, clinic, tmp_path):
    workbook(tmp_path / "bad.xlsx", {"S": [["date"], [dt.date(2024, 1, 1)], ["later"]]})
    workspace.add_source("book", "spreadsheet", {"path": str(tmp_path)}, {})
    with pytest.raises(InputError, match=r"^bad.xlsx, sheet 'S', row 3"):
        run_import(workspace, "book")
    assert list(workspace.store("raw").list("")) == []
    index = open_index(workspace)
    assert index.landings() == []
    index.close()


def test_cli_source_add_import_and_raw_ls(workspace, sheet_plugin, cli, tmp_path):
    shutil.copy(DATA / "clinic.ods", tmp_path / "clinic.ods")
    path = tmp_path / "clinic.ods"
    cli("source", "add", "ehr", "--connector", "spreadsheet", "--set", f"path={path}",
        "--set", "sheets=Visits")
    out = cli("import", "ehr", "--from", "2024-01-01", "--to", "2024-12-31", "--no-build", "--quiet")
    assert "ehr/Visits clinic.ods: 4 records (3 in range, 1 outside)" in out.output
    [row] = json.loads(cli("raw", "ls", "--json").output)
    assert (row["stream"], row["connector"], row["records_in_range"]) == ("Visits", "spreadsheet", 3)
    assert row["meta"]["sheet"] == "Visits"


def test_workbook_declaring_a_huge_sheet_is_refused_not_loaded(tmp_path):
    """A damaged .xls (found by fuzzing) made calamine allocate ~23 GB; it must end in an InputError."""
    from pathlib import Path

    from lithotse_desktop.errors import InputError
    from lithotse_spreadsheet import SpreadsheetConnector

    data = Path(__file__).parent / "data" / "oversized-dimension.xls"
    target = tmp_path / "clinic.xls"
    target.write_bytes(data.read_bytes())
    with pytest.raises(InputError, match="clinic.xls: declares sheets too large"):
        SpreadsheetConnector({"path": str(target)}).streams()


def test_a_missing_calamine_is_reported_as_a_broken_install_not_as_the_users_file(tmp_path, monkeypatch):
    """calamine is imported at its first use, inside the guard that turns calamine's failures into
    the file's error: an ImportError passes through it, naming the module, not the workbook."""
    from lithotse_desktop.plugin import deferred_import
    from lithotse_spreadsheet import book

    path = tmp_path / "visits.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.append(["a"])
    workbook.save(path)
    monkeypatch.setattr(book, "_check_size", lambda path, name: None)
    monkeypatch.setattr(book, "calamine", deferred_import("python_calamine_not_installed"))
    with pytest.raises(ModuleNotFoundError, match="python_calamine_not_installed"):
        with book.open_book(path, "visits.xlsx"):
            pass
