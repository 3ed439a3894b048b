"""A view after an import of a few new and updated records is built from its previous version and
the new objects only, and gives exactly the table (rows, order, version id and bytes) a full build
gives; where that cannot be exact it falls back to a full build."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive import build, recordindex, rowstream
from lithotse_desktop.derive.build import build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.recordindex import kept_files
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.jobs import import_and_build
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.workspace import Workspace

VIEWS = [
    {"name": "visits", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
     "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
              "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                     {"name": "status", "path": "status"},
                                     {"name": "start", "path": "period.start"}]}]}},
    {"name": "visit_types", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
     "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
              "select": [{"column": [{"name": "id", "path": "getResourceKey()"}]},
                         {"forEach": "type.coding", "column": [{"name": "code", "path": "code"}]}]}},
]


@pytest.fixture(autouse=True)
def plugins():
    reset_plugin_manager()
    get_plugin_manager()
    yield
    reset_plugin_manager()


def encounter(i: int, version: str | None = "1", status: str = "finished", updated: str | None = None,
              codes: int = 2) -> dict:
    resource: dict = {"resourceType": "Encounter", "id": f"e{i}", "status": status,
                      "period": {"start": f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
                                 "end": f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}T11:00:00Z"},
                      "subject": {"reference": f"Patient/p{i % 40}"},
                      "type": [{"coding": [{"code": f"c{i % 5}-{k}"} for k in range(codes)]}]}
    meta = {k: v for k, v in (("versionId", version), ("lastUpdated", updated)) if v is not None}
    if meta:
        resource["meta"] = meta
    return resource


def write(path: Path, resources: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), "utf-8")


def tables(ws: Workspace) -> dict[str, tuple[str, list[dict], list[str]]]:
    catalog = Catalog(ws)
    out = {}
    for spec in VIEWS:
        version = catalog.current(spec["name"])
        out[spec["name"]] = (version.version, catalog.read(version).to_pylist(),
                             sorted(p["key"] for p in version.partitions.values()))
    return out


def build_both(ws: Workspace) -> tuple[dict[str, str], dict, dict]:
    """Build incrementally, then fully; (statuses of the first, tables after each)."""
    statuses = {r.name: r.status for r in build_all(ws, [s["name"] for s in VIEWS])}
    incremental = tables(ws)
    build_all(ws, [s["name"] for s in VIEWS], full=True)
    return statuses, incremental, tables(ws)


@pytest.fixture(autouse=True, params=["one part", "parts of 64 records"])
def part_size(request, monkeypatch):
    """Every test twice: with views in one part (the default size) and in parts of 64 records,
    so updates that rewrite some parts and keep others are checked against full builds too."""
    if request.param != "one part":
        monkeypatch.setattr(rowstream, "CHUNK_RECORDS", 64)
    return request.param


@pytest.fixture
def fhir_ws(workspace: Workspace, tmp_path: Path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    ws = workspace
    ws.add_source("fhir", "fhir-files", {"path": str(folder), "resource_types": "Encounter"}, {})
    first = [encounter(i) for i in range(300)]
    first += [encounter(i, "2", status="cancelled") for i in range(0, 30, 3)]  # second versions in the same file
    first += [encounter(i, None, updated=f"2021-0{1 + i % 9}-01T00:00:00Z") for i in range(300, 320)]
    first += [encounter(i, "abc", updated="2021-05-01T00:00:00Z") for i in range(320, 330)]
    write(folder / "Encounter.000.ndjson", first)
    run_import(ws, "fhir")
    for spec in VIEWS:
        add_spec(ws, spec)
    statuses = {r.name: r.status for r in build_all(ws, [s["name"] for s in VIEWS])}
    assert set(statuses.values()) == {"built"}
    return ws, folder


def test_new_and_updated_records_are_added_to_the_previous_version_exactly(fhir_ws):
    ws, folder = fhir_ws
    added = [encounter(i) for i in range(1000, 1003)]
    added += [encounter(5, "7", status="entered-in-error", codes=3)]  # newer: replaces e5
    added += [encounter(3, "1", status="planned")]  # older than e3's version 2: e3 stays cancelled
    added += [encounter(6, "2", codes=0)]  # newer, with no type rows at all
    added += [encounter(305, None, status="arrived", updated="2022-01-01T00:00:00Z")]  # later lastUpdated
    added += [encounter(321, "abd", updated="2020-01-01T00:00:00Z")]  # earlier: e321 stays
    write(folder / "Encounter.001.ndjson", added)
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses == {"visits": "incremental", "visit_types": "incremental"}
    assert incremental == full  # version ids, rows in order, and the parts' bytes
    rows = {r["id"]: r for r in incremental["visits"][1]}
    assert len(rows) == 333
    assert rows["e5"]["status"] == "entered-in-error"
    assert rows["e3"]["status"] == "cancelled"
    assert rows["e305"]["status"] == "arrived"
    assert rows["e321"]["status"] == "finished"
    assert not [r for r in incremental["visit_types"][1] if r["id"] == "e6"]
    assert sum(r["id"] == "e5" for r in incremental["visit_types"][1]) == 3

    write(folder / "Encounter.002.ndjson", [encounter(7, "3", status="onleave"), encounter(2000)])
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses == {"visits": "incremental", "visit_types": "incremental"}, "again, from an incremental one"
    assert incremental == full


def test_a_part_failing_leaves_nothing_staged_or_published(fhir_ws, monkeypatch):
    """A full build writes its parts side by side: when one fails, the parts written and being
    written are removed, the error is the build's, and the previous version stays current."""
    ws, _ = fhir_ws
    before = tables(ws)
    calls: list[int] = []
    real = rowstream._without_dropped

    def failing(table, dropped):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("no space left on device")
        return real(table, dropped)

    monkeypatch.setattr(rowstream, "_without_dropped", failing)
    with pytest.raises(OSError, match="no space left"):
        build_all(ws, ["visits"], full=True)
    assert tables(ws) == before
    assert not [p for p in (ws.local_dir / "build-staging").rglob("*") if p.is_file()]


