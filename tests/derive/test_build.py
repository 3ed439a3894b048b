from __future__ import annotations

import datetime as dt
import json
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive.build import _periods, build, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec, lineage, read_table
from lithotse_desktop.derive.spec import SpecError
from lithotse_desktop.errors import Cancelled
from lithotse_desktop.jobs import import_and_build
from lithotse_desktop.progress import Progress
from lithotse_desktop.raw import run_import
from tests.support.jobs import cancelled_while

MONTHLY = {"name": "monthly", "kind": "aggregate", "input": {"source": "vals", "stream": "values"},
           "date_field": "day", "grain": "month", "group_by": ["grp"],
           "measures": [{"fn": "count", "as": "n"}, {"fn": "sum", "column": "value", "as": "total"},
                        {"fn": "count_distinct", "column": "id", "as": "ids"}],
           "suppress_below": 0}


def write(folder, name, rows):
    (folder / name).write_text("".join(",".join(map(str, r)) + "\n" for r in rows))


def rows_of(ws, name, **kw):
    return read_table(ws, name, **kw)[1].to_pylist()


def test_overlapping_ranges_imported_twice_count_each_record_once(workspace, lines):
    rows = [(f"2024-01-{d:02d}", d, "a" if d % 2 else "b", f"id{d}") for d in range(1, 29)]
    write(lines, "a.txt", rows)
    run_import(workspace, "vals", DateRange.parse("2024-01-01", "2024-01-20"))
    run_import(workspace, "vals", DateRange.parse("2024-01-10", "2024-01-31"))
    add_spec(workspace, {**MONTHLY, "group_by": []})
    build(workspace, "monthly")
    [row] = rows_of(workspace, "monthly")
    assert (row["n"], row["total"], row["ids"]) == (28, sum(range(1, 29)), 28)
    assert row["period"] == dt.date(2024, 1, 1)


def test_incremental_build_equals_full_rebuild(workspace, lines):
    write(lines, "a.txt",
          [(f"2024-0{m}-{d:02d}", d, "ab"[d % 2], f"k{m}-{d}") for m in (1, 2, 3) for d in range(1, 20)])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    first = build(workspace, "monthly")
    assert first.status == "built" and first.partitions_total == 3
    # a new file touching March only, plus a corrected record (same id) that moves from Jan to Feb
    write(lines, "b.txt", [("2024-03-25", 7, "a", "new1"), ("2024-02-02", 99, "b", "k1-5")])
    run_import(workspace, "vals")
    second = build(workspace, "monthly")
    assert second.status == "incremental"
    version = Catalog(workspace).current("monthly")
    assert sorted(version.stats["recomputed_periods"]) == ["2024-01-01", "2024-02-01", "2024-03-01"]
    incremental = rows_of(workspace, "monthly")
    full = build(workspace, "monthly", full=True)
    assert full.status == "built"
    assert rows_of(workspace, "monthly") == incremental
    jan_b = [r for r in incremental if r["period"] == dt.date(2024, 1, 1) and r["grp"] == "b"][0]
    assert jan_b["n"] == 9  # k1-5 left January


def test_only_touched_partitions_are_recomputed(workspace, lines):
    write(lines, "a.txt", [(f"2024-0{m}-01", 1, "a", f"x{m}") for m in range(1, 7)])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    build(workspace, "monthly")
    write(lines, "b.txt", [("2024-05-09", 1, "a", "y")])
    run_import(workspace, "vals")
    result = build(workspace, "monthly")
    assert (result.status, result.partitions_written, result.partitions_total) == ("incremental", 1, 6)


def test_same_inputs_same_version_and_up_to_date(workspace, lines):
    write(lines, "a.txt", [("2024-01-01", 1, "a")])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    first = build(workspace, "monthly")
    again = build(workspace, "monthly")
    assert again.status == "up to date" and again.version == first.version


def test_parquet_is_zstd_and_partitioned_by_period(workspace, lines):
    write(lines, "a.txt", [("2024-01-01", 1, "a"), ("2024-02-01", 2, "a")])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    build(workspace, "monthly")
    version = Catalog(workspace).current("monthly")
    assert sorted(version.partitions) == ["2024-01-01", "2024-02-01"]
    store = workspace.store("derived")
    for part in version.partitions.values():
        assert "/parts/period=" in part["key"]
        meta = pq.ParquetFile(store.local_path(part["key"])).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"


