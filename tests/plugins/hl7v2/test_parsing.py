"""Unit tests of framing, date/time parsing, value extraction, rejection reasons and routing."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pyarrow as pa
import pytest

from lithotse_desktop.connectors import FetchRequest, RawObject, fold_cursor
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_hl7v2 import Hl7v2Connector
from lithotse_hl7v2 import connector as connector_module
from lithotse_hl7v2.framing import physical_lines
from lithotse_hl7v2.records import SCHEMAS
from lithotse_hl7v2.timestamps import parse_dtm

from .builders import STREAMS, adt, msh, oru, read_rows, read_table

UTC = dt.UTC


@pytest.mark.parametrize("text, wall, utc", [
    ("2012", dt.datetime(2012, 1, 1), None),
    ("201209", dt.datetime(2012, 9, 1), None),
    ("20120912", dt.datetime(2012, 9, 12), None),
    ("2012091222", dt.datetime(2012, 9, 12, 22), None),
    ("201209122222", dt.datetime(2012, 9, 12, 22, 22), None),
    ("20120912222233", dt.datetime(2012, 9, 12, 22, 22, 33), None),
    ("20120912222233.5", dt.datetime(2012, 9, 12, 22, 22, 33, 500000), None),
    ("20120912222233.1234", dt.datetime(2012, 9, 12, 22, 22, 33, 123400), None),
    ("20240229233000-0500", dt.datetime(2024, 2, 29, 23, 30), dt.datetime(2024, 3, 1, 4, 30, tzinfo=UTC)),
    ("202403010030+0130", dt.datetime(2024, 3, 1, 0, 30), dt.datetime(2024, 2, 29, 23, 0, tzinfo=UTC)),
    ("2024+0000", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=UTC)),
])
def test_hl7_timestamps(text, wall, utc):
    assert parse_dtm(text) == (wall, utc)


@pytest.mark.parametrize("text, why", [
    ("2024-01-01", "expected YYYY"), ("20241301", "month"), ("20240230", "day"),
    ("2024010125", "hour"), ("202401011260", "minute"), ("20240101120060", "second"),
    ("0000", "year"), ("20240101+1500", "offset"), ("20240101+0160", "offset"),
    ("2024010", "expected"), ("20240101120000.12345", "expected"), ("00010101+0100", "outside"),
    ("", "expected"), ("２０２４", "expected"),
])
def test_bad_hl7_timestamps(text, why):
    with pytest.raises(ValueError, match=why):
        parse_dtm(text)


def test_physical_lines_any_end_any_chunk_size():
    data = b"\xef\xbb\xbfA\r\nB\rC\nD\r\n\r\nE"
    for size in range(1, 9):
        lines = list(physical_lines(io.BytesIO(data), size))
        assert lines == [(1, b"A"), (2, b"B"), (3, b"C"), (4, b"D"), (5, b""), (6, b"E")], size


def _write(tmp_path: Path, data: bytes | str, name: str = "in.hl7") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_line_ends_mllp_and_batches_do_not_change_rows(tmp_path):
    messages = [adt("A1", admit="20240105"), oru("O1", [("5.4", "20240106")])]
    cr = "\r".join(messages) + "\r"
    variants = {
        "cr": cr,
        "lf": cr.replace("\r", "\n"),
        "crlf": cr.replace("\r", "\r\n"),
        "mllp": "".join(f"\x0b{m}\r\x1c\r" for m in messages),
        "batch": "FHS|^~\\&\rBHS|^~\\&\r" + cr + "BTS|2\rFTS|1\r",
        "blank-lines": "\n\n" + "\n\n".join(m.replace("\r", "\n") for m in messages) + "\n\n",
    }
    baseline = {s: read_rows(_write(tmp_path, cr), s) for s in STREAMS}
    assert [len(baseline[s]) for s in STREAMS] == [2, 1, 1]
    for label, text in variants.items():
        path = _write(tmp_path, text, f"{label}.hl7")
        assert {s: read_rows(path, s) for s in STREAMS} == baseline, label


def test_line_break_inside_a_value_continues_the_segment(tmp_path):
    text = oru("O1", [("x", "")]).replace("OBX|1|NM", "OBX|1|TX").replace("|x|", "|first line\nsecond line|")
    [row] = read_rows(_write(tmp_path, text), "oru")
    assert row["value"] == "first line\nsecond line"
    assert row["units"] == "mmol/L"


def test_values_escapes_numbers_and_offsets(tmp_path):
    text = "\r".join([
        msh("M1", "ORU^R01", "20240301083000+0100"),
        "PID|1||123^^^H",
        "OBR|1|||GLU^Glucose|||20240301070000",
        "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|3.9-6.1|N~A|||F|||20240301071500-0500",
        "OBX|2|SN|X^Y||>=^10|^mg/dL^UCUM||||||F",
        "OBX|3|SN|X^Y||^1^:^2|||||||F",
        "OBX|4|TX|T^Text||one\\.br\\two \\F\\ three~second||||||F",
        "OBX|5|NM|N||1e5|||||||F",
        "OBX|6|NM|N||" + "9" * 400 + "|||||||F",
        "OBX|7|CE|C||POS^Positive^L||||||F",
        'OBX|8|NM|N||""|||||||F',
    ])
    rows = read_rows(_write(tmp_path, text), "oru")
    by_seq = {r["obx_seq"]: r for r in rows}
    assert by_seq[1]["value_numeric"] == 5.4
    assert by_seq[1]["abnormal_flags"] == "N~A"
    assert by_seq[1]["result_datetime"] == dt.datetime(2024, 3, 1, 7, 15)
    assert by_seq[1]["result_datetime_utc"] == dt.datetime(2024, 3, 1, 12, 15, tzinfo=UTC)
    assert by_seq[2]["value_numeric"] == 10.0 and by_seq[2]["value_comparator"] == ">="
    assert by_seq[2]["units"] == "mg/dL"  # CE units with an empty code: the text
    assert by_seq[3]["value_numeric"] is None  # a ratio is not one number
    assert by_seq[4]["value"] == "one\ntwo | three\nsecond"
    assert by_seq[5]["value_numeric"] is None and by_seq[5]["value"] == "1e5"
    assert by_seq[6]["value_numeric"] is None
    assert by_seq[7]["value"] == "POS^Positive^L" and by_seq[7]["value_numeric"] is None
    assert by_seq[8]["value"] is None
    assert {r["effective_datetime"] for r in rows[1:]} == {dt.datetime(2024, 3, 1, 7, 0)}
    [message] = read_rows(_write(tmp_path, text), "messages")
    assert message["message_datetime_utc"] == dt.datetime(2024, 3, 1, 7, 30, tzinfo=UTC)
    table = read_table(_write(tmp_path, text), "oru")
    assert table.schema.field("value_numeric").type == pa.float64()
    assert table.schema.field("effective_datetime").type == pa.timestamp("us")
    assert table.schema.field("effective_datetime_utc").type == pa.timestamp("us", tz="UTC")


def test_adt_dates_fall_back_from_admit_to_event_to_message(tmp_path):
    text = "\r".join([adt("A1", admit="202402011030", event="20240115"),
                      adt("A2", event="20240116"),
                      adt("A3", event="").replace("EVN|A01|\r", "")])
    rows = read_rows(_write(tmp_path, text), "adt")
    assert [r["effective_datetime"] for r in rows] == [
        dt.datetime(2024, 2, 1, 10, 30), dt.datetime(2024, 1, 16), dt.datetime(2024, 1, 1, 12)]
    assert [r["event_type"] for r in rows] == ["A01", "A01", "A01"]


def test_person_key_is_the_first_pid3_identifier_in_every_stream(tmp_path):
    """Suppression counts patients by PID-3's first identifier, whatever the message type."""
    connector = Hl7v2Connector({"path": str(tmp_path)})
    assert {s.name: s.person_key for s in connector.streams()} == {
        "messages": ("patient_id",), "adt": ("patient_id",), "oru": ("patient_id",)}
    text = "\r".join([adt("A1", patient="MRN7^^^HOSP^MR~SSN9^^^USA^SS"),
                      oru("O1", [("5.1", "20240101")], patient="MRN8^^^HOSP^MR")])
    path = _write(tmp_path, text)
    assert [r["patient_id"] for r in read_rows(path, "adt")] == ["MRN7"]
    assert [r["patient_id"] for r in read_rows(path, "oru")] == ["MRN8"]
    assert [r["patient_id"] for r in read_rows(path, "messages")] == ["MRN7", "MRN8"]