def test_an_update_writes_only_the_parts_it_changes(fhir_ws, part_size):
    ws, folder = fhir_ws
    catalog = Catalog(ws)

    def parts() -> dict[str, str]:
        version = catalog.current("visits")
        assert [c["label"] for c in version.stats["record_index"]["chunks"]] == sorted(version.partitions)
        return {label: part["key"] for label, part in version.partitions.items()}

    first = parts()
    if part_size == "one part":  # 340 records fit one part, which every update writes again
        write(folder / "Encounter.001.ndjson", [encounter(1000)])
        run_import(ws, "fhir")
        statuses, incremental, full = build_both(ws)
        assert statuses["visits"] == "incremental" and incremental == full
        assert list(first) == ["all"] and list(parts()) == ["all"] and parts() != first
        return
    assert sorted(first) == ["all", "all-000001", "all-000002", "all-000003", "all-000004", "all-000005"]
    write(folder / "Encounter.001.ndjson", [encounter(i) for i in range(1000, 1100)])
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses["visits"] == "incremental" and incremental == full
    second = parts()
    assert {k: second[k] for k in ("all", "all-000001", "all-000002", "all-000003", "all-000004")} == \
        {k: first[k] for k in ("all", "all-000001", "all-000002", "all-000003", "all-000004")}
    assert second["all-000005"] != first["all-000005"] and len(second) == 7, "the last part and a new one"
    write(folder / "Encounter.002.ndjson", [encounter(70, "5", status="onleave")])
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses["visits"] == "incremental" and incremental == full
    third = parts()
    assert third["all-000001"] != second["all-000001"], "e70 was in the second part"
    assert {k: v for k, v in third.items() if k not in ("all-000001", "all-000006")} == \
        {k: v for k, v in second.items() if k not in ("all-000001", "all-000006")}
    assert {r["id"]: r["status"] for r in incremental["visits"][1]}["e70"] == "onleave"