def test_import_triggers_builds_and_as_of_answers_old_versions(workspace, lines):
    write(lines, "a.txt", [("2024-01-01", 1, "a")])
    add_spec(workspace, MONTHLY)
    outcome = import_and_build(workspace, "vals")
    assert [b.name for b in outcome.builds] == ["monthly"]
    catalog = Catalog(workspace)
    old = catalog.current("monthly")
    # pretend the first version was published long ago, then land more data
    raw = json.loads(catalog.store.get_bytes(f"derived/monthly/versions/{old.version}.json"))
    raw["published_at"] = "2020-06-01T10:00:00+00:00"
    catalog.store.put_bytes(f"derived/monthly/versions/{old.version}.json", json.dumps(raw).encode())
    write(lines, "b.txt", [("2024-01-02", 5, "a")])
    import_and_build(workspace, "vals")
    assert rows_of(workspace, "monthly")[0]["n"] == 2
    assert rows_of(workspace, "monthly", as_of=dt.date(2020, 6, 1))[0]["n"] == 1
    with pytest.raises(Exception, match="no version was published"):
        read_table(workspace, "monthly", as_of=dt.date(2019, 1, 1))


SLOW = {"name": "slow", "kind": "sql", "inputs": {"m": {"derivative": "monthly"}},
        "sql": "SELECT grp, n + (SELECT count(*) FROM range(1000000000000) t(i) WHERE hash(i) % 7 = 1) AS n FROM m"}
"""Built after ``monthly`` (it reads it); its query would run for an hour in constant memory: only an
interrupt ends it within a test."""


def _cancelled_in_slow_query(job) -> Cancelled:
    """Run ``job(progress)`` as the app does, cancel it a moment into ``slow``'s query, and
    return the cancel it ended in (a minute at most: the query itself would take an hour)."""
    computing = threading.Event()
    progress = Progress(lambda state: computing.set() if state.message.startswith("computing slow") else None)
    return cancelled_while(job, progress, computing)


def test_a_cancel_interrupts_a_query_and_names_what_was_built_before(workspace, lines):
    """Cancel during a long query (the app's Cancel, the first Ctrl-C) stops it at once; before,
    the job waited for the query to return. What the run published before it stays, and the
    cancel says so rather than that nothing was committed."""
    write(lines, "a.txt", [(f"2024-01-{d:02d}", d, "ab"[d % 2], f"id{d}") for d in range(1, 21)])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    Catalog(workspace).save_spec(SLOW)  # unchecked (checking it would run it)
    cancel = _cancelled_in_slow_query(lambda progress: build_all(workspace, progress=progress))
    catalog = Catalog(workspace)
    monthly = catalog.current("monthly")
    assert monthly is not None and catalog.current("slow") is None
    assert cancel.committed == [f"the build of monthly (version {monthly.version})"]
    assert cancel.sentence() == (f"cancelled: the build of monthly (version {monthly.version}) committed before "
                                 "the cancel; nothing else the command had started was")

    write(lines, "b.txt", [("2024-02-03", 3, "a", "id30")])  # the next day's data: monthly grows by a period
    run_import(workspace, "vals")
    cancel = _cancelled_in_slow_query(lambda progress: build_all(workspace, progress=progress))
    grown = catalog.current("monthly")
    assert grown is not None and grown.version != monthly.version and catalog.current("slow") is None
    assert cancel.committed == [f"the build of monthly (version {grown.version})"], "built incrementally, named too"


def test_a_unit_failing_after_it_published_one_of_its_tables_names_it_when_cancelled(workspace, lines, monkeypatch):
    """Two aggregates of one input publish together; a cancel asked while they are written waits
    (publishing is a commit), but the second failing after the first was published ends the run
    as the cancel, which names the first: it is published."""
    from lithotse_desktop.derive import build as build_module
    from lithotse_desktop.errors import LithotseError

    write(lines, "a.txt", [(f"2024-01-{d:02d}", d, "ab"[d % 2], f"id{d}") for d in range(1, 21)])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    add_spec(workspace, {**MONTHLY, "name": "monthly_ids", "measures": [{"fn": "count", "as": "n"}]})
    progress = Progress()
    publish = build_module._publish

    def second_fails(ws, catalog, work, hidden):
        if work.name == "monthly_ids":
            progress.cancel()
            raise LithotseError("the store refused the write")
        return publish(ws, catalog, work, hidden)

    monkeypatch.setattr(build_module, "_publish", second_fails)
    with pytest.raises(Cancelled) as cancelled:
        build_all(workspace, progress=progress)
    monthly = Catalog(workspace).current("monthly")
    assert monthly is not None and Catalog(workspace).current("monthly_ids") is None
    assert cancelled.value.committed == [f"the build of monthly (version {monthly.version})"]


