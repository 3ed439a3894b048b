"""The REST connector against a real HTTP server: paging, date filters, watermark, errors."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest

from lithotse_desktop.connectors import FetchRequest
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.raw import read_stream, run_import
from lithotse_fhir.rest import FhirRestConnector

from .conftest import SMART, TOKEN, raw_keys
from .fhir_server import FhirTestServer


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
    served = sum("1999-12-30" <= d <= "2010-01-02" for d in encounter_dates())
    enc = [i.manifest for i in result.landings if i.manifest.stream == "Encounter"]
    assert len(enc) == -(-served // 50) and len(enc) > 1
    assert sum(m.records for m in enc) == served
    assert sum(m.records_in_range for m in enc) == expected
    searches = [q for _m, path, q, _h in fhir_server.requests if path == "/fhir/Encounter"]
    assert searches == [{"_count": ["50"], "date": ["ge1999-12-30", "le2010-01-02"]}]
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
    assert last["_lastUpdated"] == ["gt2024-06-01T11:50:00.000000Z"]  # the watermark less the overlap

    changed = json.loads((SMART / "Encounter.000.ndjson").read_text("utf-8").splitlines()[0])
    changed["status"] = "entered-in-error"
    changed["period"]["start"] = "2015-05-05T10:00:00+00:00"
    fhir_server.upsert(changed)
    third = run_import(workspace, "ehr", rng)
    # one page lands, holding the new version beside versions seen inside the overlap window
    assert len(third.landings) == 1 and third.landings[0].manifest.records >= 1
    now = {r["id"]: r for b in read_stream(workspace, "ehr", "Encounter") for r in b.to_pylist()}
    assert json.loads(now[changed["id"]]["resource"])["status"] == "entered-in-error"
    assert run_import(workspace, "ehr", rng).landings == []

    full = run_import(workspace, "ehr", rng, full=True)
    days = ["2015-05-05", *encounter_dates()[1:]]
    assert sum(i.manifest.records for i in full.landings) == sum("1989-12-30" <= d <= "2021-01-02" for d in days)
    assert sum(i.manifest.records_in_range for i in full.landings) == \
        sum("1990-01-01" <= d <= "2020-12-31" for d in days)


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


def test_next_link_back_to_a_page_already_read_stops_the_import(workspace, fhir_plugin, fhir_server):
    add_rest(workspace, fhir_server.base_url, types="Encounter")
    fhir_server.looping_pages = True
    with pytest.raises(InputError, match=r"/fhir/_page/[0-9a-f]+: the server's next link points back "
                                         r"to a page already read"):
        run_import(workspace, "ehr")
    pages = [path for _m, path, _q, _h in fhir_server.requests if path.startswith("/fhir/_page/")]
    assert len(pages) == 1
    assert raw_keys(workspace) == []


def test_unreachable_server_and_non_fhir_response(workspace, fhir_plugin, fhir_server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    add_rest(workspace, f"http://127.0.0.1:{port}/fhir", types="Patient")
    with pytest.raises(InputError, match=rf"127\.0\.0\.1:{port}/fhir/Patient\?_count=50: cannot reach the server"):
        run_import(workspace, "ehr")
    workspace.add_source("html", "fhir-rest", {"base_url": fhir_server.root + "/html",
                                               "resource_types": "Patient"}, {})
    with pytest.raises(InputError, match=r"/html/Patient.*not FHIR JSON \(text/html\)"):
        run_import(workspace, "html")
    assert raw_keys(workspace) == []


def test_server_is_asked_for_two_more_days_each_side_and_the_range_is_kept_locally(
        workspace, fhir_plugin, fast_retries):
    """The wider window reaches records whose written day is in range but whose instant is
    not (the project's server matches written days, so every day of the window comes back);
    reading the landings back keeps the exact range: written days for Encounter, days in the
    workspace zone for a type filtered on meta.lastUpdated (Basic)."""
    workspace.config["workspace"]["timezone"] = "Pacific/Kiritimati"  # UTC+14
    workspace.save()
    days = [dt.date(2022, 3, 1) + dt.timedelta(days=n) for n in range(-4, 3)] + \
           [dt.date(2022, 3, 31) + dt.timedelta(days=n) for n in range(-2, 5)]
    starts = [f"{d.isoformat()}T23:30:00-05:00" for d in days] + [f"{d.isoformat()}T01:00:00+14:00" for d in days]
    encounters = [{"resourceType": "Encounter", "id": f"e{n}", "status": "finished", "period": {"start": s},
                   "meta": {"versionId": "1", "lastUpdated": "2024-06-01T12:00:00Z"}}
                  for n, s in enumerate(starts)]
    updated = ["2022-02-26T09:00:00Z", "2022-02-27T09:59:59Z", "2022-02-28T09:59:59Z", "2022-02-28T10:00:00Z",
               "2022-03-15T00:00:00Z", "2022-03-31T09:59:59Z", "2022-03-31T10:00:00Z", "2022-04-01T12:00:00Z",
               "2022-04-02T00:00:00Z", "2022-04-03T00:00:00Z"]
    basics = [{"resourceType": "Basic", "id": f"b{n}", "code": {"text": "note"},
               "meta": {"versionId": "1", "lastUpdated": u}} for n, u in enumerate(updated)]
    rng = DateRange.parse("2022-03-01", "2022-03-31")
    with FhirTestServer({"Encounter": encounters, "Basic": basics}, token=TOKEN) as server:
        add_rest(workspace, server.base_url, types="Encounter,Basic")
        result = run_import(workspace, "ehr", rng)
        searches = {path: q for _m, path, q, _h in server.requests}
    assert searches["/fhir/Encounter"] == {"_count": ["50"], "date": ["ge2022-02-27", "le2022-04-02"]}
    assert searches["/fhir/Basic"] == {"_count": ["50"], "_lastUpdated": ["ge2022-02-27", "le2022-04-02"]}

    def landed(stream):
        return sum(i.manifest.records for i in result.landings if i.manifest.stream == stream)

    window = [e for e in encounters if "2022-02-27" <= e["period"]["start"][:10] <= "2022-04-02"]
    assert landed("Encounter") == len(window) > 0
    in_range = sorted(e["id"] for e in encounters if "2022-03-01" <= e["period"]["start"][:10] <= "2022-03-31")
    assert sorted(r["id"] for b in read_stream(workspace, "ehr", "Encounter") for r in b.to_pylist()) == in_range

    kiritimati = dt.timezone(dt.timedelta(hours=14))
    local_days = {b["id"]: dt.datetime.fromisoformat(b["meta"]["lastUpdated"].replace("Z", "+00:00"))
                  .astimezone(kiritimati).date() for b in basics}
    # the test server compares instants with the window's midnight UTC, as many servers do
    assert landed("Basic") == sum("2022-02-27" <= b["meta"]["lastUpdated"] <= "2022-04-02T00:00:00Z" for b in basics)
    expected = sorted(i for i, day in local_days.items() if rng.contains(day))
    assert expected == ["b3", "b4", "b5"]
    assert sorted(r["id"] for b in read_stream(workspace, "ehr", "Basic") for r in b.to_pylist()) == expected


def test_open_ends_stay_open_and_the_calendar_edges_do_not_overflow():
    connector = FhirRestConnector({"base_url": "http://127.0.0.1:9/fhir", "page_size": 10})

    def params(kind, start, end, since=None):
        request = FetchRequest("s", [kind], DateRange.parse(start, end), {})
        return connector.search_params(kind, request, since)

    assert params("Encounter", None, "2022-12-31") == [("_count", 10), ("date", "le2023-01-02")]
    assert params("Observation", "2022-01-01", None) == [("_count", 10), ("date", "ge2021-12-30")]
    assert params("Encounter", None, None) == [("_count", 10)]
    assert params("Condition", "0001-01-02", "9999-12-30") == [("_count", 10)]
    assert params("Basic", "2024-03-01", "2024-03-01", since="2024-06-01T12:00:00.000000Z") == [
        ("_count", 10), ("_lastUpdated", "ge2024-02-28"), ("_lastUpdated", "le2024-03-03"),
        ("_lastUpdated", "gt2024-06-01T11:50:00.000000Z")]
    assert params("Patient", "2024-03-01", "2024-03-31") == [("_count", 10)]


def test_a_write_the_server_commits_late_is_caught_by_the_overlap(workspace, fhir_plugin, fhir_server):
    """A transaction that began before the last import stamps its resource before that import's
    watermark but becomes visible after it: the next import still finds it, within
    ``lastupdated_overlap`` minutes; further back it is out of reach (as the README says)."""
    add_rest(workspace, fhir_server.base_url, types="Encounter")
    rng = DateRange.parse("1990-01-01", "2020-12-31")
    run_import(workspace, "ehr", rng)
    template = json.loads((SMART / "Encounter.000.ndjson").read_text("utf-8").splitlines()[0])

    def committed_late(ident: str, stamp: str) -> None:
        late = {**template, "id": ident, "period": {"start": "2015-05-05T10:00:00+00:00"},
                "meta": {"versionId": "1", "lastUpdated": stamp}}
        with fhir_server.lock:
            fhir_server.resources["Encounter"].append(late)

    committed_late("late-by-3-minutes", "2024-06-01T11:57:00Z")
    committed_late("late-by-an-hour", "2024-06-01T11:00:00Z")
    second = run_import(workspace, "ehr", rng)
    assert len(second.landings) == 1
    ids = {r["id"] for b in read_stream(workspace, "ehr", "Encounter") for r in b.to_pylist()}
    assert "late-by-3-minutes" in ids and "late-by-an-hour" not in ids
    assert run_import(workspace, "ehr", rng).landings == []


def test_the_overlap_is_a_setting():
    with pytest.raises(Exception, match="lastupdated_overlap"):
        FhirRestConnector({"base_url": "http://127.0.0.1:9/fhir", "lastupdated_overlap": "soon"})
    connector = FhirRestConnector({"base_url": "http://127.0.0.1:9/fhir", "lastupdated_overlap": 0})
    request = FetchRequest("s", ["Basic"], DateRange.parse(None, None), {})
    assert connector.search_params("Basic", request, "2024-06-01T12:00:00.000000Z")[-1] == \
        ("_lastUpdated", "gt2024-06-01T12:00:00.000000Z")
