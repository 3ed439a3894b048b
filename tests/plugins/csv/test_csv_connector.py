"""The CSV/TSV connector: parsing rules, bad input, and imports through the installed plugin."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

import lithotse_csv
from lithotse_csv import CsvConnector, stream_name
from lithotse_desktop.connectors import FetchRequest, RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import ConfigError, InputError
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.raw.index import open_index
from lithotse_desktop.testing import import_rows
from tests.conftest import TEST_DATA

SYNTHEA = TEST_DATA / "csv" / "synthea-conditions.csv"


def load(path: Path, rng: DateRange | None = None, **settings) -> tuple[list, pa.Schema | None, list]:
    """Fetch and read every stream of a file or folder as the core would; returns (infos, schema, rows)."""
    conn = CsvConnector({"path": str(path), **settings})
    infos = conn.streams()
    request = FetchRequest("t", [i.name for i in infos], rng or DateRange(), {})
    rows: list[dict] = []
    schema = None
    for payload in conn.fetch(request):
        obj = RawObject(payload.path, payload.stream, payload.name, payload.media_type, payload.meta)
        for batch in conn.read(obj):
            schema = batch.schema
            rows.extend(batch.to_pylist())
    return infos, schema, rows


def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture
def csv_plugin():
    """The csv connector loaded the way users get it: from its installed entry point."""
    reset_plugin_manager()
    assert get_plugin_manager().connector("csv") is CsvConnector
    yield
    reset_plugin_manager()


def synthea_in_range(start: dt.date, end: dt.date) -> tuple[int, int]:
    """Rows of the sample file whose START falls in the range, counted with the csv module."""
    with open(SYNTHEA, newline="", encoding="utf-8") as fh:
        starts = [dt.date.fromisoformat(row["START"]) for row in csv.DictReader(fh)]
    return sum(start <= d <= end for d in starts), len(starts)


# --- parsing ------------------------------------------------------------------------------

def test_synthea_start_is_detected_and_columns_typed():
    infos, schema, rows = load(SYNTHEA)
    [info] = infos
    assert info.name == "synthea-conditions"
    assert info.date_field == "START"
    assert info.date_fields == ("START", "STOP")
    assert schema.field("START").type == pa.date32()
    assert schema.field("STOP").type == pa.date32()
    assert schema.field("CODE").type == pa.int64()
    assert schema.field("DESCRIPTION").type == pa.string()
    assert rows[0]["START"] == dt.date(2013, 1, 28)
    assert rows[0]["DESCRIPTION"] == "Viral sinusitis (disorder)"
    assert len(rows) == synthea_in_range(dt.date.min, dt.date.max)[1]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_detected(tmp_path, delimiter):
    other = ";" if delimiter == "," else ","
    text = (f"visit_date{delimiter}note{delimiter}n\n"
            f"2024-01-02{delimiter}\"a{other} b{delimiter} c\"{delimiter}1\n"
            f"2024-01-03{delimiter}plain{delimiter}2\n")
    _, schema, rows = load(write(tmp_path, "visits.txt", text))
    assert schema.names == ["visit_date", "note", "n"]
    assert rows[0]["note"] == f"a{other} b{delimiter} c"
    assert [r["n"] for r in rows] == [1, 2]


def test_suffix_breaks_delimiter_ties_and_a_misnamed_tsv_still_reads(tmp_path):
    text = "a\tb,c\n1\t2,3\n"
    assert load(write(tmp_path, "one.tsv", text))[1].names == ["a", "b,c"]
    assert load(write(tmp_path, "one.csv", text))[1].names == ["a b", "c"], "a tab in a header is a space"
    assert load(write(tmp_path, "two.tsv", "a,b\n1,2\n"))[1].names == ["a", "b"]


def test_utf8_bom_is_stripped_from_first_header(tmp_path):
    _, schema, rows = load(write(tmp_path, "bom.csv", b"\xef\xbb\xbfdate,v\n2024-01-01,1\n"))
    assert schema.names == ["date", "v"]
    assert rows == [{"date": dt.date(2024, 1, 1), "v": 1}]


def test_cp1252_is_the_fallback_when_utf8_fails(tmp_path):
    path = write(tmp_path, "win.csv", "date;name\n2024-01-01;Müller – café\n".encode("cp1252"))
    conn = CsvConnector({"path": str(path)})
    [payload] = conn.fetch(FetchRequest("t", ["win"], DateRange(), {}))
    assert payload.meta["encoding"] == "cp1252"
    _, _, rows = load(path)
    assert rows == [{"date": dt.date(2024, 1, 1), "name": "Müller – café"}]


def test_cp1252_byte_after_the_sample_still_picks_cp1252(tmp_path):
    lines = ["date,name"] + ["2024-01-01,plain"] * 8000 + ["2024-01-02,caf\u00e9"]
    path = write(tmp_path, "late.csv", ("\n".join(lines) + "\n").encode("cp1252"))
    infos, _, rows = load(path)
    assert infos[0].date_field == "date"
    assert rows[-1]["name"] == "café"


def test_utf16_with_bom_is_read(tmp_path):
    _, _, rows = load(write(tmp_path, "u16.csv", "date,v\n2024-03-01,é\n".encode("utf-16")))
    assert rows == [{"date": dt.date(2024, 3, 1), "v": "é"}]


def test_encoding_and_delimiter_settings_override_detection(tmp_path):
    path = write(tmp_path, "x.csv", "date|v,w\n2024-01-01|ä,1\n".encode("latin-1"))
    _, schema, rows = load(path, encoding="latin-1", delimiter="pipe")
    assert schema.names == ["date", "v,w"]
    assert rows[0]["v,w"] == "ä,1"


def test_quoted_fields_keep_newlines_quotes_and_delimiters(tmp_path):
    text = 'date,note\n2024-01-01,"two\nlines, ""quoted"""\n2024-01-02,"x"\n'
    _, _, rows = load(write(tmp_path, "q.csv", text))
    assert rows == [{"date": dt.date(2024, 1, 1), "note": 'two\nlines, "quoted"'},
                    {"date": dt.date(2024, 1, 2), "note": "x"}]