@pytest.mark.parametrize(("pid3", "expected"), [
    ("AC00001^^^FAC^AN~MRN777", "MRN777"),  # the builder types the last repetition MR
    ("V12^^^FAC^VN~E5^^^FAC^PI~MRN777", "MRN777"),
    ("AC00001^^^FAC^AN~E5^^^FAC^PI~X^^^FAC^DL", "E5"),
    ("AC00001^^^FAC^AN~X9^^^FAC^DL", "X9"),
])
def test_person_key_is_the_pid3_repetition_naming_a_person(tmp_path, pid3, expected):
    """Pass 35: the account number sent first in PID-3 (type AN, one per admission) was taken as
    the person, so twelve admissions of one patient published as 12 patients. The key is the
    repetition typed as a medical record number, else another person identifier, else the first
    that is not a visit's or an account's."""
    path = _write(tmp_path, "\r".join(adt(f"A{i}", patient=pid3.replace("AC00001", f"AC{i:05d}")) for i in range(3)))
    assert {r["patient_id"] for r in read_rows(path, "adt")} == {expected}
    assert {r["patient_id"] for r in read_rows(path, "messages")} == {expected}


@pytest.mark.parametrize(("pid3", "expected"), [
    ("V{i}^^^FAC^VISIT~MRN2^^^FAC^", "MRN2"),
    ("FIN{i}^^^^FIN~E0002^^^^EPI", "E0002"),
    ("ACC{i}^^^^ACCT~MRN6^^^^PRN", "MRN6"),
    ("CSN{i}^^^^CSN~HAR{i}^^^^HAR~Z7^^^^XX", "Z7"),
    # pass 37: local spellings of both
    ("P{i}^^^^PAN~C12^^^^CMRN", "C12"),
    ("E{i}^^^^ENCOUNTER~C13^^^^CMRN", "C13"),
    ("V{i}^^^^VISITID~M14^^^^MPI", "M14"),
    ("F{i}^^^^FINNBR~P15^^^^PATID", "P15"),
    ("A{i}^^^^ACCTNO~U16^^^^UMRN", "U16"),
    ("E{i}^^^^ENCNTR~F17^^^^FACMRN", "F17"),
])
def test_local_visit_and_person_types_in_pid3(tmp_path, pid3, expected):
    """Pass 36: visit and account numbers under local type codes (``VISIT``, Cerner's ``FIN``,
    ``ACCT``) were taken as the person before an untyped MRN or an Epic ``EPI``."""
    segments = []
    for i in range(3):
        segments += [msh(f"M{i}", "ORU^R01"), f"PID|1||{pid3.format(i=i)}", "OBR|1|||GLU^Glucose|||20240101080000",
                     "OBX|1|NM|2345-7^Glucose^LN||5.1|mmol/L|||||F|||20240101"]
    path = _write(tmp_path, "\r".join(segments))
    assert {r["patient_id"] for r in read_rows(path, "oru")} == {expected}