def test_parts_of_another_size_are_written_again_whole(fhir_ws, monkeypatch):
    ws, folder = fhir_ws
    monkeypatch.setattr(rowstream, "CHUNK_RECORDS", rowstream.CHUNK_RECORDS * 2)
    write(folder / "Encounter.001.ndjson", [encounter(4000)])
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses == {"visits": "built", "visit_types": "built"}
    assert incremental == full


def test_a_version_id_that_is_no_longer_a_number_falls_back_to_a_full_build(fhir_ws):
    ws, folder = fhir_ws
    # e0 had versions 1 and 2 (numbers: 2 won); "zz" makes the order go by lastUpdated, where
    # version 1 (none) and 2 (none) and zz (none) fall to the landing order: a full build decides
    write(folder / "Encounter.001.ndjson", [encounter(0, "zz", status="planned")])
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses == {"visits": "built", "visit_types": "built"}
    assert incremental == full


def test_an_object_landed_again_for_another_range_builds_everything(fhir_ws):
    ws, folder = fhir_ws
    # the same bytes landed for another range: which landing a row belongs to may change
    run_import(ws, "fhir", DateRange.parse("2020-03-01", None), full=True)
    write(folder / "Encounter.001.ndjson", [encounter(4000)])
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses == {"visits": "built", "visit_types": "built"}
    assert incremental == full


def test_a_changed_spec_builds_everything(fhir_ws):
    ws, folder = fhir_ws
    write(folder / "Encounter.001.ndjson", [encounter(4000)])
    run_import(ws, "fhir")
    changed = json.loads(json.dumps(VIEWS[0]))
    changed["view"]["select"][0]["column"][1]["name"] = "state"
    add_spec(ws, changed, replace=True)
    assert [r.status for r in build_all(ws, ["visits"])] == ["built"]
    assert "state" in Catalog(ws).current("visits").columns


def test_old_record_indexes_are_pruned(fhir_ws, part_size):
    ws, folder = fhir_ws
    for n in range(1, 5):
        write(folder / f"Encounter.{n:03d}.ndjson", [encounter(5000 + n)])
        run_import(ws, "fhir")
        build_all(ws, ["visits"])
    catalog = Catalog(ws)
    kept = {c[kind] for v in catalog.versions("visits") for c in v.stats["record_index"]["chunks"]
            for kind in ("row_ids", "records")}
    stored = {info.key for info in catalog.store_of("restricted").list("restricted/visits/record-index/")}
    assert stored == kept
    if part_size == "one part":
        assert len(kept) == 2 * len(catalog.versions("visits"))


# --- aggregates: the kept input ----------------------------------------------------------------

AGGREGATES = [
    {"name": "per_month", "kind": "aggregate", "input": {"source": "fhir", "stream": "Encounter"},
     "date_field": "date", "grain": "month", "suppress_below": 0,
     "measures": [{"fn": "count", "as": "n"}, {"fn": "count_distinct", "column": "patient_id", "as": "people"}]},
    {"name": "per_quarter", "kind": "aggregate", "input": {"source": "fhir", "stream": "Encounter"},
     "date_field": "period_end", "grain": "quarter", "suppress_below": 3,
     "measures": [{"fn": "count", "as": "n"}]},
]


def aggregate_tables(ws: Workspace) -> dict:
    catalog = Catalog(ws)
    out = {}
    for spec in AGGREGATES:
        version = catalog.current(spec["name"])
        out[spec["name"]] = (version.version, catalog.read(version).to_pylist(),
                             sorted(p["key"] for p in version.partitions.values()), version.privacy)
    return out