def test_derive_add_build_cancelled_names_the_saved_spec(workspace, lines, cli, monkeypatch, tmp_path):
    from lithotse_desktop.derive import build as build_module

    write(lines, "a.txt", [("2024-01-01", 1, "a", "id1")])
    run_import(workspace, "vals")

    def cancelled(*_args, **_kwargs):
        raise Cancelled()

    monkeypatch.setattr(build_module, "build", cancelled)
    spec = tmp_path / "monthly.json"
    spec.write_text(json.dumps(MONTHLY), "utf-8")
    result = cli("derive", "add", "--file", str(spec), "--build", expect=130)
    assert ("cancelled: the spec of monthly committed before the cancel; nothing else the command had "
            "started was") in result.stderr
    assert Catalog(workspace).spec("monthly")["name"] == "monthly"


def test_a_cancelled_build_after_an_import_keeps_the_import_and_its_audit_record(workspace, lines):
    from lithotse_desktop import audit
    from lithotse_desktop.raw.index import open_index

    write(lines, "a.txt", [(f"2024-01-{d:02d}", d, "ab"[d % 2], f"id{d}") for d in range(1, 21)])
    add_spec(workspace, MONTHLY)
    Catalog(workspace).save_spec(SLOW)
    cancel = _cancelled_in_slow_query(lambda progress: import_and_build(workspace, "vals", progress=progress))
    assert cancel.committed[0] == "the import of 1 object(s) from vals"
    assert cancel.committed[1].startswith("the build of monthly (version ")
    index = open_index(workspace)
    try:
        assert len(index.landings("vals")) == 1
    finally:
        index.close()
    assert len(audit.entries(workspace, action="import")) == 1


def test_old_versions_are_pruned_to_keep_versions(workspace, lines):
    workspace.config["workspace"]["keep_versions"] = 2
    workspace.save()
    add_spec(workspace, {**MONTHLY, "grain": "none", "date_field": "day"})
    for i in range(4):
        write(lines, f"f{i}.txt", [(f"2024-01-0{i + 1}", i, "a")])
        import_and_build(workspace, "vals")
    assert len(Catalog(workspace).versions("monthly")) == 2


def test_a_pruned_version_leaves_its_published_counts_in_the_restricted_store(workspace, lines, monkeypatch):
    """A reader may have kept a pruned version's cells (an export, a workbook): its counts stay,
    without its sums, where the audit of later versions reads them; written before the version
    goes, gone with the derivative."""
    workspace.config["workspace"]["keep_versions"] = 1
    workspace.save()
    add_spec(workspace, MONTHLY)
    catalog = Catalog(workspace)
    shown = []
    for i in range(3):
        write(lines, f"f{i}.txt", [(f"2024-01-0{i + 1}", i, "a")])
        import_and_build(workspace, "vals")
        shown.append(catalog.read(catalog.current("monthly")).to_pylist())
    [kept] = catalog.versions("monthly")
    remembered = catalog.remembered("monthly")
    assert len(remembered) == 2 and kept.version not in {v.version for v, _ in remembered}
    times = [v.published_at for v, _ in remembered]
    assert times == sorted(times) and times[-1] < kept.published_at
    for (_version, table), rows in zip(remembered, shown[:2], strict=True):
        assert table.column_names == ["period", "grp", "n", "ids", "suppressed"]
        assert table.to_pylist() == [{c: row[c] for c in table.column_names} for row in rows]
    store = catalog.store_of("restricted")
    assert all(store.stat(f"restricted/monthly/remembered/{v.version}.parquet") for v, _ in remembered)

    def failing(self, version, columns):
        raise OSError("disk full")
    monkeypatch.setattr(Catalog, "_remember", failing)
    write(lines, "f3.txt", [("2024-01-04", 3, "a")])
    run_import(workspace, "vals")
    result = build(workspace, "monthly")
    assert result.version and "older versions not pruned (OSError: disk full)" in result.summary()
    assert len(catalog.versions("monthly")) == 2, "a version is not dropped before it is remembered"
    monkeypatch.undo()
    write(lines, "f4.txt", [("2024-01-05", 4, "a")])
    run_import(workspace, "vals")
    assert build(workspace, "monthly").warning is None
    assert [len(catalog.versions("monthly")), len(catalog.remembered("monthly"))] == [1, 4]
    catalog.remove("monthly")
    assert list(store.list("restricted/monthly/")) == []