def test_a_pid3_of_visit_numbers_only_names_no_person(tmp_path):
    path = _write(tmp_path, "\r".join([msh("M1", "ORU^R01"), "PID|1||AC1^^^FAC^AN~V2^^^FAC^VN",
                                        "OBR|1|||GLU^Glucose|||20240101080000",
                                        "OBX|1|NM|2345-7^Glucose^LN||5.1|mmol/L|||||F|||20240101"]))
    assert [r["patient_id"] for r in read_rows(path, "oru")] == [None]


def test_character_set_from_msh18(tmp_path):
    latin = (msh("L1", "ADT^A01") + "||||||8859/1\rPID|1||P1||M\xfcller").encode("latin-1")
    [row] = read_rows(_write(tmp_path, latin), "messages")
    assert row["patient_id"] == "P1"
    with pytest.raises(InputError, match=r"line 2: not valid UTF-8 text \(byte 0xfc\); declare"):
        read_rows(_write(tmp_path, latin.replace(b"8859/1", b"")), "messages")
    with pytest.raises(InputError, match="MSH-18 character set 'KLINGON' is not supported"):
        read_rows(_write(tmp_path, latin.replace(b"8859/1", b"KLINGON")), "messages")
    with pytest.raises(InputError, match="not ASCII-compatible"):
        read_rows(_write(tmp_path, latin.replace(b"8859/1", b"UTF-16")), "messages")


