"""End-to-end: the plugin loaded from its entry point, imports with a date range, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.raw.index import open_index
from lithotse_hl7v2 import Hl7v2Connector
from tests.conftest import TEST_DATA, run_lithotse

from .builders import adt, oru, read_rows

SAMPLES = TEST_DATA / "hl7v2"
START, END = dt.date(2024, 3, 1), dt.date(2024, 6, 30)

# (control id, PV1-44 admit, EVN-2 event); the record's day is admit, else event, as written.
VISITS = [("V1", "20240110", "20240109"), ("V2", "20240229233000-0500", "20240229"),
          ("V3", "20240301", "20240228"), ("V4", "", "20240315083000"),
          ("V5", "20240630235959", "20240630"), ("V6", "20240701", "20240630"),
          ("V7", "2024", "20240401"), ("V8", "202405", "20240501"), ("V9", "", "20241231")]
# (control id, OBR-7, [(value, OBX-14)]); the result's day is OBX-14, else OBR-7.
LABS = [("L1", "20240228", [("5.1", "20240229"), ("5.2", "")]),
        ("L2", "20240402", [("6.0", ""), ("6.1", "20240701"), ("6.2", "20240630")]),
        ("L3", "20240815", [("7.0", "20240301120000+0200")])]
MIXED_VISIT = ("X1", "20240405", "20240405")
MIXED_LAB = ("X2", "20231231", [("1", "")])


def day(text: str) -> dt.date:
    """Calendar day of an HL7 date/time as written: the first 8 digits, missing parts = 01."""
    digits = (text[:8] + "0101")[:8] if len(text) < 8 else text[:8]
    return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))


def visit_days(visits) -> dict[str, dt.date]:
    return {cid: day(admit or event) for cid, admit, event in visits}


def lab_days(labs) -> dict[tuple[str, int], dt.date]:
    return {(cid, n): day(when or obr) for cid, obr, results in labs
            for n, (_, when) in enumerate(results, 1)}


def in_range(days: dict) -> set:
    return {k for k, d in days.items() if START <= d <= END}


def write_inputs(folder: Path) -> None:
    visits = [adt(cid, admit=admit, event=event) for cid, admit, event in VISITS]
    (folder / "visits.hl7").write_bytes("\r\n".join(v.replace("\r", "\r\n") for v in visits).encode())
    (folder / "labs").mkdir()
    labs = [oru(cid, results, obr_when=obr) for cid, obr, results in LABS]
    (folder / "labs" / "results.txt").write_bytes(b"".join(f"\x0b{m}\r\x1c\r".encode() for m in labs))
    mixed = [adt(MIXED_VISIT[0], admit=MIXED_VISIT[1], event=MIXED_VISIT[2]),
             oru(MIXED_LAB[0], MIXED_LAB[2], obr_when=MIXED_LAB[1])]
    (folder / "batch.msg").write_text("BHS|^~\\&|LAB\n" + "\n".join(m.replace("\r", "\n") for m in mixed)
                                      + "\nBTS|2\n")
    shutil.copy(SAMPLES / "python-hl7-sample_hl7.hl7", folder / "sample_hl7.hl7")


@pytest.fixture
def hl7_plugin():
    """The connector as users get it: from the installed distribution's entry point."""
    reset_plugin_manager()
    manager = get_plugin_manager()
    assert manager.connector("hl7v2") is Hl7v2Connector
    assert manager.plugins["hl7v2"].distribution == "lithotse-hl7v2"
    assert manager.plugins["hl7v2"].error is None
    yield
    reset_plugin_manager()


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "hl7"
    folder.mkdir()
    write_inputs(folder)
    return folder


def test_import_counts_records_in_and_out_of_range(workspace, hl7_plugin, inputs):
    workspace.add_source("ward", "hl7v2", {"path": str(inputs)}, {})
    result = run_import(workspace, "ward", DateRange(START, END))
    landed = {(item.manifest.original_name, item.manifest.stream): item.manifest
              for item in result.landings}
    assert set(landed) == {("visits.hl7", "messages"), ("visits.hl7", "adt"),
                           ("labs/results.txt", "messages"), ("labs/results.txt", "oru"),
                           ("batch.msg", "messages"), ("batch.msg", "adt"), ("batch.msg", "oru"),
                           ("sample_hl7.hl7", "messages"), ("sample_hl7.hl7", "oru")}
    visits, labs = visit_days(VISITS), lab_days(LABS)
    expect = {
        ("visits.hl7", "adt"): (len(visits), len(in_range(visits))),
        ("labs/results.txt", "oru"): (len(labs), len(in_range(labs))),
        ("batch.msg", "adt"): (1, 1),
        ("batch.msg", "oru"): (1, 0),
        ("sample_hl7.hl7", "oru"): (2, 0),
        ("visits.hl7", "messages"): (len(VISITS), 0),
        ("labs/results.txt", "messages"): (len(LABS), 0),
        ("batch.msg", "messages"): (2, 0),
        ("sample_hl7.hl7", "messages"): (1, 0),
    }
    got = {key: (m.records, m.records_in_range) for key, m in landed.items()}
    assert got == expect
    assert got[("visits.hl7", "adt")] == (9, 4)
    raw = workspace.store("raw")
    for (name, _), manifest in landed.items():
        assert raw.get_bytes(manifest.object_key) == (inputs / name).read_bytes()
        assert manifest.meta["hl7_stream"] == manifest.stream
    adt_rows = [r for b in read_stream(workspace, "ward", "adt") for r in b.to_pylist()]
    assert {r["message_control_id"] for r in adt_rows} == in_range(visits) | {"X1"}
    # V2's admit 2024-02-29 23:30-05:00 is 1 March in UTC, but the day as written is outside
    assert "V2" not in {r["message_control_id"] for r in adt_rows}
    v2 = next(r for r in read_rows(inputs / "visits.hl7", "adt") if r["message_control_id"] == "V2")
    assert v2["admit_datetime_utc"] == dt.datetime(2024, 3, 1, 4, 30, tzinfo=dt.UTC)
    oru_rows = [r for b in read_stream(workspace, "ward", "oru") for r in b.to_pylist()]
    assert {(r["message_control_id"], r["obx_seq"]) for r in oru_rows} == in_range(labs)
    assert all(isinstance(r["value_numeric"], float) for r in oru_rows)