def test_column_types_follow_every_value(tmp_path):
    text = ("when,count,ratio,zip,big,stamp,utc,note,empty\n"
            "2024-01-01,1,1.5,02139,12345678901234567890,2024-01-01T08:30:00,2024-01-01T08:30:00+02:00,a,\n"
            "2024-01-02,-2,2,10001,1,2024-01-02 09:00,2024-01-02T00:00:00Z,,\n")
    _, schema, rows = load(write(tmp_path, "t.csv", text))
    assert dict(zip(schema.names, schema.types, strict=True)) == {
        "when": pa.date32(), "count": pa.int64(), "ratio": pa.float64(), "zip": pa.string(),
        "big": pa.string(), "stamp": pa.timestamp("us"), "utc": pa.timestamp("us", "UTC"),
        "note": pa.string(), "empty": pa.string()}
    assert rows[0]["zip"] == "02139"
    assert rows[0]["utc"] == dt.datetime(2024, 1, 1, 6, 30, tzinfo=dt.UTC)
    assert rows[1]["stamp"] == dt.datetime(2024, 1, 2, 9, 0)
    assert rows[1]["note"] is None


def test_types_come_from_the_whole_file_not_its_first_block(tmp_path):
    lines = ["day,code"] + [f"2024-01-01,{i}" for i in range(120_000)] + ["2024-01-02,A12"]
    _, schema, rows = load(write(tmp_path, "big.csv", "\n".join(lines) + "\n"))
    assert schema.field("code").type == pa.string()
    assert rows[-1]["code"] == "A12" and rows[0]["code"] == "0"


def test_a_record_longer_than_a_read_block_is_read_once(tmp_path):
    huge = "line\n" * 600_000
    text = "date,note\n" + "2024-01-01,a\n" * 50_000 + f'2024-01-02,"{huge}"\n2024-01-03,b\n'
    _, _, rows = load(write(tmp_path, "long.csv", text))
    assert len(rows) == 50_002
    assert rows[50_000]["note"] == huge and rows[-1]["note"] == "b"