def test_lineage_names_raw_objects(workspace, lines):
    write(lines, "a.txt", [("2024-01-01", 1, "a")])
    result = run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    build(workspace, "monthly")
    data = lineage(workspace, "monthly")
    [obj] = data["inputs"]["input"]["objects"]
    assert obj["sha256"] == result.landings[0].manifest.sha256
    assert (data["inputs"]["input"]["connector"], data["inputs"]["input"]["connector_version"]) == ("lines", "1.0")


def test_stacked_derivatives_build_in_order(workspace, lines):
    write(lines, "a.txt", [(f"2024-01-{d:02d}", d, "ab"[d % 2]) for d in range(1, 25)])
    run_import(workspace, "vals")
    add_spec(workspace, MONTHLY)
    build(workspace, "monthly")
    add_spec(workspace, {"name": "by_group", "kind": "aggregate", "input": {"derivative": "monthly"},
                         "group_by": ["grp"], "measures": [{"fn": "sum", "column": "n", "as": "n"}],
                         "suppress_below": 0})
    add_spec(workspace, {"name": "big", "kind": "sql", "inputs": {"m": {"derivative": "monthly"}},
                         "sql": "SELECT grp, n FROM m WHERE n > 11"})
    results = build_all(workspace, full=True)
    assert [r.name for r in results][0] == "monthly"
    assert {r["grp"]: r["n"] for r in rows_of(workspace, "by_group")} == {"a": 12, "b": 12}
    assert rows_of(workspace, "big") == [{"grp": "a", "n": 12}, {"grp": "b", "n": 12}]


def test_suppression_reaches_output_with_workspace_default(workspace, lines):
    rows = [("2024-01-01", 1, "big", f"b{i}") for i in range(30)] + \
           [("2024-01-01", 1, "small", f"s{i}") for i in range(3)] + \
           [("2024-01-01", 1, "mid", f"m{i}") for i in range(15)]
    write(lines, "a.txt", rows)
    run_import(workspace, "vals")
    spec = {k: v for k, v in MONTHLY.items() if k != "suppress_below"}
    add_spec(workspace, spec)
    build(workspace, "monthly")
    got = {r["grp"]: (r["n"], r["suppressed"]) for r in rows_of(workspace, "monthly")}
    assert got == {"big": (30, False), "small": (None, True), "mid": (None, True)}


def test_bad_specs_name_the_field(workspace, lines):
    write(lines, "a.txt", [("2024-01-01", 1, "a")])
    run_import(workspace, "vals")
    cases = [
        ({**MONTHLY, "group_by": ["nope"]}, "group_by[0]: unknown column 'nope'"),
        ({**MONTHLY, "measures": [{"fn": "mean", "column": "grp", "as": "m"}]},
         "measures[0].column: mean needs a number"),
        ({**MONTHLY, "input": {"source": "vals", "stream": "nostream"}}, "input.stream"),
        ({**MONTHLY, "input": {"source": "ghost", "stream": "values"}}, "input.source"),
        ({**MONTHLY, "input": {"derivative": "ghost"}}, "input.derivative"),
        ({**MONTHLY, "grain": "fortnight"}, "grain: 'fortnight'"),
        ({**MONTHLY, "measures": [{"fn": "percentile", "column": "value", "as": "p", "p": 3}]}, "measures[0].p"),
        ({**MONTHLY, "filters": [{"column": "grp", "op": "like", "value": "a"}]}, "filters[0].op"),
        ({"name": "v", "kind": "sql", "inputs": {"x": {"source": "vals", "stream": "values"}},
          "sql": "DELETE FROM x"}, "sql: must be a SELECT"),
    ]
    for spec, message in cases:
        with pytest.raises(SpecError) as info:
            add_spec(workspace, spec)
        assert message in str(info.value), (spec, str(info.value))
    assert Catalog(workspace).names() == []


