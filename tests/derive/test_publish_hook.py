"""Publishing is the typed ``lithotse_version_published`` hook, called with the table just built.

Every published class (aggregates, sql cells, sql over published derivatives; an incremental
rebuild, which reuses parts of the previous version) hands the listeners exactly the table L2
returns for that version, compared here with an independent read of the Parquet parts; the
built-in cache gets it without reading the Parquet back. Row-level versions (views, sql without
a count column) are never handed to a listener.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from lithotse_desktop.cache import cache_for
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.hookspecs import hookimpl
from lithotse_desktop.plugins import get_plugin_manager
from lithotse_desktop.raw import run_import

MONTHLY = {"name": "monthly", "kind": "aggregate", "input": {"source": "vals", "stream": "values"},
           "date_field": "day", "grain": "month", "group_by": ["grp"],
           "measures": [{"fn": "count", "as": "n"}, {"fn": "sum", "column": "value", "as": "total"}],
           "suppress_below": 3}
BY_GROUP = {"name": "by_group", "kind": "aggregate", "input": {"source": "vals", "stream": "values"},
            "group_by": ["grp"], "measures": [{"fn": "max", "column": "value", "as": "top"}], "suppress_below": 0}
# sql cells are decided alone: they count rows no other published table of cells counts
AS_SQL = {"name": "as_sql", "kind": "sql", "inputs": {"e": {"source": "fhir", "stream": "Encounter"}},
          "sql": "SELECT resourceType AS kind, count(*) AS rows_, count(DISTINCT patient_id) AS people FROM e "
                 "GROUP BY 1", "count_column": "rows_", "people_column": "people"}
ROWS_SQL = {"name": "rows_sql", "kind": "sql", "inputs": {"v": {"source": "vals", "stream": "values"}},
            "sql": "SELECT day, grp, value FROM v"}
OVER_PUBLISHED = {"name": "over_published", "kind": "sql", "inputs": {"m": {"derivative": "monthly"}},
                  "sql": "SELECT grp, sum(n) AS n FROM m GROUP BY grp ORDER BY grp"}
ENCOUNTERS = {"name": "encounters", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
              "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
                       "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                              {"name": "status", "path": "status"},
                                              {"name": "start", "path": "period.start"}]}]}}


class Listener:
    """An in-process plugin that keeps what each publish told it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, pa.Table]] = []

    @hookimpl
    def lithotse_version_published(self, workspace, version, table):
        self.seen.append((version.name, version.version, table))


@pytest.fixture
def listener(lines):
    found = Listener()
    get_plugin_manager().register(found, "listener-test")
    return found


def write(folder, name, rows):
    (folder / name).write_text("".join(",".join(map(str, r)) + "\n" for r in rows))


def parquet_copy(ws, name: str) -> pa.Table:
    """The current version's table read from its Parquet parts, independently of the catalog."""
    import io

    import pyarrow.parquet as pq

    catalog = Catalog(ws)
    version = catalog.current(name)
    store = catalog.store_of(version.area)
    parts = [pq.read_table(io.BytesIO(store.get_bytes(version.partitions[label]["key"])))
             for label in sorted(version.partitions)]
    return pa.concat_tables(parts) if parts else catalog.read(version)


def last_for(listener: Listener, name: str) -> tuple[str, pa.Table]:
    [(version, table)] = [(v, t) for n, v, t in listener.seen if n == name][-1:]
    return version, table


def test_each_kind_hands_listeners_the_table_l2_holds(workspace, lines, listener, tmp_path):
    write(lines, "a.txt", [(f"2024-0{m}-{d:02d}", d, "abc"[d % 3], f"k{m}-{d}") for m in (1, 2, 3)
                           for d in range(1, 12)])
    run_import(workspace, "vals")
    fhir = tmp_path / "fhir-in"
    fhir.mkdir()
    (fhir / "Encounter.ndjson").write_text("".join(
        json.dumps({"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
                    "period": {"start": f"2024-01-{i + 1:02d}"}}) + "\n" for i in range(9)))
    workspace.add_source("fhir", "fhir-files", {"path": str(fhir)}, {})
    run_import(workspace, "fhir")
    for spec in (MONTHLY, BY_GROUP, AS_SQL, OVER_PUBLISHED):
        add_spec(workspace, spec)
        result = build(workspace, spec["name"])
        version, table = last_for(listener, spec["name"])
        assert version == result.version == Catalog(workspace).current(spec["name"]).version
        assert table.equals(parquet_copy(workspace, spec["name"])), spec["name"]
        assert table.num_rows == result.rows > 0
    # by_group reads monthly's input, so suppression is decided over both: building it
    # republishes monthly too (its version names the aggregates it was decided with)
    for spec in (ROWS_SQL, ENCOUNTERS):
        add_spec(workspace, spec)
        result = build(workspace, spec["name"])
        current = Catalog(workspace).current(spec["name"])
        assert current.version == result.version and result.rows > 0
        assert current.privacy["class"] == "row-level"
        assert all(p["key"].startswith(f"restricted/{spec['name']}/") for p in current.partitions.values())
        assert not list(workspace.store("derived").list(f"derived/{spec['name']}/"))
    assert [n for n, _v, _t in listener.seen] == ["monthly", "by_group", "monthly", "as_sql", "over_published"]


def test_an_incremental_build_hands_over_the_whole_version(workspace, lines, listener):
    write(lines, "a.txt", [(f"2024-0{m}-{d:02d}", d, "ab"[d % 2], f"k{m}-{d}") for m in (1, 2, 3)
                           for d in range(1, 15)])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    build(workspace, "monthly")
    write(lines, "b.txt", [("2024-03-20", 5, "a", f"new{i}") for i in range(3)])
    run_import(workspace, "vals")
    result = build(workspace, "monthly")
    assert result.status == "incremental" and result.partitions_written == 1 < result.partitions_total
    _version, table = last_for(listener, "monthly")
    assert table.equals(parquet_copy(workspace, "monthly"))
    assert sorted(r["n"] for r in table.to_pylist() if r["grp"] == "a" and str(r["period"]) == "2024-03-01") == [10]


def test_the_cache_gets_the_built_table_without_reading_parquet_back(workspace, lines, monkeypatch):
    write(lines, "a.txt", [(f"2024-01-{d:02d}", d, "ab"[d % 2], f"k{d}") for d in range(1, 20)])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    reads = []
    monkeypatch.setattr(Catalog, "read_part", lambda self, key, columns=None: reads.append(key))
    result = build(workspace, "monthly")
    assert reads == []
    monkeypatch.undo()
    entry = cache_for(workspace).entry("monthly")
    assert entry.version == result.version
    assert entry.table.equals(parquet_copy(workspace, "monthly"))


def test_a_listener_that_raises_does_not_undo_the_publish(workspace, lines, listener):
    class Broken:
        @hookimpl
        def lithotse_version_published(self, workspace, version, table):
            raise RuntimeError("listener down")

    get_plugin_manager().register(Broken(), "broken-listener")
    write(lines, "a.txt", [("2024-01-02", 1, "a", "k1")] * 4)
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    result = build(workspace, "monthly")
    assert Catalog(workspace).current("monthly").version == result.version
    assert "listener down" in get_plugin_manager().plugins["broken-listener"].error
    assert last_for(listener, "monthly")[0] == result.version