def test_date_column_setting_wins_over_detection(tmp_path):
    path = write(tmp_path, "d.csv", "created,admit_date\n2024-01-01,2023-05-05\n")
    infos, _, _ = load(path)
    assert infos[0].date_field == "admit_date"
    infos, _, _ = load(path, date_column="missing, created")
    assert infos[0].date_field == "created"


def test_key_applies_to_files_holding_the_columns(tmp_path):
    write(tmp_path, "enc.csv", "date,encounter_id\n2024-01-01,e1\n")
    write(tmp_path, "other.csv", "date,x\n2024-01-01,1\n")
    conn = CsvConnector({"path": str(tmp_path), "key": "encounter_id"})
    assert {i.name: i.key for i in conn.streams()} == {"enc": ("encounter_id",), "other": ()}


def test_person_column_is_detected_set_or_turned_off(tmp_path):
    """Suppression counts people through the person key: detected from the usual names, else
    the setting, else none (records are counted)."""
    write(tmp_path, "synthea.csv", "START,PATIENT,CODE\n2024-01-01,p1,1\n")
    write(tmp_path, "ehr.csv", "admit_date,Patient ID,mrn\n2024-01-01,p1,m1\n")
    write(tmp_path, "plain.csv", "date,count\n2024-01-01,3\n")
    detected = {i.name: i.person_key for i in CsvConnector({"path": str(tmp_path)}).streams()}
    assert detected == {"synthea": ("PATIENT",), "ehr": ("Patient ID",), "plain": None}
    chosen = {i.name: i.person_key for i in CsvConnector({"path": str(tmp_path), "person_column": "mrn"}).streams()}
    assert chosen == {"synthea": None, "ehr": ("mrn",), "plain": None}
    off = {i.name: i.person_key for i in CsvConnector({"path": str(tmp_path), "person_column": "none"}).streams()}
    assert set(off.values()) == {None}
    shown = {i.name: i.to_json()["person_key"] for i in CsvConnector({"path": str(tmp_path)}).streams()}
    assert shown["ehr"] == ["Patient ID"] and shown["plain"] is None


def test_person_columns_under_other_usual_names_are_detected(tmp_path):
    """The twenty-second review: a file whose patients are in ``pid`` was counted by records
    (12 visits of one patient published as 12), though ``pid`` was refused as a dimension for
    being a person's key."""
    write(tmp_path, "a.csv", "encounter_id,pid,admit_date\nE1,p1,2024-01-01\n")
    write(tmp_path, "b.csv", "encounter_id,chart_no,admit_date\nE1,c1,2024-01-01\n")
    write(tmp_path, "c.csv", "encounter_id,Patient_MRN,admit_date\nE1,m1,2024-01-01\n")
    detected = {i.name: i.person_key for i in CsvConnector({"path": str(tmp_path)}).streams()}
    assert detected == {"a": ("pid",), "b": ("chart_no",), "c": ("Patient_MRN",)}


@pytest.mark.parametrize("header", ["Patient MRN", "Medical Record Number", "MR No", "Chart No", "patient-mrn",
                                    # pass 36
                                    "PAT_ID", "PAT_MRN_ID", "Med Rec #", "MR#", "Medical Record #", "Chart #",
                                    "MRN #", "Unit Number", "NHS Number", "Hospital Number", "UR Number", "EMPI",
                                    "Client ID", "record_id", "Participant ID",
                                    # pass 37
                                    "PAT_NUM", "Pt #", "PatientDurableKey", "Patient_SK", "CMRN",
                                    "Enterprise MRN", "NHI", "Health Card Number", "Medicaid ID",
                                    "Resident ID", "Subject", "Local Patient ID"])
