"""Property tests: malformed NDJSON and Bundles end in InputError (or read cleanly), nothing else."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lithotse_desktop.errors import InputError
from lithotse_desktop.raw import run_import
from lithotse_desktop.workspace import Workspace
from lithotse_fhir.reader import read_payload

DATES = st.one_of(
    st.sampled_from(["2020", "2020-05", "2020-05-03", "2020-05-03T23:30:00-04:00", "2020-13-01",
                     "2020-02-30", "0000-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-10:00",
                     "2020-05-03T25:00:00Z", "2020-05-03T10:00:00", "2020-5-3", "", " 2020", "2020-05-03T",
                     "2020-05-03T10:00:00.1234567890Z", "2020-05-03T10:00:00+14:30"]),
    st.text(max_size=30), st.integers(-10000, 10000), st.none(), st.booleans(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10))
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


@st.composite
def resources(draw):
    res = {"resourceType": draw(st.sampled_from(["Encounter"] * 6 + ["Observation", 5, None, "enc"])),
           "id": draw(st.one_of(st.text(max_size=8), st.integers()))}
    if draw(st.booleans()):
        res["period"] = draw(st.one_of(st.fixed_dictionaries({"start": DATES}), st.lists(DATES, max_size=2), DATES))
    if draw(st.booleans()):
        res["meta"] = {"lastUpdated": draw(DATES), "versionId": draw(SCALARS)}
    if draw(st.booleans()):
        res = draw(st.dictionaries(st.text(max_size=6), JSONISH, max_size=3)) | res
    if draw(st.integers(0, 9)) == 0:
        res.pop("resourceType")
    return res


@st.composite
def ndjson_lines(draw):
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        return json.dumps(draw(resources()))
    if kind == 6:
        text = json.dumps(draw(resources()))
        return text[: draw(st.integers(0, len(text)))]
    if kind == 7:
        return json.dumps(draw(JSONISH))
    if kind == 8:
        return draw(st.sampled_from(["", "   ", "{", "}", "[]", "null", "{\"a\":1}{\"b\":2}"]))
    return draw(st.text(max_size=20)).replace("\n", " ")


def check_read(path: Path, name: str, stream: str, meta: dict) -> list[dict] | None:
    try:
        out = []
        for batch in read_payload(path, name, stream, meta):
            out.extend(batch.drop_columns(["resource"]).to_pylist())
        return out
    except InputError as exc:
        assert name in exc.location
        return None


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(ndjson_lines(), max_size=8), gz=st.booleans(), cut=st.integers(0, 3))
def test_ndjson_reads_or_fails_with_input_error(lines, gz, cut):
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    if gz:
        data = gzip.compress(data)
        data = data[: len(data) - cut * 7] if cut else data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obj"
        path.write_bytes(data)
        got = check_read(path, "Encounter.000.ndjson", "Encounter", {"format": "ndjson", "mixed": False})
    if got is not None:
        assert all(r["resourceType"] == "Encounter" for r in got)
        assert len(got) == sum(bool(line.strip()) for line in lines)


@st.composite
def bundles(draw):
    entries = draw(st.lists(st.one_of(
        st.builds(lambda r: {"resource": r}, resources()),
        st.builds(lambda r: {"resource": r, "request": {"method": "PUT"}}, resources()),
        st.just({"request": {"method": "DELETE"}}), st.just({"fullUrl": "urn:x"}), JSONISH), max_size=6))
    doc = {"resourceType": draw(st.sampled_from(["Bundle"] * 5 + ["Encounter", 3])), "type": "collection",
           "entry": draw(st.one_of(st.just(entries), JSONISH)) if draw(st.integers(0, 9)) == 0 else entries}
    text = json.dumps(doc)
    return text[: draw(st.integers(0, len(text)))] if draw(st.integers(0, 7)) == 0 else text


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=bundles())
def test_bundles_read_or_fail_with_input_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obj"
        path.write_text(text)
        got = check_read(path, "b.json", "Encounter", {"format": "document", "mixed": True})
    if got is not None:
        assert all(r["resourceType"] == "Encounter" for r in got)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(lines=st.lists(ndjson_lines(), min_size=1, max_size=5), bundle=bundles())
def test_failed_import_leaves_raw_store_empty(fhir_plugin, lines, bundle):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        (folder / "Encounter.000.ndjson").write_text("\n".join(lines) + "\n", "utf-8", "surrogatepass")
        (folder / "b.json").write_text(bundle)
        ws = Workspace.create(Path(tmp) / "ws")
        ws.add_source("f", "fhir-files", {"path": str(folder), "resource_types": "Encounter,Observation"}, {})
        try:
            run_import(ws, "f")
        except InputError:
            assert list(ws.store("raw").list("")) == []