HOSTILE_VALUES = ["a'; DROP TABLE input; --", "read_csv('/etc/passwd')", "x\" OR 1=1 --",
                  "'); ATTACH '/tmp/evil.db' AS e; --", "COPY (SELECT 1) TO '/tmp/pwned.csv'", "/* */ 1"]


def test_hostile_values_match_nothing(workspace, lines, tmp_path):
    write(lines, "a.txt", [("2024-01-01", 1, "a"), ("2024-01-02", 2, "b")])
    run_import(workspace, "vals")
    for i, value in enumerate(HOSTILE_VALUES):
        spec = {**MONTHLY, "name": f"h{i}", "filters": [{"column": "grp", "op": "=", "value": value}]}
        add_spec(workspace, spec)
        build(workspace, f"h{i}")
        assert rows_of(workspace, f"h{i}") == []
        spec = {**MONTHLY, "name": f"c{i}", "filters": [{"column": "grp", "op": "in", "value": [value, "a"]}]}
        add_spec(workspace, spec)
        build(workspace, f"c{i}")
        assert [r["grp"] for r in rows_of(workspace, f"c{i}")] == ["a"]
    assert not (tmp_path / "pwned.csv").exists()


HOSTILE_NAMES = ['grp"; DROP TABLE x; --', "read_csv('/etc/passwd')", "a b) FROM x; --", "grp--"]


def test_hostile_identifiers_are_rejected(workspace, lines):
    write(lines, "a.txt", [("2024-01-01", 1, "a")])
    run_import(workspace, "vals")
    for name in HOSTILE_NAMES:
        for spec in ({**MONTHLY, "group_by": [name]},
                     {**MONTHLY, "measures": [{"fn": "count", "as": name}]},
                     {**MONTHLY, "name": name}):
            with pytest.raises(SpecError):
                add_spec(workspace, spec)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT 1; ATTACH '/tmp/x.db' AS x",
    "COPY (SELECT 1) TO '/tmp/lithotse-pwned.csv'",
    "SELECT * FROM glob('/etc/*')",
])
def test_sql_kind_has_no_file_access(workspace, lines, sql):
    write(lines, "a.txt", [("2024-01-01", 1, "a")])
    run_import(workspace, "vals")
    spec = {"name": "evil", "kind": "sql", "inputs": {"x": {"source": "vals", "stream": "values"}}, "sql": sql}
    with pytest.raises(SpecError):
        add_spec(workspace, spec)
    Catalog(workspace).store.put_bytes("specs/evil.json", json.dumps(spec).encode())
    with pytest.raises(Exception) as info:
        build(workspace, "evil")
    assert "evil" in str(info.value) or "sql" in str(info.value)


def test_a_partly_rebuilt_table_is_decided_with_its_published_periods():
    """The cells decided over for a table that suppresses nothing, rebuilt for some periods: the
    previous version's other periods, then the fresh ones; only the fresh ones where the previous
    version has no rows (an empty version's columns have no type to meet the fresh ones')."""
    import pyarrow as pa

    from lithotse_desktop.derive.build import _published_with

    jan23, jan24 = dt.date(2023, 1, 1), dt.date(2024, 1, 1)
    fresh = pa.table({"period": [jan24], "dept": ["a"], "n": [3], "__n": [3]})
    before = pa.table({"period": [jan23, jan24], "dept": ["a", "a"], "n": [5, 2], "suppressed": [False, False]})
    assert _published_with(before, fresh, [jan24]).to_pylist() == [
        {"period": jan23, "dept": "a", "n": 5}, {"period": jan24, "dept": "a", "n": 3}]
    empty = pa.table({c: pa.array([], pa.null()) for c in ("period", "dept", "n", "suppressed")})
    assert _published_with(empty, fresh, [jan24]) is fresh