@pytest.mark.parametrize("shared", [False, True], ids=["each its own", "one shared"])
def test_aggregates_add_new_records_to_their_kept_input_exactly(fhir_ws, monkeypatch, shared):
    """``shared``: the two, built together, read one table of the input, kept beside the first
    one's version; else each keeps its own input and adds the new records' cells to its own."""
    from lithotse_desktop.derive import build as build_module

    ws, folder = fhir_ws
    if not shared:
        monkeypatch.setattr(build_module, "_shares_input", lambda *args: False)
    for spec in AGGREGATES:
        add_spec(ws, spec)
    names = [s["name"] for s in AGGREGATES]
    build_all(ws, names)
    kept = [n for n in names if kept_files(Catalog(ws).current(n).stats.get("input_index"))]
    assert kept == (["per_month"] if shared else names)
    added = [encounter(i) for i in range(1000, 1004)] + [encounter(8, "5", status="cancelled"),
                                                         encounter(9, "1", status="planned")]
    write(folder / "Encounter.001.ndjson", added)
    run_import(ws, "fhir")
    statuses = {r.name: r.status for r in build_all(ws, names)}
    incremental = aggregate_tables(ws)
    build_all(ws, names, full=True)
    assert statuses["per_month"] == "incremental" and statuses["per_quarter"] == "incremental", statuses
    assert incremental == aggregate_tables(ws)
    per_month = {r["period"].isoformat(): r["n"] for r in incremental["per_month"][1]}
    assert sum(per_month.values()) == 334
    assert len(incremental["per_quarter"][1]) == 4

    write(folder / "Encounter.002.ndjson", [encounter(0, "zz", status="planned")])
    run_import(ws, "fhir")
    statuses = {r.name: r.status for r in build_all(ws, names)}
    assert set(statuses.values()) == {"built"}, "a version id that is not a number: everything is read"
    before = aggregate_tables(ws)
    build_all(ws, names, full=True)
    assert before == aggregate_tables(ws)


def test_an_update_rewrites_only_the_kept_input_files_of_landings_it_touches(fhir_ws):
    ws, folder = fhir_ws
    add_spec(ws, AGGREGATES[0])
    build_all(ws, ["per_month"])
    catalog = Catalog(ws)

    def files() -> dict:
        return {f["landing"]: (f["key"], f["rows"]) for f in catalog.current("per_month").stats["input_index"]}

    first = files()
    assert len(first) == 1 and sum(rows for _, rows in first.values()) == 330
    write(folder / "Encounter.001.ndjson", [encounter(i) for i in range(1000, 1010)])
    run_import(ws, "fhir")
    assert [r.status for r in build_all(ws, ["per_month"])] == ["incremental"]
    second = files()
    assert {k: v for k, v in second.items() if k in first} == first, "the untouched landing's file is kept"
    assert sorted(rows for _, rows in second.values()) == [10, 330]
    write(folder / "Encounter.002.ndjson", [encounter(3, "7", status="cancelled")])
    run_import(ws, "fhir")
    assert [r.status for r in build_all(ws, ["per_month"])] == ["incremental"]
    third = files()
    (old_landing,) = first
    assert third[old_landing][1] == 329 and third[old_landing][0] != first[old_landing][0]
    assert {k: v for k, v in third.items() if k not in first and v[1] == 10} == \
        {k: v for k, v in second.items() if k not in first}, "the second landing's file is kept"
    incremental = catalog.read(catalog.current("per_month")).to_pylist()
    build_all(ws, ["per_month"], full=True)
    assert catalog.read(catalog.current("per_month")).to_pylist() == incremental
    stored = {info.key for info in catalog.store_of("restricted").list("restricted/per_month/record-index/")}
    assert {key for key, _ in files().values()} <= stored


def test_a_kept_input_in_a_bucket_is_fetched_and_updated_the_same_way(fhir_ws, seaweed):
    ws, folder = fhir_ws
    ws.config["stores"]["vault"] = {"url": seaweed.new_prefix(), **seaweed.store_options("client")}
    ws.config["tiers"]["restricted"] = "vault"
    ws.save()
    ws = Workspace.open(ws.root)
    add_spec(ws, AGGREGATES[0])
    build_all(ws, ["per_month"])
    write(folder / "Encounter.001.ndjson", [encounter(i) for i in range(1000, 1010)] + [encounter(4, "9")])
    run_import(ws, "fhir")
    assert [r.status for r in build_all(ws, ["per_month"])] == ["incremental"]
    catalog = Catalog(ws)
    assert catalog.store_of("restricted").local_path(catalog.current("per_month").stats["input_index"][0]["key"]) \
        is None, "the kept input is in the bucket"
    incremental = catalog.read(catalog.current("per_month")).to_pylist()
    build_all(ws, ["per_month"], full=True)
    assert catalog.read(catalog.current("per_month")).to_pylist() == incremental
    assert sum(r["n"] for r in incremental) == 340


