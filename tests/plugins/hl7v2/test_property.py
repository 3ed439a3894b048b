"""Property tests: thousands of malformed files end in InputError (or valid rows), nothing else."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.raw.index import open_index
from lithotse_desktop.workspace import Workspace
from lithotse_hl7v2.records import SCHEMAS

from .builders import STREAMS, adt, oru, read_table

DIGITS = string.digits
valid_dtm = st.builds(
    lambda y, m, d, rest, off: f"{y:04d}{m:02d}{d:02d}{rest}{off}",
    st.integers(1900, 2100), st.integers(1, 12), st.integers(1, 28),
    st.sampled_from(["", "10", "1030", "103059", "103059.25"]),
    st.sampled_from(["", "+0100", "-0500", "+0000"]))
invalid_dtm = st.one_of(
    st.from_regex(r"\A20[0-9]{2}(1[3-9]|[2-9][0-9])[0-2][0-9]\Z"),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"),
    st.from_regex(r"\A[0-9]{5}\Z"),
    st.from_regex(r"\A[0-9]{8}[a-z]\Z"),
    st.from_regex(r"\A2024010[1-9]2[4-9]\Z"))
ident = st.text(string.ascii_letters + DIGITS + "-_", min_size=1, max_size=10)


@st.composite
def valid_message(draw) -> list[str]:
    """A well-formed ADT or ORU message as a list of segments."""
    cid = draw(ident)
    if draw(st.booleans()):
        text = adt(cid, admit=draw(st.one_of(st.just(""), valid_dtm)), event=draw(valid_dtm),
                   sent=draw(valid_dtm), patient=draw(ident))
    else:
        results = draw(st.lists(st.tuples(st.integers(-99999, 99999).map(lambda n: str(n / 100)),
                                          st.one_of(st.just(""), valid_dtm)), max_size=4))
        text = oru(cid, results, obr_when=draw(st.one_of(st.just(""), valid_dtm)),
                   sent=draw(valid_dtm), patient=draw(ident))
    return text.split("\r")


field_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
segment_id = st.one_of(
    st.sampled_from(["MSH", "EVN", "PID", "PV1", "OBR", "OBX", "NTE", "FHS", "BHS", "BTS", "FTS"]),
    st.text(string.ascii_letters + DIGITS, max_size=4))
random_segment = st.builds(lambda sid, sep, fields: sid + sep + sep.join(fields), segment_id,
                           st.sampled_from(["|", "^", "!", " ", ""]), st.lists(field_text, max_size=12))


@st.composite
def mangled_file(draw) -> bytes:
    """Valid messages damaged in one of several ways, with random line ends and framing."""
    messages = draw(st.lists(valid_message(), min_size=1, max_size=3))
    target = draw(st.integers(0, len(messages) - 1))
    kind = draw(st.sampled_from(["segments", "truncated_msh", "separators", "bad_date", "binary",
                                 "cut", "shuffle", "none"]))
    segments = messages[target]
    if kind == "segments":
        for _ in range(draw(st.integers(1, 4))):
            segments.insert(draw(st.integers(0, len(segments))), draw(random_segment))
    elif kind == "truncated_msh":
        segments[0] = segments[0][:draw(st.integers(0, len(segments[0]) - 1))]
    elif kind == "separators":
        msh = segments[0]
        if draw(st.booleans()):
            msh = msh[:3] + draw(st.characters(codec="utf-8")) + msh[4:]
        else:
            msh = msh[:4] + draw(st.text(st.characters(codec="ascii"), max_size=6)) + msh[8:]
        segments[0] = msh
    elif kind == "bad_date":
        row = draw(st.integers(0, len(segments) - 1))
        fields = segments[row].split("|")
        fields[draw(st.integers(1, max(1, len(fields) - 1)))] = draw(st.one_of(invalid_dtm, field_text))
        segments[row] = "|".join(fields)
    elif kind == "shuffle":
        messages[target] = draw(st.permutations(segments))
    end = draw(st.sampled_from(["\r", "\n", "\r\n"]))
    texts = [end.join(m) + end for m in messages]
    if draw(st.booleans()):
        texts = [f"\x0b{t}\x1c\r" for t in texts]
    data = "".join(texts).encode("utf-8")
    if kind == "binary":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=40)) + data[at:]
    elif kind == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    return data


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hl7-property") / "in.hl7"


def check_file(path: Path) -> None:
    """Each stream either reads with its schema and dates, or fails with InputError."""
    for stream in STREAMS:
        try:
            table = read_table(path, stream)
        except InputError as exc:
            assert str(exc).startswith("in.hl7")
            assert "rejected" in str(exc)
            continue
        assert table.schema == SCHEMAS[stream]
        date_field = "message_datetime" if stream == "messages" else "effective_datetime"
        assert table.column(date_field).null_count == 0


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mangled_file())
@example(data=b"MSH|^~\\&|APP|FAC|RCV|RFAC|19000101||ORU^R01|0|P|2.5\r||||||\x00\rPID|1||0\rOBR|1|||GLU^Glucose|||\r")
def test_mangled_files_end_in_rows_or_input_error(scratch, data):
    """Found by a suite run: a NUL byte where MSH-18 (the character set) is read made a ValueError escape."""
    scratch.write_bytes(data)
    check_file(scratch)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_binary_junk_ends_in_rows_or_input_error(scratch, data):
    scratch.write_bytes(data)
    check_file(scratch)


DATE_SLOTS = ["sent", "event", "admit", "birth", "obr", "obx"]


@settings(max_examples=300, deadline=None)
@given(before=st.lists(valid_message(), max_size=3), slot=st.sampled_from(DATE_SLOTS),
       bad=invalid_dtm)
def test_a_bad_date_in_any_read_field_rejects_the_file(scratch, before, slot, bad):
    if slot in ("sent", "event", "admit", "birth"):
        message = adt("BAD", **{slot: bad})
    else:
        message = oru("BAD", [("1", bad if slot == "obx" else "")],
                      obr_when=bad if slot == "obr" else "20240101")
    scratch.write_text("\r".join(["\r".join(m) for m in before] + [message]))
    field = {"sent": "MSH-7", "event": "EVN-2", "admit": "PV1-44", "birth": "PID-7",
             "obr": "OBR-7", "obx": "OBX-14"}[slot]
    for stream in STREAMS:
        with pytest.raises(InputError) as info:
            read_table(scratch, stream)
        assert info.value.location == f"in.hl7, message {len(before) + 1} (MSH-10 'BAD')"
        assert f"{field} " in info.value.reason and repr(bad) in info.value.reason
        assert info.value.reason.endswith(f"1 of {len(before) + 1} message"
                                          f"{'s' if before else ''} in the file rejected")


@settings(max_examples=25, deadline=None)
@given(good=st.lists(valid_message(), max_size=3), junk=mangled_file(),
       breaker=st.sampled_from(["PID|1||X", "MSH|^~\\&", "MSH|^~\\&|A|B|C|D|2024-01-01||ADT^A01|Z|P|2.5"]))
def test_failed_import_leaves_the_raw_store_empty(good, junk, breaker):
    reset_plugin_manager()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        (folder / "a_good.hl7").write_text("\r".join("\r".join(m) for m in good))
        (folder / "b_junk.hl7").write_bytes(junk)
        (folder / "c_broken.hl7").write_text(breaker + "\r")
        ws = Workspace.create(Path(tmp) / "ws")
        ws.add_source("src", "hl7v2", {"path": str(folder)}, {})
        with pytest.raises(InputError):
            run_import(ws, "src", DateRange.parse("2024-01-01", "2024-12-31"))
        assert list(ws.store("raw").list("")) == []
        index = open_index(ws)
        assert index.landings() == []
        index.close()
    reset_plugin_manager()