def test_person_columns_named_with_spaces_are_detected(tmp_path, header):
    """Pass 35: a header spelt with spaces (``Patient MRN``) matched no name in the list, which
    spells them with ``_``: one person's 15 visits were published as 15; pass 36: names health
    systems use (Epic's ``PAT_ID``, ``Med Rec #``, ``Unit Number``, ``NHS Number``, REDCap's
    ``record_id``) were not in it."""
    write(tmp_path, "v.csv", f"encounter_id,{header},admit_date\nE1,m1,2024-01-01\n")
    assert [i.person_key for i in CsvConnector({"path": str(tmp_path)}).streams()] == [(header,)]


def test_a_person_column_in_no_file_is_refused_and_nothing_lands(tmp_path):
    """A mistyped person_column would count records in place of people: the import refuses it,
    naming the setting and the columns there are; a file without the column beside one with it
    (a code list beside the visits) is imported and counted by records."""
    write(tmp_path, "visits.csv", "admit_date,patient_id\n2024-01-01,p1\n")
    write(tmp_path, "codes.csv", "date,code\n2024-01-01,A\n")
    conn = CsvConnector({"path": str(tmp_path), "person_column": "patient id"})
    with pytest.raises(ConfigError, match=r"person_column 'patient id' is not a column of any table.*"
                                          r"visits.csv: admit_date, patient_id"):
        list(conn.fetch(FetchRequest("t", ["visits", "codes"], DateRange(), {})))
    chosen = CsvConnector({"path": str(tmp_path), "person_column": "patient_id"})
    landed = list(chosen.fetch(FetchRequest("t", ["visits", "codes"], DateRange(), {})))
    assert sorted(p.stream for p in landed) == ["codes", "visits"]
    assert {i.name: i.person_key for i in chosen.streams()} == {"visits": ("patient_id",), "codes": None}


def test_stream_names_are_stable_and_safe(tmp_path):
    assert stream_name(Path("synthea-conditions.csv")) == "synthea-conditions"
    assert stream_name(Path("2024/lab results (v2).tsv")) == "2024.lab_results_v2"
    assert stream_name(Path("../..csv")) == "file.file"
    write(tmp_path, "a.csv", "x\n1\n")
    write(tmp_path, "a.tsv", "x\n1\n")
    with pytest.raises(ConfigError, match=r"a.csv and a.tsv would both be stream 'a'"):
        CsvConnector({"path": str(tmp_path)}).streams()


def test_pattern_is_case_insensitive_and_skips_hidden_files(tmp_path):
    write(tmp_path, "UPPER.CSV", "x\n1\n")
    write(tmp_path, "notes.txt", "x\n1\n")
    write(tmp_path, ".hidden.csv", "x\n1\n")
    names = [i.name for i in CsvConnector({"path": str(tmp_path)}).streams()]
    assert names == ["UPPER"]
    names = [i.name for i in CsvConnector({"path": str(tmp_path), "pattern": "*.txt"}).streams()]
    assert names == ["notes"]


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="delimiter"):
        CsvConnector({"path": str(tmp_path), "delimiter": "ab"})
    with pytest.raises(ConfigError, match="not an encoding"):
        CsvConnector({"path": str(tmp_path), "encoding": "klingon-8"})
    with pytest.raises(ConfigError, match="no files matching"):
        CsvConnector({"path": str(tmp_path)}).streams()


@pytest.mark.parametrize("data", [b"date,v", b"\xef\xbb\xbfdate,v", b"date,v\r\n"])
def test_header_only_file_reads_as_no_records(tmp_path, data):
    _, schema, rows = load(write(tmp_path, "h.csv", data))
    assert schema.names == ["date", "v"] and rows == []


def test_last_line_without_newline_and_cr_line_endings(tmp_path):
    _, _, rows = load(write(tmp_path, "n.csv", "date,v\r2024-01-01,1\r2024-01-02,2"))
    assert rows == [{"date": dt.date(2024, 1, 1), "v": 1}, {"date": dt.date(2024, 1, 2), "v": 2}]


def test_read_without_metadata_decides_the_layout_itself(tmp_path):
    path = write(tmp_path, "m.csv", "date;v\n2024-01-01;1,5\n")
    conn = CsvConnector({"path": str(path)})
    [batch] = conn.read(RawObject(path, "m", "m.csv", "text/csv", {}))
    assert batch.to_pylist() == [{"date": dt.date(2024, 1, 1), "v": "1,5"}]


