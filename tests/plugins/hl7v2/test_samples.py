"""Every sample file in tests/data/hl7v2: counts per stream and fields checked against the text."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from lithotse_desktop.errors import InputError
from lithotse_hl7v2.records import SCHEMAS
from tests.conftest import TEST_DATA

from .builders import STREAMS, read_rows, read_table

SAMPLES = TEST_DATA / "hl7v2"

# file -> (messages, adt rows, oru rows), counted by hand from the files.
EXPECTED = {
    "linuxforhealth-ORU-multiline-short-mixed.hl7": (1, 0, 4),
    "linuxforhealth-ORU-multiline-short.hl7": (1, 0, 3),
    "linuxforhealth-sample_unix.hl7": (1, 1, 0),
    "linuxforhealth-sample_win.hl7": (1, 1, 0),
    "python-hl7-rep_sample_hl7.hl7": (1, 0, 0),
    "python-hl7-sample_batch.hl7": (1, 1, 0),
    "python-hl7-sample_batch1.hl7": (2, 2, 0),
    "python-hl7-sample_batch2.hl7": (2, 2, 0),
    "python-hl7-sample_batch3.hl7": (1, 1, 0),
    "python-hl7-sample_batch4.hl7": (1, 1, 0),
    "python-hl7-sample_file.hl7": (1, 1, 0),
    "python-hl7-sample_file1.hl7": (3, 3, 0),
    "python-hl7-sample_file2.hl7": (2, 2, 0),
    "python-hl7-sample_file3.hl7": (1, 1, 0),
    "python-hl7-sample_file4.hl7": (1, 1, 0),
    "python-hl7-sample_file5.hl7": (1, 1, 0),
    "python-hl7-sample_file6.hl7": (1, 1, 0),
    "python-hl7-sample_hl7.hl7": (1, 0, 2),
    "python-hl7-sample_msh.hl7": (1, 1, 0),
}

BAD = {
    "python-hl7-sample_bad_batch1.hl7":
        "python-hl7-sample_bad_batch1.hl7, message 2: segment 'PID' before MSH on line 5 "
        "(the message before was cut by BHS on line 4); 1 of 2 messages in the file rejected",
    "python-hl7-sample_bad_file1.hl7":
        "python-hl7-sample_bad_file1.hl7, message 2: segment 'PID' before MSH on line 6 "
        "(the message before was cut by BHS on line 5); 1 of 2 messages in the file rejected",
    "python-hl7-sample_bad_file2.hl7":
        "python-hl7-sample_bad_file2.hl7, message 2: segment 'PID' before MSH on line 6 "
        "(the message before was cut by FHS on line 5); 1 of 2 messages in the file rejected",
}


def test_every_sample_file_is_covered():
    assert {p.name for p in SAMPLES.iterdir()} == set(EXPECTED) | set(BAD)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_counts_and_schema(name):
    path = SAMPLES / name
    tables = {stream: read_table(path, stream) for stream in STREAMS}
    for stream, table in tables.items():
        assert table.schema == SCHEMAS[stream]
    assert tuple(tables[s].num_rows for s in STREAMS) == EXPECTED[name]
    headers = re.findall(rb"(?:^|[\r\n])MSH\|", path.read_bytes())
    assert tables["messages"].num_rows == len(headers)
    assert tables["messages"].column("message_index").to_pylist() == list(range(1, len(headers) + 1))
    assert tables["adt"].column("effective_datetime").null_count == 0
    assert tables["oru"].column("effective_datetime").null_count == 0


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("stream", STREAMS)
def test_bad_samples_are_rejected_with_the_reason(name, stream):
    with pytest.raises(InputError) as info:
        read_rows(SAMPLES / name, stream)
    assert str(info.value) == BAD[name]
    assert info.value.location == BAD[name].split(": ")[0]


def test_lf_and_crlf_variants_give_identical_rows():
    unix = read_rows(SAMPLES / "linuxforhealth-sample_unix.hl7", "adt")
    win = read_rows(SAMPLES / "linuxforhealth-sample_win.hl7", "adt")
    assert unix == win
    [row] = unix
    # EVN||201209122222 ; PID-3 PID1234^5^M11^A^MR^HOSP~... ; PID-7 19800202 ; PID-8 F
    # PV1|1|ff|yyy|EL|ABC||200^ATTEND_DOC_FAMILY_TEST^ATTEND_DOC_GIVEN_TEST|...|48390|...|201409122200|
    assert row["message_control_id"] == "102"
    assert row["message_type"] == "ADT^A01"
    assert row["event_type"] == "A01"
    assert row["event_datetime"] == dt.datetime(2012, 9, 12, 22, 22)
    assert row["patient_id"] == "PID1234"
    assert row["birth_date"] == dt.date(1980, 2, 2)
    assert row["sex"] == "F"
    assert row["patient_class"] == "ff"
    assert row["assigned_location"] == "yyy"
    assert row["attending_doctor"] == "200^ATTEND_DOC_FAMILY_TEST^ATTEND_DOC_GIVEN_TEST"
    assert row["visit_number"] == "48390"
    assert row["admit_datetime"] == dt.datetime(2014, 9, 12, 22, 0)
    assert row["discharge_datetime"] is None
    assert row["effective_datetime"] == row["admit_datetime"]
    assert row["effective_datetime_utc"] is None


def test_cerner_style_adt_fields():
    [row] = read_rows(SAMPLES / "python-hl7-sample_msh.hl7", "adt")
    # PV1|0001|I|MBN1^MBN1^06|4| 863968||03525^FARP^YONAN|...|I|01|T22~SLF|...|20140210225300|""
    assert row["patient_id"] == "2148790"
    assert row["birth_date"] == dt.date(1952, 11, 29)
    assert row["patient_class"] == "I"
    assert row["assigned_location"] == "MBN1^MBN1^06"
    assert row["attending_doctor"] == "03525^FARP^YONAN"
    assert row["visit_number"] == "01"
    assert row["admit_datetime"] == dt.datetime(2014, 2, 10, 22, 53)
    assert row["discharge_datetime"] is None  # PV1-45 is the HL7 null ""
    assert row["event_datetime"] == dt.datetime(2013, 10, 17, 14, 0, 41)  # no EVN: MSH-7
    [msg] = read_rows(SAMPLES / "python-hl7-sample_msh.hl7", "messages")
    assert msg["segment_ids"] == "MSH PID PV1 DG1 IN1 IN2 IN1 IN2 IN1"
    assert (msg["sending_application"], msg["sending_facility"]) == ("HNAM_PM", "HNA500")
    assert msg["version_id"] == "2.3"


def test_batch_file_with_two_batches_keeps_every_message_in_order():
    rows = read_rows(SAMPLES / "python-hl7-sample_file1.hl7", "adt")
    assert [r["message_control_id"] for r in rows] == ["12334456778890", "12334456778891",
                                                        "12334456778890"]
    for row in rows:
        # EVN|A04|20060705000000 ; PID|1||0000112234^^^100^A||...||10131113|1 ; PV1|1|O
        assert row["event_type"] == "A04"
        assert row["effective_datetime"] == dt.datetime(2006, 7, 5)
        assert row["patient_id"] == "0000112234"
        assert row["birth_date"] == dt.date(1013, 11, 13)
        assert row["sex"] == "1"
        assert row["patient_class"] == "O"
        assert row["admit_datetime"] is None


def test_lab_results_with_structured_numeric_values():
    rows = read_rows(SAMPLES / "python-hl7-sample_hl7.hl7", "oru")
    # OBR|1|845439^GHH OE|1045813^GHH LAB|1554-5^GLUCOSE|||200202150730
    # OBX|1|SN|1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN||^182|mg/dl|70_105|H|||F
    first, second = rows
    assert first["service_code"] == "1554-5" and first["service_text"] == "GLUCOSE"
    assert first["observation_datetime"] == dt.datetime(2002, 2, 15, 7, 30)
    assert first["observation_code"] == "1554-5"
    assert first["observation_system"] == "POST 12H CFST:MCNC:PT:SER/PLAS:QN"
    assert (first["value_type"], first["value"], first["value_numeric"]) == ("SN", "^182", 182.0)
    assert first["value_comparator"] is None
    assert (first["units"], first["reference_range"], first["abnormal_flags"]) == ("mg/dl", "70_105", "H")
    assert first["result_status"] == "F"
    assert first["result_datetime"] is None
    assert first["effective_datetime"] == first["observation_datetime"]  # no OBX-14: OBR-7
    assert first["patient_id"] == "555-44-4444"
    # OBX|2|FN|... : FN is not a numeric type, the value stays text only
    assert (second["obx_seq"], second["value_type"], second["value_numeric"]) == (2, "FN", None)


def test_text_results_take_their_date_from_obx14():
    rows = read_rows(SAMPLES / "linuxforhealth-ORU-multiline-short-mixed.hl7", "oru")
    assert [r["value_type"] for r in rows] == ["ST", "TX", "TX", "TX"]
    assert rows[2]["value"] == "[PII] Emergency Department"
    assert rows[3]["value"] == "ED Encounter Arrival Date: [ADDRESS] [PERSONALNAME]:"
    assert rows[0]["observation_code"] == "12345" and rows[0]["value"] is None
    assert {r["service_text"] for r in rows} == {"ECHO CARDIOGRAM COMPLETE"}
    assert {r["effective_datetime"] for r in rows} == {dt.datetime(2020, 8, 2, 12, 44, 55)}
    assert {r["patient_id"] for r in rows} == {"0d70c6c8"}


def test_oru_without_results_is_still_a_message():
    [msg] = read_rows(SAMPLES / "python-hl7-rep_sample_hl7.hl7", "messages")
    assert (msg["message_type"], msg["detail_stream"], msg["segment_ids"]) == ("ORU", "oru", "MSH PID")
    assert msg["patient_id"] == "Component1"
    assert msg["message_datetime"] == dt.datetime(2002, 2, 15, 9, 30)