def test_a_kept_input_recorded_as_one_file_is_read_as_one():
    assert kept_files("restricted/x/record-index/input/ab.parquet") == [
        {"landing": None, "key": "restricted/x/record-index/input/ab.parquet"}]
    assert kept_files(None) == [] and kept_files([{"landing": "l"}]) == []


def test_a_csv_aggregate_keeps_its_input_only_with_a_key(workspace: Workspace, tmp_path: Path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "visits1.csv").write_text("visit,admit_date,ward\n" + "".join(
        f"v{i},2024-0{1 + i % 6}-{1 + i % 27:02d},w{i % 3}\n" for i in range(200)))
    (folder / "more").mkdir()
    (folder / "more" / "visits1.csv").write_text((folder / "visits1.csv").read_text())
    workspace.add_source("ehr", "csv", {"path": str(folder / "visits1.csv"), "date_column": "admit_date"}, {})
    workspace.add_source("keyed", "csv", {"path": str(folder / "more"), "date_column": "admit_date",
                                          "key": "visit"}, {})
    specs = []
    for source, stream in (("ehr", "visits1"), ("keyed", "visits1")):
        spec = {"name": f"wards_{source}", "kind": "aggregate", "input": {"source": source, "stream": stream},
                "date_field": "admit_date", "grain": "month", "group_by": ["ward"], "suppress_below": 0,
                "measures": [{"fn": "count", "as": "n"}]}
        run_import(workspace, source)
        add_spec(workspace, spec)
        specs.append(spec["name"])
    build_all(workspace, specs)
    catalog = Catalog(workspace)
    assert "input_index" not in catalog.current("wards_ehr").stats
    assert kept_files(catalog.current("wards_keyed").stats["input_index"])
    keyed = folder / "more" / "visits1.csv"  # changed: a new object holding every record again, v3 moved
    keyed.write_text(keyed.read_text().replace("v3,2024-04-04,w0", "v3,2024-07-02,w2") + "v999,2024-07-01,w1\n")
    (folder / "visits1.csv").write_text((folder / "visits1.csv").read_text() + "v999,2024-07-01,w1\n")
    for source in ("ehr", "keyed"):
        run_import(workspace, source)
    statuses = {r.name: r.status for r in build_all(workspace, specs)}
    first = {n: (catalog.read(catalog.current(n)).to_pylist(), catalog.current(n).version) for n in specs}
    build_all(workspace, specs, full=True)
    assert first == {n: (catalog.read(catalog.current(n)).to_pylist(), catalog.current(n).version) for n in specs}
    assert statuses == {"wards_ehr": "incremental", "wards_keyed": "incremental"}
    assert catalog.current("wards_keyed").version == first["wards_keyed"][1]


def test_a_record_index_that_is_gone_builds_everything(fhir_ws):
    ws, folder = fhir_ws
    catalog = Catalog(ws)
    restricted = catalog.store_of("restricted")
    for spec in VIEWS:
        restricted.delete(catalog.current(spec["name"]).stats["record_index"]["chunks"][0]["row_ids"])
    write(folder / "Encounter.001.ndjson", [encounter(4000)])
    run_import(ws, "fhir")
    statuses, incremental, full = build_both(ws)
    assert statuses == {"visits": "built", "visit_types": "built"}
    assert incremental == full


def _read_index(catalog: Catalog, version) -> dict[str, Any]:
    """A version's record index (a view's: its files, by key, with their rows) and kept input (an
    aggregate's: its rows by landing, in no particular order — an aggregate reads them as a set,
    and a full build writes them from a parallel scan; and DuckDB marks a column required in a
    file's schema where it knows it holds no null, which depends on the query that wrote it, so
    not its bytes)."""
    restricted = catalog.store_of("restricted")

    def rows(key: str) -> list[dict]:
        return pq.read_table(io.BytesIO(restricted.get_bytes(key))).to_pylist()

    chunks = (version.stats.get("record_index") or {}).get("chunks", [])
    return {"record_index": {c[kind]: rows(c[kind]) for c in chunks for kind in ("row_ids", "records")},
            "input_index": {f["landing"]: sorted(rows(f["key"]), key=repr)
                            for f in kept_files(version.stats.get("input_index"))}}