# --- malformed input -----------------------------------------------------------------------

BAD = [
    ("ragged.csv", b"date,v\n2024-01-01,1\n2024-01-02,2,3\n",
     "ragged.csv, line 3: expected 2 fields as in the header, found 3"),
    ("ragged2.csv", b'date,v\n2024-01-01,"multi\nline"\n2024-01-02\n',
     "ragged2.csv, line 4: expected 2 fields as in the header, found 1"),
    ("baddate.csv", b"date,v\n2024-01-01,1\n2024-01-02,2\nsoon,3\n",
     "baddate.csv, line 4: date column 'date': 'soon' is not an ISO date"),
    ("feb30.csv", b"admit_date,v\n2024-01-01,1\n2024-02-30,2\n",
     "feb30.csv, line 3: date column 'admit_date': '2024-02-30' is not an ISO date"),
    ("mixed.csv", b"when,v\n2024-01-01T10:00,1\n2024-01-02T10:00Z,2\n",
     "mixed.csv, line 3: date column 'when': '2024-01-02T10:00Z' does not match the earlier values"),
    ("undecodable.csv", b"date,v\n2024-01-01,caf\xc3\xa9\n2024-01-02,\x81\x8d\n",
     "undecodable.csv, line 3: byte 0x81 is neither UTF-8 nor cp1252 text"),
    ("empty.csv", b"", "empty.csv, line 1: the file is empty: a header row is expected"),
    ("blank.csv", b"\n\n   \n", "blank.csv, line 3: the header row is blank"),
    ("junk.csv", bytes(range(256)) * 4, "junk.csv, line 1: binary data (control byte 0x00)"),
    ("zip.csv", b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",
     "zip.csv, line 1: binary data (control byte 0x03)"),
    ("open.csv", b'date,v\n2024-01-01,"never closed\n2024-01-02,4\n',
     "open.csv, line 2: a quoted field starting here is never closed"),
]


@pytest.mark.parametrize("name,data,message", BAD, ids=[b[0] for b in BAD])
def test_malformed_files_raise_input_error_naming_file_and_line(tmp_path, name, data, message):
    with pytest.raises(InputError) as caught:
        load(write(tmp_path, name, data))
    assert str(caught.value).startswith(message), str(caught.value)


def test_bad_date_far_down_a_big_file_names_its_line(tmp_path):
    lines = ["date,v"] + ["2024-01-01,x"] * 100_000 + ["01/02/2024,y"]
    with pytest.raises(InputError, match=r"^late.csv, line 100002: date column 'date': '01/02/2024'"):
        load(write(tmp_path, "late.csv", "\n".join(lines) + "\n"))


def test_missing_date_column_setting_is_reported(tmp_path):
    path = write(tmp_path, "x.csv", "a,b\n1,2\n")
    with pytest.raises(InputError, match=r"^x.csv, line 1: no date column 'visit' or 'when'; columns: a, b"):
        load(path, date_column="visit,when")


def test_read_of_tampered_bytes_is_an_input_error(tmp_path):
    path = write(tmp_path, "t.csv", "date,v\n2024-01-01,1\n")
    conn = CsvConnector({"path": str(path)})
    [payload] = conn.fetch(FetchRequest("t", ["t"], DateRange(), {}))
    path.write_text("date,v\n2024-01-01,one\n")
    with pytest.raises(InputError, match=r"^t.csv, line 2: column 'v': 'one' is not int64"):
        list(conn.read(RawObject(path, "t", "t.csv", "text/csv", payload.meta)))


# --- imports through the installed plugin -------------------------------------------------

