"""End-to-end file imports through the real entry point and CLI: ranges, incremental, --full."""

from __future__ import annotations

import json
import shutil

from lithotse_desktop.dates import DateRange
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.workspace import Workspace

from .conftest import BUNDLES, PATHLING, SMART


def independent_counts(path, start: str, end: str) -> tuple[int, int]:
    """In/out of range counts of Encounters by period.start's written calendar date."""
    inside = total = 0
    for line in path.read_text("utf-8").splitlines():
        res = json.loads(line)
        total += 1
        inside += start <= res["period"]["start"][:10] <= end
    return inside, total - inside


def test_cli_import_counts_range_then_incremental_then_full(workspace, fhir_plugin, cli, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(SMART, folder)
    cli("source", "add", "smart", "--connector", "fhir-files", "--set", f"path={folder}",
        "--set", "resource_types=Encounter, Patient, Condition")
    out = cli("import", "smart", "--from", "2000-01-01", "--to", "2009-12-31", "--no-build").output
    inside, outside = independent_counts(folder / "Encounter.000.ndjson", "2000-01-01", "2009-12-31")
    assert f"smart/Encounter Encounter.000.ndjson: 1215 records ({inside} in range, {outside} outside)" in out
    assert "smart/Patient Patient.000.ndjson: 13 records (13 in range, 0 outside)" in out
    assert "Procedure" not in out and "log.ndjson" not in out
    workspace = Workspace.open(workspace.root)
    got = [r for b in read_stream(workspace, "smart", "Encounter") for r in b.to_pylist()]
    assert len(got) == inside
    assert all("2000-01-01" <= r["date"].isoformat() <= "2009-12-31" for r in got)

    assert "nothing new to import" in cli("import", "smart", "--from", "2000-01-01", "--to", "2009-12-31",
                                          "--no-build").output
    again = cli("import", "smart", "--from", "2000-01-01", "--to", "2009-12-31", "--full", "--no-build").output
    assert "already stored, not written again" in again and "Encounter.000.ndjson" in again

    wider = run_import(workspace, "smart", DateRange.parse("1990-01-01", "2009-12-31"))
    assert sorted(i.manifest.stream for i in wider.landings) == ["Condition", "Encounter", "Patient"]


def test_folder_with_bundles_and_ndjson_mixed(workspace, fhir_plugin, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    bundle = next(BUNDLES.glob("*.json"))
    shutil.copy(bundle, folder / bundle.name)
    shutil.copy(PATHLING / "Observation.ndjson", folder / "Observation.ndjson")
    workspace.add_source("m", "fhir-files", {"path": str(folder), "resource_types": "Observation,Patient"}, {})
    result = run_import(workspace, "m")
    names = sorted((i.manifest.stream, i.manifest.original_name) for i in result.landings)
    assert names == sorted([("Observation", "Observation.ndjson"), ("Observation", bundle.name),
                            ("Patient", bundle.name)])
    doc = json.loads(bundle.read_text("utf-8"))
    in_bundle = sum(e["resource"]["resourceType"] == "Observation" for e in doc["entry"])
    in_ndjson = len((PATHLING / "Observation.ndjson").read_text("utf-8").splitlines())
    assert sum(b.num_rows for b in read_stream(workspace, "m", "Observation")) == in_bundle + in_ndjson

    new = folder / "more.json"
    new.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "id": "extra", "effectiveDateTime": "2021-01-01"}}]}))
    later = run_import(workspace, "m")
    assert [(i.manifest.stream, i.manifest.original_name) for i in later.landings] == [("Observation", "more.json")]


def test_streams_and_settings_are_described(fhir_plugin):
    files = fhir_plugin.connector("fhir-files")
    assert [f["name"] for f in files.describe()["fields"]] == ["path", "resource_types"]
    conn = files({"path": "/x", "resource_types": ""})
    streams = {s.name: s for s in conn.streams()}
    assert len(streams) > 140
    assert streams["Encounter"].date_field == "date"
    assert "period_end" in streams["Encounter"].date_fields
    assert streams["Patient"].date_field is None
    assert "birth_date" in streams["Patient"].date_fields
    assert streams["Basic"].date_field == "lastUpdated"
    assert (streams["Encounter"].person_key, streams["Patient"].person_key) == (("patient_id",), ("patient_id",))
    assert (streams["Coverage"].person_key, streams["Practitioner"].person_key) == (("patient_id",), None)
    rest = fhir_plugin.connector("fhir-rest")
    kinds = {f["name"]: f["type"] for f in rest.describe()["fields"]}
    assert kinds == {"base_url": "url", "token": "secret", "resource_types": "text",
                     "page_size": "integer", "date_params": "text",
                     "lastupdated_overlap": "integer"}
