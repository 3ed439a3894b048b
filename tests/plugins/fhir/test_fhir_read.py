"""Parsing rules of the FHIR reader: the date rule, formats, and clear errors for bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.raw import read_stream, run_import
from lithotse_fhir.reader import read_payload, schema_for

from .conftest import BUNDLES, SMART, raw_keys

UTC = dt.UTC


def enc(i: int, start: str | None, **extra) -> dict:
    res = {"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
           "meta": {"versionId": "3", "lastUpdated": "2024-01-02T03:04:05.678+02:00"}}
    if start is not None:
        res["period"] = {"start": start}
    res.update(extra)
    return res


def write_ndjson(path: Path, items: list, gz: bool = False) -> Path:
    text = "".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in items)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def rows(path: Path, stream: str, meta: dict | None = None) -> list[dict]:
    return pa.Table.from_batches(list(read_payload(path, path.name, stream, meta or {})),
                                 schema=schema_for(stream)).to_pylist()


def test_date_rule_partial_dates_offsets_and_instants(tmp_path):
    path = write_ndjson(tmp_path / "Encounter.ndjson", [
        enc(1, "2020"), enc(2, "2020-05"), enc(3, "2020-05-03"),
        enc(4, "2020-05-03T23:30:00-04:00"), enc(5, "2020-05-03T01:00:00.5+02:00"), enc(6, None)])
    got = rows(path, "Encounter")
    assert [r["date"] for r in got] == [dt.date(2020, 1, 1), dt.date(2020, 5, 1), dt.date(2020, 5, 3),
                                        dt.date(2020, 5, 3), dt.date(2020, 5, 3), None]
    assert [r["date_time"] for r in got] == [
        None, None, None, dt.datetime(2020, 5, 4, 3, 30, tzinfo=UTC),
        dt.datetime(2020, 5, 2, 23, 0, 0, 500000, tzinfo=UTC), None]
    assert got[0]["lastUpdated"] == dt.datetime(2024, 1, 2, 1, 4, 5, 678000, tzinfo=UTC)
    assert (got[0]["id"], got[0]["versionId"], got[0]["resourceType"]) == ("e1", "3", "Encounter")
    assert json.loads(got[3]["resource"]) == enc(4, "2020-05-03T23:30:00-04:00")


def test_patient_id_comes_from_the_patient_reference_or_the_patient_itself(tmp_path):
    """The person key column: every reference form resolves to the Patient's id; others are null."""
    encounters = write_ndjson(tmp_path / "Encounter.ndjson", [
        enc(1, "2020", subject={"reference": "Patient/p1"}),
        enc(2, "2020", subject={"reference": "https://fhir.example/R4/Patient/p2/_history/4"}),
        enc(3, "2020", subject={"reference": "urn:uuid:9b1c"}),
        enc(4, "2020", subject={"reference": "Group/g1"}),
        enc(5, "2020")])
    assert [r["patient_id"] for r in rows(encounters, "Encounter")] == ["p1", "p2", "9b1c", None, None]
    patients = write_ndjson(tmp_path / "Patient.ndjson", [{"resourceType": "Patient", "id": "p7"}])
    assert [r["patient_id"] for r in rows(patients, "Patient")] == ["p7"]
    coverage = write_ndjson(tmp_path / "Coverage.ndjson", [
        {"resourceType": "Coverage", "id": "c1", "status": "active", "beneficiary": {"reference": "Patient/p3"},
         "payor": [{"reference": "Organization/o1"}]}])
    assert [r["patient_id"] for r in rows(coverage, "Coverage")] == ["p3"]
    practitioners = write_ndjson(tmp_path / "Practitioner.ndjson", [{"resourceType": "Practitioner", "id": "d1"}])
    assert [r["patient_id"] for r in rows(practitioners, "Practitioner")] == [None]


def test_schema_is_fixed_per_stream(tmp_path):
    schema = schema_for("Observation")
    assert schema.field("date").type == pa.date32()
    assert schema.field("lastUpdated").type == pa.timestamp("us", tz="UTC")
    assert schema.field("date_time").type == pa.timestamp("us", tz="UTC")
    assert schema.field("issued_date").type == pa.date32()
    empty = write_ndjson(tmp_path / "Observation.ndjson", [])
    assert rows(empty, "Observation") == []