def test_import_synthea_counts_and_reads_back_only_the_range(lithotse_workspace, register_plugin):
    """Written with the plugin test helpers of lithotse_desktop.testing, as a third party would."""
    register_plugin(lithotse_csv)  # installed: its entry point loaded this very module
    start, end = dt.date(2010, 1, 1), dt.date(2015, 12, 31)
    inside, total = synthea_in_range(start, end)
    assert 0 < inside < total
    result = import_rows(lithotse_workspace, "ehr", connector="csv", settings={"path": SYNTHEA},
                         start=start, end=end)
    [m] = result.landings
    assert (m.stream, m.date_field, m.original_name) == ("synthea-conditions", "START",
                                                         "synthea-conditions.csv")
    assert (m.records, m.records_in_range, m.records_out_of_range) == (total, inside, total - inside)
    assert lithotse_workspace.store("raw").get_bytes(m.object_key) == SYNTHEA.read_bytes()
    rows = result.rows["synthea-conditions"]
    assert len(rows) == inside
    assert all(start <= r["START"] <= end for r in rows)


def test_tz_aware_dates_use_the_workspace_time_zone(lithotse_workspace, register_plugin, tmp_path):
    register_plugin(lithotse_csv)
    write(tmp_path, "obs.csv", "effective,v\n2024-01-31T23:30:00-05:00,late\n2024-01-31T12:00:00Z,noon\n")
    result = import_rows(lithotse_workspace, "obs", connector="csv", settings={"path": tmp_path},
                         start="2024-01-31", end="2024-01-31")
    [landing] = result.landings
    assert (landing.records_in_range, landing.records_out_of_range) == (1, 1)
    assert [r["v"] for r in result.rows["obs"]] == ["noon"]