def _state(ws: Workspace, names: list[str]) -> dict:
    catalog = Catalog(ws)
    out = {}
    for name in names:
        version = catalog.current(name)
        out[name] = {"version": version.version, "rows": catalog.read(version).to_pylist(),
                     "parts": {label: part["key"] for label, part in version.partitions.items()},
                     "index": _read_index(catalog, version)}
    return out


def test_chained_updates_through_an_import_match_a_full_build_in_a_copy(fhir_ws, tmp_path, part_size):
    """Three imports, each with new records and newer (and older) versions of records landed
    before, in different landings: each time the import's incremental builds of the views and of
    the aggregates give what a full build of a copy of the workspace gives, byte for byte (parts,
    rows in order, version ids, and the record index and kept input the next update starts from)."""
    ws, folder = fhir_ws
    for spec in AGGREGATES:
        add_spec(ws, spec)
    names = [s["name"] for s in VIEWS + AGGREGATES]
    build_all(ws, names)
    rounds = [
        [encounter(i) for i in range(1000, 1040)] + [encounter(11, "4", status="cancelled", codes=1),
                                                     encounter(200, "3"), encounter(12, "1", status="planned"),
                                                     encounter(310, None, updated="2023-01-01T00:00:00Z")],
        [encounter(i) for i in range(1040, 1050)] + [encounter(1003, "2", status="onleave"),  # from round 1
                                                     encounter(150, "9", codes=0), encounter(11, "5")],
        [encounter(1003, "3", status="cancelled"), encounter(250, "2"), encounter(2000)],
    ]
    incremental = _updates_match_a_full_build(ws, folder, tmp_path, rounds, names)
    rows = {r["id"]: r["status"] for r in incremental["visits"]["rows"]}
    assert rows["e1003"] == "cancelled" and rows["e11"] == "finished" and rows["e12"] == "cancelled"
    assert sum(r["n"] for r in incremental["per_month"]["rows"]) == 330 + 40 + 10 + 1


# --- key hashes and wider updates ----------------------------------------------------------------

def _updates_match_a_full_build(ws: Workspace, folder: Path, tmp_path: Path, rounds: list[list[dict]],
                                names: list[str]) -> dict:
    """Import each round; each time the incremental builds must give what a full build of a copy
    gives (rows, parts, version ids, the record index and kept input); the last state."""
    for n, added in enumerate(rounds, start=1):
        write(folder / f"Encounter.{n:03d}.ndjson", added)
        outcome = import_and_build(ws, "fhir")
        assert {b.name: b.status for b in outcome.builds} == {name: "incremental" for name in names}, n
        incremental = _state(ws, names)
        copy = Workspace.open(shutil.copytree(ws.root, tmp_path / f"copy{n}"))
        build_all(copy, names, full=True)
        assert incremental == _state(copy, names), f"round {n}"
    return incremental


def dated(i: int, year: int, version: str = "1", status: str = "finished") -> dict:
    resource = encounter(i, version, status=status)
    month = f"{year}-{1 + i % 12:02d}"
    resource["period"] = {"start": f"{month}-03T10:00:00Z", "end": f"{month}-03T11:00:00Z"}
    return resource