GOOD = adt("G1")


@pytest.mark.parametrize("data, message", [
    ("hello\rworld", "in.hl7, message 1: line 1: text that is not an HL7 segment: 'hello'"),
    ("PID|1||X\r" + GOOD, "in.hl7, message 1: segment 'PID' before MSH on line 1;"),
    ("BHS|^~\\&\rEVN|A01\r" + GOOD, "message 1: segment 'EVN' before MSH on line 2 (the message "
                                     "before was cut by BHS on line 1)"),
    ("MSH", "message 1: MSH is truncated: no field separator (MSH-1)"),
    ("MSH|^~\\&", "message 1: MSH is truncated: no fields after the encoding characters"),
    ("MSH ^~\\& ", "message 1: MSH-1 field separator ' ' is not a punctuation character"),
    ("MSHA|^~\\&|", "message 1: line 1: text that is not an HL7 segment: 'MSHA|^~\\\\&|'"),
    ("MSH!^~\\&!a", "message 1: MSH-9 message type is empty"),
    (GOOD.replace("MSH|^~\\&|", "MSH|^~|"), "MSH-2 encoding characters '^~' must be 4 or 5"),
    (GOOD.replace("MSH|^~\\&|", "MSH|^^\\&|"), "MSH-2 encoding characters '^^\\\\&' use one character"),
    (GOOD.replace("MSH|^~\\&|", "MSH|^~a&|"), "MSH-2 encoding characters '^~a&' must all be punctuation"),
    (GOOD.replace("ADT^A01^ADT_A01", ""), "message 1 (MSH-10 'G1'): MSH-9 message type is empty"),
    (GOOD.replace("ADT^A01^ADT_A01", "adt^A01"), "MSH-9 message type 'adt' is not a three-character code"),
    (GOOD.replace("|G1|", "||"), "message 1: MSH-10 message control id is empty"),
    (GOOD.replace("20240101120000", ""), "MSH-7 date/time of message is empty"),
    (GOOD.replace("20240101120000", "2024-01-01"), "MSH-7 date/time of message '2024-01-01' is not "
                                                   "an HL7 date/time"),
    (GOOD.replace("EVN|A01|20240101100000", "EVN|A01|20241301"), "line 2: EVN-2 recorded date/time "
                                                                  "'20241301'"),
    (GOOD.replace("19700101", "19700231"), "line 3: PID-7 date/time of birth '19700231'"),
    (adt("G1", admit="2024013"), "line 4: PV1-44 admit date/time '2024013'"),
    (oru("O1", [("1", "")], obr_when="2024-01-01"), "line 3: OBR-7 observation date/time"),
    (oru("O1", [("1", "20240101"), ("2", "yesterday")]), "line 5: OBX-14 date/time of the observation"),
    (GOOD.replace("DOE", "D\x00E"), "line 3: control character 0x00 in segment 'PID'"),
    (GOOD.replace("19700101|F", "19700101|\\.spx\\"), "line 3: PID-8 has a malformed escape sequence"),
    (b"\xff\xfe" + GOOD.encode(), "message 1: line 1: text that is not an HL7 segment"),
])
def test_malformed_messages_are_rejected_with_their_reason(tmp_path, data, message):
    path = _write(tmp_path, data)
    for stream in STREAMS:
        with pytest.raises(InputError) as info:
            read_rows(path, stream)
        assert message in str(info.value)
        assert str(info.value).startswith("in.hl7, message ")


def test_rejection_counts_every_bad_message_and_names_the_first(tmp_path):
    messages = [adt("A1"), adt("A2", admit="bad"), adt("A3"), adt("A4", admit="20241399"), adt("A5")]
    with pytest.raises(InputError) as info:
        read_rows(_write(tmp_path, "\r".join(messages)), "adt")
    assert info.value.location == "in.hl7, message 2 (MSH-10 'A2')"
    assert info.value.reason.startswith("line 8: PV1-44 admit date/time 'bad'")
    assert info.value.reason.endswith("; 2 of 5 messages in the file rejected")