def test_a_derivative_that_cannot_be_built_keeps_no_other_out_of_date(workspace, lines, cli):
    """One bad spec (saved unchecked, as a sync brings it) fails its own build and skips what
    reads it; the import lands, every other derivative is built, and each one not built is named."""
    write(lines, "a.txt", [(f"2024-01-{d:02d}", d, "ab"[d % 2], f"id{d}") for d in range(1, 21)])
    add_spec(workspace, MONTHLY)
    Catalog(workspace).save_spec({**MONTHLY, "name": "broken", "group_by": ["no_such_column"]})
    Catalog(workspace).save_spec({"name": "above", "kind": "aggregate", "input": {"derivative": "broken"},
                                  "measures": [{"fn": "count", "as": "n"}], "suppress_below": 0})
    outcome = import_and_build(workspace, "vals")
    assert outcome.imported.landings, "the data landed all the same"
    statuses = {b.name: b.status for b in outcome.builds}
    assert statuses == {"monthly": "built", "broken": "failed", "above": "skipped"}, statuses
    assert "no_such_column" in outcome.build_error and "above: skipped: it reads broken" in outcome.build_error
    assert sum(r["n"] for r in rows_of(workspace, "monthly")) == 20
    assert Catalog(workspace).current("broken") is None and Catalog(workspace).current("above") is None

    result = cli("derive", "build", "--all", "--json", expect=1)
    shown = {r["name"]: r for r in json.loads(result.stdout)}
    assert shown["monthly"]["status"] == "up to date" and shown["monthly"]["error"] is None
    assert shown["broken"]["status"] == "failed" and "no_such_column" in shown["broken"]["error"]
    assert shown["above"]["status"] == "skipped"
    assert "2 of 3 derivatives not built" in result.stderr

    write(lines, "b.txt", [("2024-01-25", 5, "a", "id25")])
    result = cli("import", "vals", "--json", expect=1)
    landed = json.loads(result.stdout)
    assert landed["build_error"] and {b["name"]: b["status"] for b in landed["builds"]}["monthly"] == "incremental"
    assert "imported, but the build that follows failed" in result.stderr
    assert sum(r["n"] for r in rows_of(workspace, "monthly")) == 21


def test_a_rebuild_giving_other_rows_is_a_version_of_its_own(workspace, lines):
    """A sql whose rows vary between runs (random(), a sample, an order left to threads) rebuilt
    with --full: the rows it now publishes are a new version, so the derivatives over it, the
    cache and the add-ins do not keep the old rows as current; a rebuild giving the same rows
    keeps its version."""
    write(lines, "a.txt", [(f"2024-01-{d:02d}", d, "ab"[d % 2], f"id{d}") for d in range(1, 29)])
    run_import(workspace, "vals")
    add_spec(workspace, {"name": "drawn", "kind": "sql", "inputs": {"v": {"source": "vals", "stream": "values"}},
                         "sql": "SELECT grp, value, random() AS draw FROM v"})
    add_spec(workspace, {"name": "over", "kind": "sql", "inputs": {"d": {"derivative": "drawn"}},
                         "sql": "SELECT grp, value, draw FROM d"})
    add_spec(workspace, {"name": "steady", "kind": "sql", "inputs": {"v": {"source": "vals", "stream": "values"}},
                         "sql": "SELECT grp, value FROM v ORDER BY value"})
    first = {r.name: r for r in build_all(workspace)}
    drawn_before = rows_of(workspace, "drawn")

    again = build(workspace, "drawn", full=True)
    assert again.status == "built" and again.version != first["drawn"].version
    assert Catalog(workspace).current("drawn").version == again.version
    assert rows_of(workspace, "drawn") != drawn_before
    # the next plain build knows the rebuilt version as its own: nothing to do
    assert build(workspace, "drawn").status == "up to date"

    over = build(workspace, "over")
    assert over.status == "built" and over.version != first["over"].version
    key = lambda r: (r["grp"], r["value"])  # noqa: E731
    assert sorted(rows_of(workspace, "over"), key=key) == sorted(rows_of(workspace, "drawn"), key=key)

    steady = build(workspace, "steady", full=True)
    assert steady.status == "built" and steady.version == first["steady"].version


@pytest.mark.parametrize(("key", "meant"), [("filter", "filters"), ("measure", "measures"), ("groupby", "group_by")])
def test_a_misspelled_field_is_refused_naming_the_one_meant(workspace, lines, key, meant):
    """A table built without the filter its spec meant (``filter`` for ``filters``) publishes
    other cells than its author thinks; a key unlike any field (a note) is left alone."""
    spec = {**MONTHLY, key: MONTHLY.get(meant, [{"column": "grp", "op": "=", "value": "a"}])}
    with pytest.raises(SpecError, match=f"^{key}: is not a field of a spec; did you mean '{meant}'"):
        add_spec(workspace, spec)
    assert add_spec(workspace, {**MONTHLY, "notes": "checked by Ann"})


