"""The REST connector against a real HTTP server: paging, date filters, watermark, errors."""

from __future__ import annotations

import json
import socket

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.raw import read_stream, run_import

from .conftest import SMART, TOKEN, raw_keys


def add_rest(workspace, server_url, token=TOKEN, types="Encounter,Patient,Condition", page_size=50):
    workspace.add_source("ehr", "fhir-rest", {"base_url": server_url, "resource_types": types,
                                              "page_size": page_size}, {"token": token} if token else {})


def encounter_dates() -> list[str]:
    lines = (SMART / "Encounter.000.ndjson").read_text("utf-8").splitlines()
    return [json.loads(line)["period"]["start"][:10] for line in lines]


def test_paged_search_with_date_range(workspace, fhir_plugin, fhir_server):
    add_rest(workspace, fhir_server.base_url)
    result = run_import(workspace, "ehr", DateRange.parse("2000-01-01", "2009-12-31"))
    expected = sum("2000-01-01" <= d <= "2009-12-31" for d in encounter_dates())
    enc = [i.manifest for i in result.landings if i.manifest.stream == "Encounter"]
    assert len(enc) == -(-expected // 50) and len(enc) > 1
    assert sum(m.records for m in enc) == expected
    assert sum(m.records_out_of_range for m in enc) == 0
    searches = [q for _m, path, q, _h in fhir_server.requests if path == "/fhir/Encounter"]
    assert searches == [{"_count": ["50"], "date": ["ge2000-01-01", "le2009-12-31"]}]
    pages = [path for _m, path, _q, h in fhir_server.requests if path.startswith("/fhir/_page/")]
    assert len(pages) >= len(enc) - 1
    assert all(h.get("Authorization") == f"Bearer {TOKEN}" for *_x, h in fhir_server.requests)
    patients = [i.manifest for i in result.landings if i.manifest.stream == "Patient"]
    assert sum(m.records for m in patients) == 22
    got = [r["id"] for b in read_stream(workspace, "ehr", "Encounter") for r in b.to_pylist()]
    assert len(got) == len(set(got)) == expected


def test_incremental_watermark_then_update_then_full(workspace, fhir_plugin, fhir_server):
    add_rest(workspace, fhir_server.base_url, types="Encounter")
    rng = DateRange.parse("1990-01-01", "2020-12-31")
    first = run_import(workspace, "ehr", rng)
    assert first.landings[-1].manifest.cursor["ranges"][0]["since"] == "2024-06-01T12:00:00.000000Z"
    assert all(i.manifest.cursor is None for i in first.landings[:-1])
    assert run_import(workspace, "ehr", rng).landings == []
    last = [q for _m, p, q, _h in fhir_server.requests if p == "/fhir/Encounter"][-1]
    assert last["_lastUpdated"] == ["gt2024-06-01T12:00:00.000000Z"]

    changed = json.loads((SMART / "Encounter.000.ndjson").read_text("utf-8").splitlines()[0])
    changed["status"] = "entered-in-error"
    changed["period"]["start"] = "2015-05-05T10:00:00+00:00"
    fhir_server.upsert(changed)
    third = run_import(workspace, "ehr", rng)
    assert [(i.manifest.records, i.manifest.records_in_range) for i in third.landings] == [(1, 1)]

    full = run_import(workspace, "ehr", rng, full=True)
    total = sum("1990-01-01" <= d <= "2020-12-31" for d in ["2015-05-05", *encounter_dates()[1:]])
    assert sum(i.manifest.records for i in full.landings) == total


def test_wrong_token_names_url_and_lands_nothing(workspace, fhir_plugin, fhir_server):
    add_rest(workspace, fhir_server.base_url, token="wrong")
    with pytest.raises(InputError, match=r"http://127\.0\.0\.1:\d+/fhir/Encounter\?.*HTTP 401.*token"):
        run_import(workspace, "ehr")
    assert raw_keys(workspace) == []


def test_retries_on_429_and_503(workspace, fhir_plugin, fhir_server):
    add_rest(workspace, fhir_server.base_url, types="Patient")
    fhir_server.inject(503, times=2)
    fhir_server.inject(429, times=1, retry_after=None)
    result = run_import(workspace, "ehr")
    assert sum(i.manifest.records for i in result.landings) == 22
    assert len([r for r in fhir_server.requests if r[1] == "/fhir/Patient"]) == 4


def test_gives_up_after_retries(workspace, fhir_plugin, fhir_server):
    add_rest(workspace, fhir_server.base_url, types="Patient")
    fhir_server.inject(503, times=10)
    with pytest.raises(InputError, match=r"/fhir/Patient.*HTTP 503.*after 6 attempts.*injected fault"):
        run_import(workspace, "ehr")
    assert raw_keys(workspace) == []


def test_unreachable_server_and_non_fhir_response(workspace, fhir_plugin, fhir_server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    add_rest(workspace, f"http://127.0.0.1:{port}/fhir", types="Patient")
    with pytest.raises(InputError, match=rf"127\.0\.0\.1:{port}/fhir/Patient: cannot reach the server"):
        run_import(workspace, "ehr")
    workspace.add_source("html", "fhir-rest", {"base_url": fhir_server.root + "/html",
                                               "resource_types": "Patient"}, {})
    with pytest.raises(InputError, match=r"/html/Patient.*not FHIR JSON \(text/html\)"):
        run_import(workspace, "html")
    assert raw_keys(workspace) == []
