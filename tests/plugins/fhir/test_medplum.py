"""The fhir-rest connector against a FHIR server written by others: Medplum's fhir-router with
its in-memory repository (see medplum_server.py).

Medplum compares instants, so a record written ``2022-12-31T23:30:00-05:00`` is not on
2022-12-31 for it, while Lithotse keeps the calendar day as written. The data below sits at
those edges, and every expectation is counted here in Python from what was seeded.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.errors import InputError
from lithotse_desktop.progress import Progress
from lithotse_desktop.raw import read_object, read_stream, run_import, stored_objects
from lithotse_desktop.raw.sources import make_connector
from lithotse_desktop.raw.verify import IntegrityChecks

from .conftest import TOKEN, raw_keys
from .medplum_server import MedplumServer

YEAR = DateRange.parse("2022-01-01", "2022-12-31")
WIDE = [("date", "ge2021-12-30"), ("date", "le2023-01-02")]
PAGE = 50

IN_RANGE_EDGES = [
    "2022-12-31T23:30:00-05:00", "2022-01-01T03:00:00+09:00", "2022-01-01T00:00:00+14:00",
    "2022-12-31T23:59:59-12:00", "2022-01-01T00:00:00Z", "2022-12-31T23:59:59.999Z",
    "2022-01-01T00:00:00", "2022-12-31T23:59:59", "2022-01-01", "2022-12-31", "2022", "2022-12",
]
OUTSIDE_EDGES = [
    "2021-12-31T23:30:00-05:00", "2023-01-01T03:00:00+09:00", "2023-01-01T00:00:00+14:00",
    "2021-12-31T23:59:59-12:00", "2021-12-31T23:59:59Z", "2023-01-01T00:00:00Z",
    "2021-12-31T23:59:59", "2023-01-01T00:00:00", "2021-12-31", "2023-01-01", "2021", "2023", "2021-12",
]
OFFSETS = ["-12:00", "-09:30", "-05:00", "-03:00", "Z", "+00:00", "+05:30", "+05:45", "+09:00",
           "+12:45", "+13:00", "+14:00", ""]
EDGE_DAYS = [dt.date(2021, 12, 29) + dt.timedelta(days=n) for n in range(6)] + \
            [dt.date(2022, 12, 29) + dt.timedelta(days=n) for n in range(6)]


def written_day(value: str) -> dt.date:
    """The calendar day written in a FHIR date or dateTime; a partial date takes its first day."""
    return dt.date.fromisoformat((value + "-01-01")[:10] if len(value) < 10 else value[:10])


def in_year(value: str) -> bool:
    return dt.date(2022, 1, 1) <= written_day(value) <= dt.date(2022, 12, 31)


def random_dates(rnd: random.Random, n: int, instants_only: bool = False) -> list[str]:
    """Dates around 2022, many within three days of its ends, in every form FHIR allows."""
    out = []
    for _ in range(n):
        if rnd.random() < 0.4:
            day = rnd.choice(EDGE_DAYS)
        else:
            day = dt.date(2021, 12, 20) + dt.timedelta(days=rnd.randrange(390))
        form = "instant" if instants_only else rnd.choices(
            ["instant", "date", "month", "year"], weights=[80, 14, 4, 2])[0]
        if form == "instant":
            clock = f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}"
            offset = rnd.choice(OFFSETS[:-1] if instants_only else OFFSETS)
            out.append(f"{day.isoformat()}T{clock}{offset}")
        else:
            out.append(day.isoformat()[:{"date": 10, "month": 7, "year": 4}[form]])
    return out


def encounter(start: str, status: str = "finished") -> dict:
    return {"resourceType": "Encounter", "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": start}}


def observation(when: str, how: str) -> dict:
    res = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
           "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    if how == "period":
        res["effectivePeriod"] = {"start": when}
    else:
        res["effectiveInstant" if how == "instant" else "effectiveDateTime"] = when
    return res


def observation_date(res: dict) -> str:
    return res.get("effectiveDateTime") or res.get("effectiveInstant") or res["effectivePeriod"]["start"]


def seed(server: MedplumServer, seed_value: int = 2022) -> dict[str, list[dict]]:
    """300 Encounters and 450 Observations; returns them as Medplum stored them.

    (Medplum's in-memory search reads every resource for each page, so a page costs about
    1.5 ms per stored resource: hundreds keep the tests quick and still span many pages.)
    """
    rnd = random.Random(seed_value)
    starts = IN_RANGE_EDGES + OUTSIDE_EDGES + random_dates(rnd, 275)
    encounters = [encounter(s, rnd.choice(["finished"] * 5 + ["in-progress", "planned"])) for s in starts]
    observations = [observation(d, "datetime") for d in IN_RANGE_EDGES + OUTSIDE_EDGES]
    observations += [observation(d, "instant") for d in random_dates(rnd, 100, instants_only=True)]
    observations += [observation(d, "period") for d in random_dates(rnd, 100)]
    observations += [observation(d, "datetime") for d in random_dates(rnd, 225)]
    return {"Encounter": server.post_batch(encounters), "Observation": server.post_batch(observations)}


def date_of(res: dict) -> str:
    return res["period"]["start"] if res["resourceType"] == "Encounter" else observation_date(res)


def add_source(workspace, server: MedplumServer, types="Encounter,Observation", token=TOKEN, **settings) -> None:
    workspace.add_source("mp", "fhir-rest", {"base_url": server.base_url, "resource_types": types,
                                             "page_size": PAGE, **settings}, {"token": token})


def landings_of(result, stream: str):
    return [i.manifest for i in result.landings if i.manifest.stream == stream]


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def stream_ids(workspace, stream: str) -> list[str]:
    return [r["id"] for b in read_stream(workspace, "mp", stream) for r in b.to_pylist()]


def landed_ids(workspace, manifests) -> set[str]:
    """Ids of the records these landings hold in their range, as derivatives read them."""
    connector = make_connector(workspace, "mp")
    with IntegrityChecks() as checks:
        return {r["id"] for stored in stored_objects(workspace, manifests)
                for b in read_object(workspace, stored, connector, checks) for r in b.to_pylist()}


def utc_text(instant: str) -> str:
    """A FHIR instant the way the connector writes its watermark."""
    when = dt.datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_year_import_lands_every_record_of_its_calendar_days(workspace, fhir_plugin, medplum):
    seeded = seed(medplum)
    edges = len(IN_RANGE_EDGES)
    edge_ids = {kind: {date_of(r): r["id"] for r in seeded[kind][:edges]} for kind in seeded}
    outside_ids = {kind: {r["id"] for r in seeded[kind][edges:edges + len(OUTSIDE_EDGES)]} for kind in seeded}
    # asked for the range itself, Medplum leaves out records that are in it by their written day
    narrow = {kind: {r["id"] for r in medplum.search(kind, [("date", "ge2022-01-01"), ("date", "le2022-12-31")])}
              for kind in seeded}
    assert edge_ids["Encounter"]["2022-12-31T23:30:00-05:00"] not in narrow["Encounter"]
    assert edge_ids["Observation"]["2022-12-31T23:30:00-05:00"] not in narrow["Observation"]
    assert edge_ids["Observation"]["2022-01-01T03:00:00+09:00"] not in narrow["Observation"]

    add_source(workspace, medplum)
    result = run_import(workspace, "mp", YEAR)

    for kind in ("Encounter", "Observation"):
        expected = sorted(r["id"] for r in seeded[kind] if in_year(date_of(r)))
        got = stream_ids(workspace, kind)
        assert sorted(got) == expected
        assert set(edge_ids[kind].values()) <= set(got)
        assert not outside_ids[kind] & set(got)

        served = medplum.search(kind, WIDE)
        pages = landings_of(result, kind)
        first = query_of(pages[0].meta["url"])
        assert (first["date"], first["_count"]) == (["ge2021-12-30", "le2023-01-02"], [str(PAGE)])
        assert len(pages) == -(-len(served) // PAGE) > 1
        assert [query_of(m.meta["url"]).get("_offset") for m in pages[1:]] == \
            [[str(PAGE * n)] for n in range(1, len(pages))]
        assert len({m.sha256 for m in pages}) == len(pages)
        assert sum(m.records for m in pages) == len(served)
        assert sum(m.records_in_range for m in pages) == len(expected)
        assert sum(m.records_out_of_range for m in pages) == len(served) - len(expected) > 0


def test_incremental_import_lands_only_what_changed(workspace, fhir_plugin, medplum):
    seeded = seed(medplum)["Encounter"]
    # no look-back: everything here was written seconds ago, inside any overlap window
    add_source(workspace, medplum, types="Encounter", lastupdated_overlap=0)
    first = run_import(workspace, "mp", YEAR)
    watermark = first.landings[-1].manifest.cursor["ranges"][0]["since"]
    assert watermark == max(utc_text(r["meta"]["lastUpdated"]) for r in seeded)
    assert all(i.manifest.cursor is None for i in first.landings[:-1])
    assert run_import(workspace, "mp", YEAR).landings == []

    rnd = random.Random(7)
    added = medplum.post_batch([encounter(s) for s in IN_RANGE_EDGES + OUTSIDE_EDGES + random_dates(rnd, 60)])
    chosen = [r for r in seeded if in_year(date_of(r)) and r["status"] == "finished"][:5]
    updated = [medplum.put({**r, "status": "cancelled"}) for r in chosen]
    third = run_import(workspace, "mp", YEAR)

    pages = [i.manifest for i in third.landings]
    assert query_of(pages[0].meta["url"])["_lastUpdated"] == [f"gt{watermark}"]
    served = {r["id"] for r in medplum.search("Encounter", [*WIDE, ("_lastUpdated", f"gt{watermark}")])}
    fresh_in_year = {r["id"] for r in added if in_year(date_of(r))} | {r["id"] for r in updated}
    assert fresh_in_year <= served <= {r["id"] for r in added + updated}
    assert len(pages) == -(-len(served) // PAGE) > 1
    assert sum(m.records for m in pages) == len(served)
    assert sum(m.records_in_range for m in pages) == len(fresh_in_year)
    assert landed_ids(workspace, pages) == fresh_in_year
    assert set(stream_ids(workspace, "Encounter")) == {r["id"] for r in seeded + added if in_year(date_of(r))}


STATUS_VIEW = {"name": "encounter_status", "kind": "view", "input": {"source": "mp", "stream": "Encounter"},
               "view": {"resource": "Encounter", "select": [{"column": [
                   {"name": "id", "path": "id"}, {"name": "status", "path": "status"}]}]}}
BY_STATUS = {"name": "encounters_by_status", "kind": "aggregate", "input": {"derivative": "encounter_status"},
             "grain": "none", "group_by": ["status"], "measures": [{"fn": "count", "as": "n"}],
             "suppress_below": 0}


def test_updated_encounters_show_their_new_version_in_derivatives(workspace, fhir_plugin, medplum):
    """Medplum's versionIds are UUIDs: the newest version is the one with the latest
    lastUpdated. (Needs the dedupe order of lithotse_desktop/derive/inputs.py that ranks
    non-numeric version ids by meta.lastUpdated.)"""
    seeded = seed(medplum)["Encounter"]
    add_source(workspace, medplum, types="Encounter")
    run_import(workspace, "mp", YEAR)
    add_spec(workspace, STATUS_VIEW)
    add_spec(workspace, BY_STATUS)
    build(workspace, "encounter_status")
    build(workspace, "encounters_by_status")

    chosen = [r for r in seeded if in_year(date_of(r)) and r["status"] == "finished"][:5]
    updated = [medplum.put({**r, "status": "cancelled"}) for r in chosen]
    assert all(u["meta"]["versionId"] != r["meta"]["versionId"] for u, r in zip(updated, chosen, strict=True))
    # the overlap window holds every version written seconds ago: the pages holding the 5 new
    # versions land whole, old versions beside them, and the newest version still wins below
    landings = [i.manifest for i in run_import(workspace, "mp", YEAR).landings]
    assert landings and {r["id"] for r in updated} <= landed_ids(workspace, landings)
    assert sum(m.records for m in landings) >= 5

    cancelled = {r["id"] for r in updated}
    expected: dict[str, int] = {}
    for res in seeded:
        if in_year(date_of(res)):
            status = "cancelled" if res["id"] in cancelled else res["status"]
            expected[status] = expected.get(status, 0) + 1
    for full in (False, True, True):
        build(workspace, "encounter_status", full=full)
        build(workspace, "encounters_by_status", full=full)
        rows = read_table(workspace, "encounter_status")[1].to_pylist()
        assert len(rows) == sum(expected.values())
        assert {r["id"] for r in rows if r["status"] == "cancelled"} == cancelled
        counts = {r["status"]: r["n"] for r in read_table(workspace, "encounters_by_status")[1].to_pylist()}
        assert counts == expected


def test_wrong_token_is_refused_and_nothing_lands(workspace, fhir_plugin, medplum):
    seed(medplum)
    add_source(workspace, medplum, token="not-the-token-4711")
    with pytest.raises(InputError) as caught:
        run_import(workspace, "mp", YEAR)
    message = str(caught.value)
    assert f"{medplum.base_url}/Encounter?" in message
    assert "HTTP 401" in message and "refused the access token" in message
    assert "not-the-token-4711" not in message
    assert raw_keys(workspace) == []


def test_server_stopping_mid_import_names_the_url_and_lands_nothing(workspace, fhir_plugin, fast_retries):
    with MedplumServer(token=TOKEN) as server:
        seed(server)
        add_source(workspace, server)

        def stop_before_page_3(state) -> None:
            if state.message == "Encounter: page 3":
                server.stop()

        base = re.escape(server.base_url)
        with pytest.raises(InputError, match=rf"^{base}/Encounter\?.*_offset=100: "
                                             r"cannot reach the server \(ConnectionError"):
            run_import(workspace, "mp", YEAR, progress=Progress(callback=stop_before_page_3))
        assert raw_keys(workspace) == []

        with pytest.raises(InputError, match=rf"^{base}/Encounter\?_count=50&date=ge2021-12-30"
                                             r"&date=le2023-01-02: cannot reach the server"):
            run_import(workspace, "mp", YEAR)
        assert raw_keys(workspace) == []