def test_empty_and_envelope_only_files_have_no_rows(tmp_path):
    for data in ("", "\r\n", "FHS|^~\\&\rFTS|0\r", "\x0b\x1c\r"):
        path = _write(tmp_path, data)
        for stream in STREAMS:
            table = read_table(path, stream)
            assert table.num_rows == 0 and table.schema == SCHEMAS[stream]


def test_large_files_come_in_several_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(connector_module, "BATCH_ROWS", 7)
    path = _write(tmp_path, "\n".join(oru(f"O{i}", [("1", "20240101")] * 3) for i in range(10)))
    connector = Hl7v2Connector({"path": str(tmp_path)})
    batches = list(connector.read(RawObject(path, "oru", "in.hl7", "x")))
    assert [b.num_rows for b in batches] == [9, 9, 9, 3]
    assert sum(b.num_rows for b in connector.read(RawObject(path, "messages", "in.hl7", "x"))) == 10


def _fetch(connector, streams=STREAMS, state=None, full=False):
    request = FetchRequest("src", list(streams), DateRange(), state or {}, full)
    return list(connector.fetch(request))


def test_fetch_routes_files_to_the_streams_they_feed(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    _write(tmp_path, adt("A1"), "visits.hl7")
    _write(tmp_path, adt("A2"), "OLD.HL7")
    _write(tmp_path, b"\x00\x05\x16\x07Mac OS X", "._visits.hl7")
    _write(tmp_path, b"junk", ".cache/visits.hl7")
    _write(tmp_path, oru("O1", [("1", "")]), "sub/labs.txt")
    _write(tmp_path, msh("S1", "SIU^S12"), "sched.msg")
    _write(tmp_path, "PID|1||X", "broken.hl7")
    _write(tmp_path, msh("Q1", "adt^A01"), "lower.hl7")
    _write(tmp_path, adt("A9"), "notes.doc")
    payloads = _fetch(Hl7v2Connector({"path": str(tmp_path), "pattern": ""}))
    routed = sorted((p.name, p.stream) for p in payloads)
    assert routed == [("OLD.HL7", "adt"), ("OLD.HL7", "messages"),
                      ("broken.hl7", "adt"), ("broken.hl7", "messages"), ("broken.hl7", "oru"),
                      ("lower.hl7", "adt"), ("lower.hl7", "messages"), ("lower.hl7", "oru"),
                      ("sched.msg", "messages"), ("sub/labs.txt", "messages"), ("sub/labs.txt", "oru"),
                      ("visits.hl7", "adt"), ("visits.hl7", "messages")]
    labs = next(p for p in payloads if p.name == "sub/labs.txt" and p.stream == "oru")
    assert labs.meta == {"hl7_stream": "oru", "file": "sub/labs.txt", "message_types": {"ORU": 1}}
    assert labs.path == tmp_path / "sub" / "labs.txt"
    only = _fetch(Hl7v2Connector({"path": str(tmp_path), "pattern": "*.doc, sched.*"}), ["adt"])
    assert [(p.name, p.stream) for p in only] == [("notes.doc", "adt")]


def test_fetch_skips_files_already_landed_for_the_range(tmp_path):
    _write(tmp_path, adt("A1"), "visits.hl7")
    connector = Hl7v2Connector({"path": str(tmp_path / "visits.hl7")})
    first = _fetch(connector)
    assert [p.name for p in first] == ["visits.hl7", "visits.hl7"]
    assert all(set(p.cursor["files"][str(p.path)]) == {"size", "mtime_ns"} for p in first)
    # what the core hands the next fetch: each file's cursor with the range its landing had
    state = {p.stream: fold_cursor(None, p.cursor, DateRange()) for p in first}
    assert _fetch(connector, state=state) == []
    assert len(_fetch(connector, state=state, full=True)) == 2
    january = {p.stream: fold_cursor(None, p.cursor, DateRange.parse("2024-01-01", "2024-01-31")) for p in first}
    assert [p.stream for p in _fetch(connector, state=january)] == ["messages", "adt"]