def test_colliding_key_hashes_still_match_records_by_their_keys(fhir_ws, tmp_path, monkeypatch):
    """With a hash giving every key one of two values, the files of nearly every record are read
    for each update: the keys decide which versions are replaced, and every update gives what a
    full build gives."""
    ws, folder = fhir_ws
    real = rowstream.key_hash

    def weak(key: list[str]) -> str:
        return f"({real(key)} % 2)"

    monkeypatch.setattr(rowstream, "key_hash", weak)
    monkeypatch.setattr(recordindex, "key_hash", weak)
    for spec in AGGREGATES:
        add_spec(ws, spec)
    names = [s["name"] for s in VIEWS + AGGREGATES]
    build_all(ws, names, full=True)
    rounds = [[encounter(i) for i in range(1000, 1020)] + [encounter(4, "6", status="cancelled"),
                                                           encounter(301, None, updated="2024-01-01T00:00:00Z")],
              [encounter(1005, "2", status="onleave"), encounter(4, "7", codes=0)]]
    state = _updates_match_a_full_build(ws, folder, tmp_path, rounds, names)
    rows = {r["id"]: r["status"] for r in state["visits"]["rows"]}
    assert rows["e4"] == "finished" and rows["e1005"] == "onleave" and rows["e301"] == "finished"


def test_an_index_hashed_by_another_duckdb_builds_everything_once(fhir_ws, monkeypatch):
    ws, folder = fhir_ws
    add_spec(ws, AGGREGATES[0])
    names = [s["name"] for s in VIEWS] + ["per_month"]
    build_all(ws, names)
    catalog = Catalog(ws)
    assert catalog.current("visits").stats["record_index"]["key_hash"] == rowstream.HASHED_BY
    assert {f["key_hash"] for f in catalog.current("per_month").stats["input_index"]} == {rowstream.HASHED_BY}
    monkeypatch.setattr(rowstream, "HASHED_BY", "duckdb 0.0.0")
    monkeypatch.setattr(recordindex, "HASHED_BY", "duckdb 0.0.0")
    write(folder / "Encounter.001.ndjson", [encounter(1000), encounter(2, "9", status="cancelled")])
    run_import(ws, "fhir")
    assert {r.name: r.status for r in build_all(ws, names)} == {n: "built" for n in names}
    assert catalog.current("visits").stats["record_index"]["key_hash"] == "duckdb 0.0.0"
    write(folder / "Encounter.002.ndjson", [encounter(1001)])
    run_import(ws, "fhir")
    assert {r.name: r.status for r in build_all(ws, names)} == {n: "incremental" for n in names}


def test_updates_reaching_past_every_period_and_moving_records_match_a_full_build(fhir_ws, tmp_path):
    """New records in years before and after every record landed, and newer versions of records
    that move them to other months (and other years): the monthly count gains periods and loses
    records from others, as a full build finds them (the quarterly one, which suppresses, would
    refuse to publish beside it the lone records of the new years)."""
    ws, folder = fhir_ws
    add_spec(ws, AGGREGATES[0])
    add_spec(ws, COUNTS)
    names = [s["name"] for s in VIEWS] + ["per_month", "counts"]
    build_all(ws, names)
    rounds = [[dated(i, 2015) for i in range(2000, 2012)] + [dated(i, 2027) for i in range(2100, 2104)]
              + [dated(7, 2031, "4"), dated(8, 2016, "2", status="cancelled")],
              [dated(2001, 2020, "2"), dated(7, 2019, "5"), dated(9, 2040, "2")]]
    state = _updates_match_a_full_build(ws, folder, tmp_path, rounds, names)
    months = {r["period"].year for r in state["per_month"]["rows"]}
    assert {2015, 2019, 2020, 2027, 2040} <= months and 2031 not in months
    assert sum(r["n"] for r in state["per_month"]["rows"]) == 330 + 16
    assert sum(r["n"] for r in state["counts"]["rows"]) == 330 + 16


COUNTS = {"name": "counts", "kind": "aggregate", "input": {"source": "fhir", "stream": "Encounter"},
          "date_field": "date", "grain": "month", "group_by": ["versionId"], "suppress_below": 0,
          "measures": [{"fn": "count", "as": "n"}, {"fn": "count", "column": "period_end", "as": "ended"}]}
"""Counts only, suppressing nothing: an update adds what the input gained and takes away what it
lost to the previous cells (see ``build._added_cells``)."""