def test_incremental_rerun_lands_nothing_and_new_files_land_alone(workspace, hl7_plugin, inputs):
    workspace.add_source("ward", "hl7v2", {"path": str(inputs)}, {})
    rng = DateRange(START, END)
    first = run_import(workspace, "ward", rng)
    assert len(first.landings) == 9
    assert run_import(workspace, "ward", rng).landings == []
    (inputs / "late.hl7").write_text(adt("N1", admit="20240501"))
    late = run_import(workspace, "ward", rng)
    assert sorted((i.manifest.original_name, i.manifest.stream) for i in late.landings) == [
        ("late.hl7", "adt"), ("late.hl7", "messages")]
    again = run_import(workspace, "ward", rng, full=True)
    assert len(again.landings) == 11
    assert all(item.manifest.already_stored for item in again.landings)
    objects = list(workspace.store("raw").list("raw/"))
    # one object per file, however many streams it feeds
    assert len(objects) == len({item.manifest.sha256 for item in again.landings}) < 11


def test_bad_file_fails_the_import_and_lands_nothing(workspace, hl7_plugin, inputs):
    shutil.copy(SAMPLES / "python-hl7-sample_bad_file1.hl7", inputs / "zz_bad.hl7")
    workspace.add_source("ward", "hl7v2", {"path": str(inputs)}, {})
    with pytest.raises(InputError) as info:
        run_import(workspace, "ward", DateRange(START, END))
    assert str(info.value).startswith("zz_bad.hl7, message 2: segment 'PID' before MSH on line 6")
    assert str(info.value).endswith("1 of 2 messages in the file rejected")
    assert list(workspace.store("raw").list("")) == []
    index = open_index(workspace)
    assert index.landings() == []
    index.close()


def test_cli_source_import_and_raw_ls(workspace, hl7_plugin, inputs, cli):
    cli("source", "add", "ward", "--connector", "hl7v2", "--set", f"path={inputs}")
    streams = {s["name"]: s for s in json.loads(cli("source", "streams", "ward", "--json").output)}
    assert streams["adt"]["date_field"] == "effective_datetime"
    assert streams["oru"]["key"] == ["message_control_id", "obx_seq"]
    out = cli("import", "ward", "--from", START.isoformat(), "--to", END.isoformat(), "--no-build",
              "--quiet")
    assert "ward/adt visits.hl7: 9 records (4 in range, 5 outside)" in out.output
    rows = json.loads(cli("raw", "ls", "--json", "--stream", "oru").output)
    assert sorted(r["original_name"] for r in rows) == ["batch.msg", "labs/results.txt", "sample_hl7.hl7"]
    assert {r["connector"] for r in rows} == {"hl7v2"}
    again = cli("import", "ward", "--from", START.isoformat(), "--to", END.isoformat(), "--no-build",
                "--quiet")
    assert "nothing new to import" in again.output


def test_cli_subprocess_reports_the_rejected_message(workspace, tmp_path):
    shutil.copy(SAMPLES / "python-hl7-sample_bad_batch1.hl7", tmp_path / "bad.hl7")
    env = {"LITHOTSE_WORKSPACE": str(workspace.root)}
    added = run_lithotse("source", "add", "bad", "--connector", "hl7v2", "--set",
                         f"path={tmp_path}", env=env)
    assert added.returncode == 0, added.stderr
    result = run_lithotse("import", "bad", "--no-build", "--quiet", env=env)
    assert result.returncode == 1
    assert ("error: bad.hl7, message 2: segment 'PID' before MSH on line 5 (the message before was "
            "cut by BHS on line 4); 1 of 2 messages in the file rejected") in result.stderr
    assert "Traceback" not in result.stderr
    assert list(workspace.store("raw").list("")) == []