def test_calendar_date_survives_a_western_workspace_zone(workspace, fhir_plugin, tmp_path):
    """A date-only value and a late-evening local time stay on their written day."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_ndjson(folder / "Encounter.000.ndjson", [
        enc(1, "2020-05-03"), enc(2, "2020-05-03T23:30:00-04:00"), enc(3, "2020-05-04T00:30:00+02:00")])
    workspace.config["workspace"]["timezone"] = "America/Los_Angeles"
    workspace.save()
    workspace.add_source("f", "fhir-files", {"path": str(folder)}, {})
    result = run_import(workspace, "f", DateRange.parse("2020-05-03", "2020-05-03"))
    assert result.landings[0].manifest.records_in_range == 2
    got = [r["id"] for b in read_stream(workspace, "f", "Encounter") for r in b.to_pylist()]
    assert got == ["e1", "e2"]


def test_gzip_ndjson_reads_like_plain(tmp_path):
    items = [enc(i, f"2021-01-{i + 1:02d}") for i in range(5)]
    plain = rows(write_ndjson(tmp_path / "Encounter.ndjson", items), "Encounter")
    zipped = rows(write_ndjson(tmp_path / "Encounter.ndjson.gz", items, gz=True), "Encounter")
    assert plain == zipped and len(plain) == 5


def test_bundle_entries_by_type_match_independent_count():
    path = next(BUNDLES.glob("*.json"))
    bundle = json.loads(path.read_text("utf-8"))
    for kind in ("Observation", "Encounter", "Patient"):
        expected = [e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]
        got = rows(path, kind, {"format": "document", "mixed": True})
        assert [r["id"] for r in got] == expected
        assert all(r["resourceType"] == kind for r in got)


def test_transaction_delete_entries_are_skipped(tmp_path):
    path = tmp_path / "tx.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": enc(1, "2020-01-01"), "request": {"method": "PUT", "url": "Encounter/e1"}},
        {"request": {"method": "DELETE", "url": "Encounter/e9"}}]}))
    assert [r["id"] for r in rows(path, "Encounter")] == ["e1"]


def test_mixed_unnamed_ndjson_is_split_by_type(workspace, fhir_plugin, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    obs = {"resourceType": "Observation", "id": "o1", "effectiveDateTime": "2020-02-02"}
    write_ndjson(folder / "export.ndjson", [enc(1, "2020-01-01"), obs, enc(2, "2020-03-01")])
    workspace.add_source("f", "fhir-files", {"path": str(folder)}, {})
    result = run_import(workspace, "f")
    assert sorted((item.manifest.stream, item.manifest.records) for item in result.landings) == [
        ("Encounter", 2), ("Observation", 1)]


BAD_NDJSON = [
    ([enc(1, "2020-01-01"), '{"resourceType": "Encounter", "id": "e2", "per'],
     r"Encounter.000.ndjson, line 2: invalid JSON"),
    (["", "  ", '{"id": "x"}'], r"Encounter.000.ndjson, line 3: no resourceType"),
    ([{"resourceType": 5, "id": "x"}], r"line 1: resourceType is not a string"),
    ([enc(1, "2020-01-01"), {"resourceType": "Observation", "id": "o"}],
     r"line 2: resourceType is Observation, expected Encounter"),
    ([enc(1, "2020-13-01")], r"line 1: Encounter.period.start '2020-13-01' is not a valid FHIR date"),
    ([enc(1, "2020-02-30")], r"line 1: Encounter.period.start '2020-02-30' is not a calendar date"),
    ([enc(1, {"a": 1})], r"line 1: Encounter.period.start is not a string"),
    ([enc(1, "2020-01-01", meta={"lastUpdated": "yesterday"})], r"line 1: meta.lastUpdated 'yesterday'"),
    (["[1, 2]"], r"line 1: not a JSON object"),
    (['{"resourceType": "Encounter", "id": "a"} trailing'], r"line 1: invalid JSON"),
]


@pytest.mark.parametrize("items, message", BAD_NDJSON)
def test_bad_ndjson_fails_import_with_location_and_lands_nothing(workspace, fhir_plugin, tmp_path,
                                                                  items, message):
    folder = tmp_path / "in"
    folder.mkdir()
    write_ndjson(folder / "Patient.000.ndjson", [{"resourceType": "Patient", "id": "p"}])
    write_ndjson(folder / "Encounter.000.ndjson", items)
    workspace.add_source("f", "fhir-files", {"path": str(folder)}, {})
    with pytest.raises(InputError, match=message):
        run_import(workspace, "f")
    assert raw_keys(workspace) == []


def test_not_utf8_and_corrupt_gzip(tmp_path):
    bad = tmp_path / "Encounter.ndjson"
    bad.write_bytes(json.dumps(enc(1, "2020")).encode() + b"\n{\"resourceType\": \"Encounter\", \"id\": \"\xff\"}\n")
    with pytest.raises(InputError, match=r"Encounter.ndjson, line 2: not UTF-8"):
        rows(bad, "Encounter")
    good = gzip.compress(("".join(json.dumps(enc(i, "2020")) + "\n" for i in range(200))).encode())
    truncated = tmp_path / "Encounter.ndjson.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"Encounter.ndjson.gz, line \d+: gzip data is corrupt or truncated"):
        rows(truncated, "Encounter")
    garbled = tmp_path / "g.ndjson.gz"
    garbled.write_bytes(good[:20] + bytes(200) + good[220:])
    with pytest.raises(InputError, match=r"g.ndjson.gz"):
        rows(garbled, "Encounter")


BAD_BUNDLES = [
    ('{"resourceType": "Bundle", "entry": [', r"b.json, line 1: invalid JSON"),
    ({"resourceType": "Bundle", "entry": {"a": 1}}, r"b.json, Bundle.entry: is not a list"),
    ({"resourceType": "Bundle", "entry": [{"resource": enc(1, "2020")}, 7]},
     r"b.json, Bundle.entry\[1\]: entry is not a JSON object"),
    ({"resourceType": "Bundle", "entry": [{"fullUrl": "urn:x"}]}, r"Bundle.entry\[0\]: entry has no resource"),
    ({"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]},
     r"Bundle.entry\[0\]: no resourceType"),
    ({"resourceType": "Bundle", "entry": [{"resource": enc(1, "20-01")}]},
     r"Bundle.entry\[0\]: Encounter.period.start '20-01' is not a valid FHIR date"),
    ({"hello": "world"}, r"b.json: no resourceType: not a FHIR resource"),
    ({"resourceType": "Unicorn"}, r"b.json: holds Unicorn, not a FHIR R4 resource type"),
]


@pytest.mark.parametrize("doc, message", BAD_BUNDLES)
def test_bad_bundles_fail_import_with_entry_index(workspace, fhir_plugin, tmp_path, doc, message):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "b.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    workspace.add_source("f", "fhir-files", {"path": str(folder)}, {})
    with pytest.raises(InputError, match=message):
        run_import(workspace, "f")
    assert raw_keys(workspace) == []


def test_export_log_is_skipped_but_other_non_fhir_ndjson_is_an_error(workspace, fhir_plugin, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "log.ndjson").write_bytes((SMART / "log.ndjson").read_bytes())
    write_ndjson(folder / "Encounter.000.ndjson", [enc(1, "2020-01-01")])
    workspace.add_source("f", "fhir-files", {"path": str(folder)}, {})
    assert [i.manifest.stream for i in run_import(workspace, "f").landings] == ["Encounter"]
    write_ndjson(folder / "events.ndjson", [{"event": 1}])
    with pytest.raises(InputError, match=r"events.ndjson, line 1: no resourceType"):
        run_import(workspace, "f")


@pytest.mark.parametrize("resource_type", ["Encounter", "Observation", "Condition", "Patient", "Organization"])
def test_a_native_ndjson_read_has_the_streams_columns_and_types(resource_type):
    from lithotse_fhir.base import native_ndjson

    read = native_ndjson(resource_type)
    assert read.schema() == schema_for(resource_type)
    assert read.keep == ("resourceType", resource_type)


def test_only_plain_ndjson_is_described_for_an_engine(tmp_path):
    import io

    from lithotse_desktop.connectors import RawObject
    from lithotse_fhir.files import FhirFilesConnector

    conn = FhirFilesConnector({"path": str(tmp_path)})
    line = b'{"resourceType":"Patient","id":"p"}\n'

    def obj(meta, data=line, media="application/fhir+ndjson"):
        return RawObject(None, "Patient", "p.ndjson", media, meta, validated=True, open=lambda: io.BytesIO(data))

    assert conn.native_read(obj({"format": "ndjson", "mixed": False})) is not None
    assert conn.native_read(obj({"format": "document", "mixed": True})) is None
    assert conn.native_read(obj({"format": "ndjson"}, gzip.compress(line))) is None
    assert conn.native_read(obj({"format": "ndjson"}, media="application/fhir+ndjson; gzip")) is None