@pytest.mark.parametrize("ordered", [True, False])
def test_an_aggregate_is_cut_into_one_part_per_period_whatever_its_row_order(ordered):
    """Cells in period order (as the query gives them) are cut by slicing, others by comparing
    values: either way each part holds its period's rows in the table's order."""
    days = [dt.date(2024, 1, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2025, 12, 1), dt.date(2025, 12, 1)]
    if not ordered:
        days = [days[2], *days[:2], *days[3:]]
    chunks = [pa.table({"period": pa.array(days[:3], pa.date32()), "n": [0, 1, 2]}),
              pa.table({"period": pa.array([dt.date(2025, 6, 1), *days[3:]], pa.date32()), "n": [9, 3, 4]}).slice(1)]
    bare = pa.Array.from_buffers(pa.date32(), 0, [None, None])  # a chunk of no rows may have no buffers
    chunks.insert(1, pa.table({"period": bare, "n": pa.array([], pa.int64())}))
    table = pa.concat_tables(chunks)
    assert table.column("period").num_chunks == 3 and table.column("period").chunks[2].offset == 1
    parts = _periods(table, True)
    expected: dict[str, list[int]] = {}
    for day, n in zip(days, table.column("n").to_pylist(), strict=True):
        expected.setdefault(day.isoformat(), []).append(n)
    assert sorted(parts) == sorted(expected)
    assert {label: part.column("n").to_pylist() for label, part in parts.items()} == expected
    assert all(part.schema == table.schema for part in parts.values())
    assert _periods(table.slice(0, 0), True) == {} and _periods(table, False) == {"all": table}


def test_aggregates_of_one_keyed_input_that_suppress_nothing_read_it_once(workspace, lines, monkeypatch):
    """Several aggregates of one keyed input built in one run read it once (not once each): the
    objects, then what landed since with the input kept beside the first one's version; each
    publishes what Python counts from the files, and what it publishes built alone."""
    from lithotse_desktop.derive import inputs, recordindex

    reads: list[int] = []
    original = inputs.landed_objects

    def landed(con, ws, resolved, progress, checks, name, *, unused=(), skip=frozenset(), typed=False):
        reads.append(sum(1 for stored in resolved.objects(ws) if stored.sha256 not in skip))
        return original(con, ws, resolved, progress, checks, name, unused=unused, skip=skip, typed=typed)

    for module in (inputs, recordindex):
        monkeypatch.setattr(module, "landed_objects", landed)
    first = [(f"2024-0{1 + d % 3}-{1 + d % 27:02d}", d, "abc"[d % 3], f"id{d}") for d in range(60)]
    later = [(f"2024-03-{1 + d % 27:02d}", d, "ab"[d % 2], f"id{d}") for d in range(60, 75)]
    specs = [{**MONTHLY, "name": "by_group"}, {**MONTHLY, "name": "by_month", "group_by": []},
             {**MONTHLY, "name": "yearly", "grain": "year", "group_by": []}]
    for spec in specs:
        add_spec(workspace, spec)
    for step, (status, rows) in enumerate([("built", first), ("incremental", first + later)]):
        write(lines, f"{step}.txt", rows if step == 0 else later)
        run_import(workspace, "vals")
        reads.clear()
        results = build_all(workspace)
        assert reads == [1], f"one read of the one new object for the three, not {reads}"
        assert {r.name: r.status for r in results} == dict.fromkeys(["by_group", "by_month", "yearly"], status)
        month: dict[tuple[str, str], list[int]] = {}
        for day, value, group, _ in rows:
            month.setdefault((day[:7], group), []).append(value)
        shown = {(r["period"].isoformat()[:7], r["grp"]): (r["n"], r["total"]) for r in rows_of(workspace, "by_group")}
        assert shown == {key: (len(v), sum(v)) for key, v in month.items()}
        assert [(r["n"], r["ids"]) for r in rows_of(workspace, "yearly")] == [(len(rows), len(rows))]
    catalog = Catalog(workspace)
    assert [s["name"] for s in specs if "input_index" in catalog.current(s["name"]).stats] == ["by_group"]
    together = {s["name"]: rows_of(workspace, s["name"]) for s in specs}
    for spec in specs:
        build_all(workspace, [spec["name"]], full=True)
        assert "input_index" in catalog.current(spec["name"]).stats, "built alone, it keeps its own input"
        assert rows_of(workspace, spec["name"]) == together[spec["name"]]