def test_counts_are_updated_from_what_the_input_gained_and_lost(fhir_ws, tmp_path, monkeypatch):
    """Cells that gain records, lose them to another status or month, empty out (the cell and, for
    a month, its part go), and a newer version that loses to the one kept: each update's cells
    come from the previous ones and the changed records only, and equal a full build's."""
    ws, folder = fhir_ws
    add_spec(ws, COUNTS)
    build_all(ws, ["counts"])
    used: list[bool] = []
    real = build._added_cells

    def spy(*args, **kwargs):
        found = real(*args, **kwargs)
        used.append(found is not None)
        return found

    monkeypatch.setattr(build, "_added_cells", spy)
    lone = dated(3000, 2014)
    del lone["period"]["end"]
    rounds = [[encounter(i) for i in range(1000, 1010)] + [lone, encounter(4, "6"), encounter(3, "1")],
              [dated(3000, 2014, "2"), dated(1002, 2031, "2"), encounter(1003, "2")],
              [dated(1002, 2031, "3"), encounter(2, "9"), encounter(305, None, updated="2030-01-01T00:00:00Z")]]
    state = _updates_match_a_full_build(ws, folder, tmp_path, rounds, [s["name"] for s in VIEWS] + ["counts"])
    assert used == [True, True, True]
    cells = {(r["period"].isoformat(), r["versionId"]): (r["n"], r["ended"]) for r in state["counts"]["rows"]}
    assert ("2014-01-01", "1") not in cells and ("2031-07-01", "2") not in cells, "emptied out"
    assert cells[("2014-01-01", "2")] == (1, 1) and cells[("2031-07-01", "3")] == (1, 1)
    assert cells[("2020-05-01", "6")] == (1, 1) and ("2020-04-01", "1") in cells
    assert sum(n for n, _ in cells.values()) == 330 + 11


def test_a_threshold_lowered_to_0_computes_every_cell_again(fhir_ws):
    """A previous version whose cells were suppressed (the workspace's threshold was lowered to 0
    since) is no start to add to, nor are its periods kept: every cell is computed again, as a
    full build does (its hidden cells were kept as they were before)."""
    ws, folder = fhir_ws
    spec = {k: v for k, v in COUNTS.items() if k != "suppress_below"}
    add_spec(ws, spec)
    ws.config["workspace"]["suppress_below"] = 5
    build_all(ws, ["counts"])
    catalog = Catalog(ws)
    assert any(r["suppressed"] for r in catalog.read(catalog.current("counts")).to_pylist())
    ws.config["workspace"]["suppress_below"] = 0
    write(folder / "Encounter.001.ndjson", [encounter(i) for i in range(1000, 1005)])
    run_import(ws, "fhir")
    assert [r.status for r in build_all(ws, ["counts"])] == ["incremental"]  # only the new objects read
    incremental = catalog.read(catalog.current("counts")).to_pylist()
    build_all(ws, ["counts"], full=True)
    assert catalog.read(catalog.current("counts")).to_pylist() == incremental
    assert not any(r["suppressed"] for r in incremental) and sum(r["n"] for r in incremental) == 335


def test_tables_sharing_a_kept_input_build_after_an_object_landed_for_another_range(fhir_ws):
    """An object landed again for another range leaves its version's objects read with ranges and
    without (None): the next builds of tables sharing a kept input compare those as sets (found by
    a second reader: sorting them raised a TypeError), build incrementally, and publish what full
    builds do."""
    ws, folder = fhir_ws
    for spec in AGGREGATES:
        add_spec(ws, {**spec, "suppress_below": 0})
    names = [s["name"] for s in AGGREGATES]
    build_all(ws, names)
    run_import(ws, "fhir", DateRange.parse("2020-03-01", None), full=True)
    build_all(ws, names)
    for day in range(2):
        write(folder / f"Encounter.10{day}.ndjson", [encounter(2000 + day)])
        run_import(ws, "fhir")
        assert {r.status for r in build_all(ws, names)} == {"incremental"}
    incremental = aggregate_tables(ws)
    build_all(ws, names, full=True)
    assert [t[1] for t in aggregate_tables(ws).values()] == [t[1] for t in incremental.values()]
