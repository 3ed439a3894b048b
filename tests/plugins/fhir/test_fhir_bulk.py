"""The Bulk Data connector against a real async $export: polling, downloads, _since, errors."""

from __future__ import annotations

import json

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import ConfigError, InputError
from lithotse_desktop.raw import read_stream, run_import

from .conftest import PATHLING, SMART, TOKEN, raw_keys


def add_bulk(workspace, url, token=TOKEN, **settings):
    workspace.add_source("bulk", "fhir-bulk", {"base_url": url, **settings},
                         {"token": token} if token else {})


def test_export_polls_downloads_and_counts(workspace, fhir_plugin, fhir_server):
    fhir_server.file_chunk = 400
    add_bulk(workspace, fhir_server.base_url, resource_types="Encounter,Observation,Patient")
    result = run_import(workspace, "bulk", DateRange.parse("2010-01-01", "2019-12-31"))
    by_stream: dict[str, list] = {}
    for item in result.landings:
        by_stream.setdefault(item.manifest.stream, []).append(item.manifest)
    assert [m.original_name for m in by_stream["Encounter"]] == [f"Encounter.{n:03d}.ndjson" for n in (1, 2, 3, 4)]
    assert sum(m.records for m in by_stream["Encounter"]) == 1215
    enc_dates = [json.loads(x)["period"]["start"][:10]
                 for x in (SMART / "Encounter.000.ndjson").read_text("utf-8").splitlines()]
    assert sum(m.records_in_range for m in by_stream["Encounter"]) == sum(
        "2010-01-01" <= d <= "2019-12-31" for d in enc_dates)
    obs = (PATHLING / "Observation.ndjson").read_text("utf-8").splitlines()
    assert sum(m.records for m in by_stream["Observation"]) == len(obs)
    assert sum(m.records for m in by_stream["Patient"]) == 22
    kick = [r for r in fhir_server.requests if r[1] == "/fhir/Patient/$export"]
    assert kick[0][2]["_type"] == ["Encounter,Observation,Patient"] and "_since" not in kick[0][2]
    polls = [r for r in fhir_server.requests if r[1].startswith("/fhir/_export/") and r[1].count("/") == 3]
    assert len(polls) == 3
    files = [r for r in fhir_server.requests if r[1].endswith(".ndjson")]
    assert files and all(r[3].get("Authorization") == f"Bearer {TOKEN}" for r in files)
    assert sum(b.num_rows for b in read_stream(workspace, "bulk", "Patient")) == 22


def test_incremental_export_uses_since(workspace, fhir_plugin, fhir_server):
    add_bulk(workspace, fhir_server.base_url, resource_types="Condition", export_level="system")
    rng = DateRange.parse("1900-01-01", "2030-12-31")
    first = run_import(workspace, "bulk", rng)
    assert sum(i.manifest.records for i in first.landings) == 555 + 71
    assert run_import(workspace, "bulk", rng).landings == []
    kick = [r for r in fhir_server.requests if r[1] == "/fhir/$export"]
    assert kick[-1][2]["_since"] == ["2024-06-01T12:00:00.000000Z"]
    fhir_server.upsert({"resourceType": "Condition", "id": "new-1", "recordedDate": "2025-01-01"})
    third = run_import(workspace, "bulk", rng)
    assert [(i.manifest.stream, i.manifest.records) for i in third.landings] == [("Condition", 1)]
    full = run_import(workspace, "bulk", rng, full=True)
    assert sum(i.manifest.records for i in full.landings) == 555 + 71 + 1


def test_export_errors_are_reported_with_url(workspace, fhir_plugin, fhir_server):
    fhir_server.export_error = "disk full on export node"
    add_bulk(workspace, fhir_server.base_url, resource_types="Patient")
    with pytest.raises(InputError, match=r"/fhir/_export/\w+: the export reported 1 error file\(s\): disk full"):
        run_import(workspace, "bulk")
    assert raw_keys(workspace) == []


def test_kickoff_refused_and_group_needs_id(workspace, fhir_plugin, fhir_server):
    add_bulk(workspace, fhir_server.base_url, token="nope", resource_types="Patient")
    with pytest.raises(InputError, match=r"/fhir/Patient/\$export\?.*HTTP 401"):
        run_import(workspace, "bulk")
    workspace.add_source("grp", "fhir-bulk", {"base_url": fhir_server.base_url, "export_level": "group"}, {})
    with pytest.raises(ConfigError, match="group_id"):
        run_import(workspace, "grp")
    assert raw_keys(workspace) == []
