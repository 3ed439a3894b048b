"""Every record counted once, whatever sequence of ranges brought it in; newest versions win.

A record is what its connector's key names, otherwise its object and position in the object:
an object landed for several ranges is read once, and a changed file is a new object.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections import Counter

import duckdb
import openpyxl
import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.inputs import NUMERIC_VERSIONS, dedupe_query, repeated_dedupe
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.workspace import Workspace
from tests.support import keyless_connector


@pytest.fixture(autouse=True)
def plugins():
    """The installed first-party plugins plus a third-party connector that declares no key."""
    reset_plugin_manager()
    get_plugin_manager().register(keyless_connector, "tally-test")
    yield
    reset_plugin_manager()


def monthly(name: str, source: str, stream: str, date_field: str, **extra) -> dict:
    return {"name": name, "kind": "aggregate", "input": {"source": source, "stream": stream},
            "date_field": date_field, "grain": "month", "measures": [{"fn": "count", "as": "n"}],
            "suppress_below": 0, **extra}


def counts(ws, name: str) -> dict[str, int]:
    return {r["period"].isoformat(): r["n"] for r in read_table(ws, name)[1].to_pylist()}


def shown(cli, name: str) -> dict[str, int]:
    return {r["period"]: r["n"] for r in json.loads(cli("derive", "show", name, "--json").output)["rows"]}


# --- the scenario: a narrow range, then a wider one ----------------------------------

def encounters_csv(path, per_month: int = 65) -> None:
    lines = ["encounter_id,patient_id,admit_date,department"]
    n = 0
    for month in (1, 2, 3, 4, 5):
        for i in range(per_month):
            n += 1
            lines.append(f"E{n},P{n % 17},2024-{month:02d}-{1 + i % 28:02d},dept{i % 3}")
    path.write_text("\n".join(lines) + "\n")


def test_csv_without_key_narrow_then_wider_range_counts_each_row_once(cli, workspace, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    encounters_csv(folder / "encounters.csv")
    cli("source", "add", "ehr", "--connector", "csv", "--set", f"path={folder}",
        "--set", "date_column=admit_date")
    spec = tmp_path / "visits.json"
    spec.write_text(json.dumps(monthly("visits", "ehr", "encounters", "admit_date")))
    cli("derive", "add", "--file", str(spec))

    cli("import", "ehr", "--from", "2024-03-01", "--to", "2024-04-30")
    assert shown(cli, "visits") == {"2024-03-01": 65, "2024-04-01": 65}
    cli("import", "ehr", "--from", "2024-02-01", "--to", "2024-04-30")
    expected = {"2024-02-01": 65, "2024-03-01": 65, "2024-04-01": 65}
    assert shown(cli, "visits") == expected, "March and April must not be doubled"
    version = Catalog(Workspace.open(workspace.root)).current("visits")
    assert version.stats["recomputed_periods"] == ["2024-02-01"], "only February's rows are new"
    assert "built version" in cli("derive", "build", "visits", "--full").output
    assert shown(cli, "visits") == expected
    assert sum(b.num_rows for b in read_stream(Workspace.open(workspace.root), "ehr", "encounters")) == 3 * 65
    # a --full import of everything adds January and May, still once each
    cli("import", "ehr", "--full")
    assert shown(cli, "visits") == {f"2024-0{m}-01": 65 for m in range(1, 6)}


def test_third_party_connector_without_key_counts_each_line_once(workspace, tmp_path):
    folder = tmp_path / "lines"
    folder.mkdir()
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(120)]
    (folder / "a.txt").write_text("".join(f"{d},1\n" for d in days))
    workspace.add_source("t", "tally", {"path": str(folder)}, {})
    add_spec(workspace, monthly("m", "t", "values", "day"))
    for start, end in [("2024-03-01", "2024-04-30"), ("2024-02-01", "2024-04-30"),
                       ("2024-02-15", "2024-03-15"), ("2024-01-20", "2024-02-10")]:
        run_import(workspace, "t", DateRange.parse(start, end), full=True)
        build(workspace, "m")
    expected = Counter(f"{d:%Y-%m}-01" for d in days if dt.date(2024, 1, 20) <= d <= dt.date(2024, 4, 30))
    assert counts(workspace, "m") == dict(expected)
    build(workspace, "m", full=True)
    assert counts(workspace, "m") == dict(expected)


def test_sql_reading_a_keyless_input_twice_sees_every_record_each_time(workspace, tmp_path):
    """A self-join and a subquery scan the input twice; a keyless stream is read from its objects
    as they stream in, so it must be kept for the second scan rather than found used up."""
    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1,a\n2024-01-02,2,a\n2024-01-03,5,b\n")
    (folder / "b.txt").write_text("2024-01-04,7,b\n")
    workspace.add_source("t", "tally", {"path": str(folder)}, {})
    run_import(workspace, "t")
    add_spec(workspace, {"name": "pairs", "kind": "sql", "inputs": {"v": {"source": "t", "stream": "values"}},
                         "sql": "SELECT l.grp, count(*) AS pairs FROM v AS l JOIN v AS r ON l.grp = r.grp "
                                "GROUP BY l.grp ORDER BY l.grp"})
    add_spec(workspace, {"name": "above", "kind": "sql", "inputs": {"v": {"source": "t", "stream": "values"}},
                         "sql": "SELECT value FROM v WHERE value > (SELECT avg(value) FROM v) ORDER BY value"})
    build(workspace, "pairs")
    build(workspace, "above")
    assert read_table(workspace, "pairs")[1].to_pylist() == [{"grp": "a", "pairs": 4}, {"grp": "b", "pairs": 4}]
    assert read_table(workspace, "above")[1].to_pylist() == [{"value": 5}, {"value": 7}]


# --- a changed spreadsheet is a new object: keys decide whether its rows are new records ---------

def visits_book(path, rows: list[tuple[dt.date, str]]) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Visits"
    sheet.append(["Visit Date", "Visit", "Patient"])
    for day, visit in rows:
        sheet.append([day, visit, f"p-{visit}"])
    book.save(path)


def test_changed_workbook_keyless_counts_both_objects_keyed_counts_records(workspace, tmp_path):
    book = tmp_path / "visits.xlsx"
    first = [(dt.date(2024, 1, 1 + i), f"v{i}") for i in range(10)] + \
            [(dt.date(2024, 2, 1 + i), f"w{i}") for i in range(10)]
    visits_book(book, first)
    workspace.add_source("plain", "spreadsheet", {"path": str(book)}, {})
    workspace.add_source("keyed", "spreadsheet", {"path": str(book), "key": "Visit"}, {})
    for source in ("plain", "keyed"):
        add_spec(workspace, monthly(source, source, "Visits", "Visit Date"))
    quarter = DateRange.parse("2024-01-01", "2024-03-31")
    for source in ("plain", "keyed"):
        run_import(workspace, source, quarter)
        build(workspace, source)
    assert counts(workspace, "plain") == counts(workspace, "keyed") == {"2024-01-01": 10, "2024-02-01": 10}

    # five March visits appended: the file is new bytes, a new object
    second = first + [(dt.date(2024, 3, 1 + i), f"x{i}") for i in range(5)]
    visits_book(book, second)
    os.utime(book, ns=(2 * 10**18, 2 * 10**18))
    for source in ("plain", "keyed"):
        [landing] = run_import(workspace, source, quarter).landings
        assert landing.manifest.records == 25
        build(workspace, source)
    # without a key a row is (object, position): the old object's 20 rows and the new one's 25
    assert counts(workspace, "plain") == {"2024-01-01": 20, "2024-02-01": 20, "2024-03-01": 5}
    # with a key the same visit in both files is one record
    assert counts(workspace, "keyed") == {"2024-01-01": 10, "2024-02-01": 10, "2024-03-01": 5}
    # a wider range over the unchanged new file adds nothing already counted
    for source in ("plain", "keyed"):
        run_import(workspace, source, DateRange.parse("2023-12-01", "2024-03-31"))
        build(workspace, source)
    assert counts(workspace, "plain") == {"2024-01-01": 20, "2024-02-01": 20, "2024-03-01": 5}
    assert counts(workspace, "keyed") == {"2024-01-01": 10, "2024-02-01": 10, "2024-03-01": 5}
    for source in ("plain", "keyed"):
        before = counts(workspace, source)
        build(workspace, source, full=True)
        assert counts(workspace, source) == before


# --- newest version: opaque version ids ----------------------------------------------------------

def encounter(rid: str, status: str, version: str, updated: str) -> str:
    return json.dumps({"resourceType": "Encounter", "id": rid, "status": status,
                       "meta": {"versionId": version, "lastUpdated": updated},
                       "class": {"code": "AMB"}, "period": {"start": "2024-05-01T09:00:00Z"}})


STATUS_VIEW = {"name": "status", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
               "view": {"resource": "Encounter", "select": [{"column": [
                   {"name": "rid", "path": "id"}, {"name": "status", "path": "status"}]}]}}


def test_newest_version_by_last_updated_when_version_ids_are_opaque(workspace, tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    ids = [f"enc-{i}" for i in range(5)]
    older, newer = {}, {}
    for rid in ids:
        # text order of the UUIDs says the older version is newer
        a, b = sorted(str(uuid.uuid4()) for _ in range(2))
        older[rid], newer[rid] = b, a
    # the update (cancelled) lands first; a stale snapshot of the earlier versions lands after it
    (folder / "update.ndjson").write_text("\n".join(
        encounter(r, "cancelled", newer[r], "2024-06-02T08:00:00.5Z") for r in ids) + "\n")
    workspace.add_source("fhir", "fhir-files", {"path": str(folder), "resource_types": "Encounter"}, {})
    run_import(workspace, "fhir")
    (folder / "snapshot.ndjson").write_text("\n".join(
        encounter(r, "in-progress", older[r], "2024-06-02T08:00:00Z") for r in ids) + "\n")
    run_import(workspace, "fhir")
    # numeric version ids: the largest number wins, however the text or the times compare
    (folder / "numeric.ndjson").write_text("\n".join([
        encounter("num-1", "finished", "9", "2024-06-05T00:00:00Z"),
        encounter("num-1", "cancelled", "10", "2024-06-04T00:00:00Z"),
        encounter("mixed-1", "cancelled", "7", "2024-06-05T00:00:00Z"),
        encounter("mixed-1", "finished", "a1b2", "2024-06-04T00:00:00Z")]) + "\n")
    run_import(workspace, "fhir")
    add_spec(workspace, STATUS_VIEW)
    expected = {**{rid: "cancelled" for rid in ids}, "num-1": "cancelled", "mixed-1": "cancelled"}
    for _ in range(3):
        build(workspace, "status", full=True)
        got = {r["rid"]: r["status"] for r in read_table(workspace, "status")[1].to_pylist()}
        assert got == expected


def test_a_view_shows_nothing_of_a_record_whose_newest_version_it_filters_out(workspace, tmp_path):
    """The newest version is chosen before the view's where and forEach: a record whose newest
    version the view leaves out (or gives no rows) is not shown by an older version instead."""
    folder = tmp_path / "fhir"
    folder.mkdir()

    def versioned(rid: str, status: str, version: str, locations: list[str]) -> str:
        data = json.loads(encounter(rid, status, version, f"2024-06-0{version}T08:00:00Z"))
        data["location"] = [{"location": {"display": name}} for name in locations]
        return json.dumps(data)

    (folder / "a.ndjson").write_text("\n".join([
        versioned("kept", "finished", "1", ["ward 1"]), versioned("kept", "finished", "2", ["ward 2", "ward 3"]),
        versioned("dropped", "finished", "1", ["ward 1"]), versioned("dropped", "cancelled", "2", ["ward 4"]),
        versioned("emptied", "finished", "1", ["ward 1"]), versioned("emptied", "finished", "2", [])]) + "\n")
    workspace.add_source("fhir", "fhir-files", {"path": str(folder), "resource_types": "Encounter"}, {})
    run_import(workspace, "fhir")
    add_spec(workspace, {"name": "wards", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
                         "view": {"resource": "Encounter", "where": [{"path": "status = 'finished'"}],
                                  "select": [{"column": [{"name": "rid", "path": "id"}]},
                                             {"forEach": "location",
                                              "column": [{"name": "ward", "path": "location.display"}]}]}})
    build(workspace, "wards")
    rows = sorted((r["rid"], r["ward"]) for r in read_table(workspace, "wards")[1].to_pylist())
    assert rows == [("kept", "ward 2"), ("kept", "ward 3")]


# --- the connector's name and version are part of a version -------------------------------------

def test_a_changed_connector_version_makes_the_derivative_stale(workspace, tmp_path, monkeypatch):
    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1\n2024-02-01,2\n")
    workspace.add_source("t", "tally", {"path": str(folder)}, {})
    run_import(workspace, "t")
    add_spec(workspace, monthly("m", "t", "values", "day"))
    first = build(workspace, "m")
    assert build(workspace, "m").status == "up to date"
    version = Catalog(workspace).current("m")
    assert version.inputs["input"]["connector"] == "tally"
    assert version.inputs["input"]["connector_version"] == "2.3"
    monkeypatch.setattr(keyless_connector.TallyConnector, "version", "2.4")
    second = build(workspace, "m")
    assert second.status == "built", "a new connector version rebuilds in full, not incrementally"
    assert second.version != first.version
    assert Catalog(workspace).current("m").inputs["input"]["connector_version"] == "2.4"
    assert build(workspace, "m").status == "up to date"


def test_the_same_object_in_two_raw_stores_is_read_once(workspace, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text("2024-01-01,1\n2024-01-02,2\n2024-02-01,3\n")
    team = {"url": str(tmp_path / "team-data")}
    mate = Workspace.create(tmp_path / "mate")
    mate.config["stores"]["team"] = team
    mate.config["tiers"]["raw"] = "team"
    mate.save()
    mate = Workspace.open(mate.root)
    mate.add_source("t", "tally", {"path": str(inbox)}, {})
    run_import(mate, "t", DateRange.parse("2024-01-01", "2024-01-31"))

    workspace.config["stores"]["team"] = team
    workspace.config["tiers"]["raw_read"] = ["team"]
    workspace.save()
    ws = Workspace.open(workspace.root)
    ws.add_source("t", "tally", {"path": str(inbox)}, {})
    [mine] = run_import(ws, "t", full=True).landings
    assert ws.store("raw").exists(mine.manifest.object_key), "landed in this workspace's own store too"
    assert sorted(r["value"] for b in read_stream(ws, "t", "values") for r in b.to_pylist()) == [1, 2, 3]
    add_spec(ws, monthly("m", "t", "values", "day"))
    build(ws, "m")
    assert counts(ws, "m") == {"2024-01-01": 2, "2024-02-01": 1}


def test_a_key_seen_once_whose_hash_a_repeated_key_shares_stays_newest():
    """Repeated keys are found by their hash: a key seen once that falls among them (its hash
    shared with a repeated key) is ranked alone among its versions, so it stays newest, and the
    newest versions are those of the plain newest-version query over every version."""
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT * FROM (VALUES ('a', '1', 0, 0), ('b', '7', 0, 1), ('a', '2', 0, 2), "
                "('c', 'x', 0, 3), (NULL, '1', 0, 4), (NULL, '3', 0, 5)) t(id, \"versionId\", landing, n)")
    keys_sql, rows_sql, ranked = repeated_dedupe("v", ["id"], ["id", "versionId"], ("landing", "n"),
                                                 kept=["id", "versionId", "n", NUMERIC_VERSIONS],
                                                 keys_table="k", rows_table="r")
    con.execute(f"CREATE TABLE k AS {keys_sql}")
    assert sorted(h for (h,) in con.execute("SELECT * FROM k").fetchall()) == sorted(
        h for (h,) in con.execute("SELECT DISTINCT hash(id) FROM v WHERE id IS DISTINCT FROM 'b' "
                                  "AND id IS DISTINCT FROM 'c'").fetchall())
    con.execute("INSERT INTO k SELECT hash('b')")  # as if 'b' shared its hash with a repeated key
    con.execute(f"CREATE TABLE r AS {rows_sql}")
    assert sorted(n for (n,) in con.execute("SELECT n FROM r").fetchall()) == [0, 1, 2, 4, 5]
    winners = {n for (n,) in con.execute(f"SELECT n FROM ({ranked})").fetchall()}
    every = {n for (n,) in con.execute(
        f"SELECT n FROM ({dedupe_query('v', ['id'], ['id', 'versionId'], ('landing', 'n'))})").fetchall()}
    assert winners | {3} == every == {1, 2, 3, 5}