def test_incremental_import_skips_unchanged_files_and_picks_up_new_ones(workspace, csv_plugin, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    shutil.copy(SYNTHEA, folder / "conditions.csv")
    workspace.add_source("ehr", "csv", {"path": str(folder)}, {})
    rng = DateRange.parse("2000-01-01", "2020-12-31")
    assert len(run_import(workspace, "ehr", rng).landings) == 1
    assert run_import(workspace, "ehr", rng).landings == []
    write(folder, "visits.csv", "visit_date,kind\n2019-05-01,checkup\n1999-01-01,old\n")
    [new] = run_import(workspace, "ehr", rng).landings
    assert (new.manifest.stream, new.manifest.records_in_range) == ("visits", 1)
    wider = run_import(workspace, "ehr", DateRange.parse("1990-01-01", "2020-12-31")).landings
    assert sorted(item.manifest.stream for item in wider) == ["conditions", "visits"]
    assert all(item.manifest.already_stored for item in wider)


def test_schema_stays_stable_when_a_file_changes(workspace, csv_plugin, tmp_path):
    path = write(tmp_path, "labs.csv", "date,value\n2024-01-01,1.5\n")
    workspace.add_source("labs", "csv", {"path": str(path)}, {})
    run_import(workspace, "labs")
    path.write_text("date,value\n2024-01-01,1.5\n2024-02-01,2\n")
    os.utime(path, ns=(1, 1))
    [again] = run_import(workspace, "labs").landings
    assert again.manifest.meta["columns"] == [["date", "date32"], ["value", "float64"]]
    types = {b.schema.field("value").type for b in read_stream(workspace, "labs", "labs")}
    assert types == {pa.float64()}


def test_bad_file_aborts_the_whole_import_and_lands_nothing(workspace, csv_plugin, tmp_path):
    shutil.copy(SYNTHEA, tmp_path / "good.csv")
    write(tmp_path, "bad.csv", "date,v\n2024-01-01,1\n2024-01-02\n")
    workspace.add_source("ehr", "csv", {"path": str(tmp_path)}, {})
    with pytest.raises(InputError, match=r"^bad.csv, line 3: expected 2 fields"):
        run_import(workspace, "ehr")
    assert list(workspace.store("raw").list("")) == []
    index = open_index(workspace)
    assert index.landings() == []
    index.close()


def test_cli_source_add_import_and_raw_ls(workspace, csv_plugin, cli):
    inside, total = synthea_in_range(dt.date(2012, 1, 1), dt.date(2018, 6, 30))
    cli("source", "add", "ehr", "--connector", "csv", "--set", f"path={SYNTHEA}")
    streams = json.loads(cli("source", "streams", "ehr", "--json").output)
    assert streams[0]["date_field"] == "START"
    out = cli("import", "ehr", "--from", "2012-01-01", "--to", "2018-06-30", "--no-build", "--quiet")
    assert f"{total} records ({inside} in range, {total - inside} outside)" in out.output
    [row] = json.loads(cli("raw", "ls", "--json").output)
    assert (row["source"], row["stream"], row["connector"]) == ("ehr", "synthea-conditions", "csv")
    assert (row["records"], row["records_in_range"]) == (total, inside)
    again = cli("import", "ehr", "--from", "2012-01-01", "--to", "2018-06-30", "--no-build", "--quiet")
    assert "nothing new to import" in again.output


def test_cli_reports_bad_input_without_traceback(workspace, csv_plugin, tmp_path):
    write(tmp_path, "bad.csv", "date,v\n2024-01-01,1\nnot-a-date,2\n")
    from tests.conftest import run_lithotse

    env = {"LITHOTSE_WORKSPACE": str(workspace.root)}
    added = run_lithotse("source", "add", "bad", "--connector", "csv", "--set", f"path={tmp_path}", env=env)
    assert added.returncode == 0, added.stderr
    result = run_lithotse("import", "bad", "--no-build", "--quiet", env=env)
    assert result.returncode != 0
    assert "bad.csv, line 3: date column 'date': 'not-a-date' is not an ISO date" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_native_read_describes_the_recorded_layout_and_only_for_utf8(tmp_path):
    """What an engine reading the object itself is told: the header skipped, each column's kind,
    the total row under the data left out by count; a cp1252 landing is read by the connector."""
    path = tmp_path / "visits.csv"
    path.write_bytes("id;name;when;los\n1;Zoë;2024-01-02;1.5\n2;Al;2024-01-03;2\nTotal;;;3.5\n".encode())
    conn = CsvConnector({"path": str(path)})
    [payload] = conn.fetch(FetchRequest("t", ["visits"], DateRange(), {}))
    obj = RawObject(None, payload.stream, payload.name, payload.media_type, payload.meta, validated=True)
    read = conn.native_read(obj)
    assert (read.format, read.delimiter, read.skip, read.limit, read.width) == ("csv", ";", 1, 2, 4)
    assert [(c.name, c.field, c.parse) for c in read.columns] == [
        ("id", 0, "int64"), ("name", 1, "text"), ("when", 2, "date32"), ("los", 3, "float64")]
    assert read.schema() == pa.Table.from_batches(list(conn.read(
        RawObject(path, payload.stream, payload.name, payload.media_type, payload.meta, validated=True)))).schema
    cp1252 = {**payload.meta, "encoding": "cp1252"}
    assert conn.native_read(RawObject(None, obj.stream, obj.name, obj.media_type, cp1252, validated=True)) is None
    assert conn.native_read(RawObject(None, obj.stream, obj.name, obj.media_type, {}, validated=True)) is None


@pytest.mark.parametrize("header", ["patient_class", "Patient Count", "visit_id", "encounter_no", "department",
                                    # pass 39: numbers of something else than the person
                                    "Patient Visit Number", "patient_no_show", "chi_square", "member_no_show_count",
                                    "subscriber_group_number", "Patient Account Number"])
def test_columns_that_only_mention_a_patient_are_no_person_key(tmp_path, header):
    write(tmp_path, "v.csv", f"encounter_id,{header},admit_date\nE1,x,2024-01-01\n")
    assert [i.person_key for i in CsvConnector({"path": str(tmp_path)}).streams()] == [None]


def test_a_visit_number_before_the_patient_id_is_not_the_person(tmp_path):
    """Pass 39: ``Patient Visit Number`` (first) was taken as the person key before ``Local Patient
    ID``: one patient's 12 visits in a department published as 12 people."""
    write(tmp_path, "v.csv", "visit_date,Patient Visit Number,Local Patient ID,dept\n2024-01-01,V1,LP-77,RARE\n")
    assert [i.person_key for i in CsvConnector({"path": str(tmp_path)}).streams()] == [("Local Patient ID",)]
