from __future__ import annotations

import datetime as dt
import multiprocessing

import pyarrow as pa
import pytest

from lithotse_desktop.cache import LookupMismatch, cache_for, lookup, table, table_of, value
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.errors import ConfigError, NotFound
from lithotse_desktop.plugins import get_plugin_manager
from lithotse_desktop.raw import run_import
from tests.cache import workers
from tests.cache.helpers import TOTALS, VISITS, build_sample, sample_rows, write_rows

JAN, FEB, MAR = dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)


def test_publish_puts_the_version_in_the_cache(workspace, lines, backend):
    build_sample(workspace, lines)
    version = Catalog(workspace).current("visits").version
    assert cache_for(workspace).backend.entries() == [("visits", version)]
    loaded = cache_for(workspace).backend.load("visits")
    assert loaded[0] == version and loaded[1]["measures"]["avg"] == "mean"


def test_additive_measures_sum_over_range_and_dimensions(workspace, lines, backend):
    build_sample(workspace, lines)
    assert value(workspace, "visits", "n") == 3 * (15 + 12)
    assert value(workspace, "visits", "n", grp="a") == 45
    assert value(workspace, "visits", "n", from_="2024-02-01", to="2024-03-31", grp="b") == 24
    assert value(workspace, "visits", "total", from_=JAN, to=JAN, grp="a") == sum(range(1, 16))
    assert value(workspace, "visits", "n", from_="2025-01-01") == 0
    cell = lookup(workspace, "visits", "n", grp="a")
    assert (cell.rows, cell.suppressed, cell.version) == (3, False, Catalog(workspace).current("visits").version)


def test_non_additive_measures_need_exactly_one_row(workspace, lines, backend):
    build_sample(workspace, lines)
    assert value(workspace, "visits", "avg", from_=FEB, to=FEB, grp="b") == pytest.approx(6.5)
    assert value(workspace, "visits", "ids", from_=MAR, to="2024-03-31", grp="a") == 15
    with pytest.raises(LookupMismatch, match=r"visits.avg is a mean.*matches 3 rows.*one period"):
        value(workspace, "visits", "avg", grp="a")
    with pytest.raises(LookupMismatch, match=r"matches 2 rows.*a value for grp"):
        value(workspace, "visits", "ids", from_=JAN, to=JAN)
    with pytest.raises(LookupMismatch, match="matches 0 rows"):
        value(workspace, "visits", "avg", from_=JAN, to=JAN, grp="zzz")


def test_suppressed_cells_never_leak(workspace, lines, backend):
    add_spec(workspace, {**VISITS, "suppress_below": 13})
    build_sample(workspace, lines, rows=sample_rows(per_group={"a": 15, "b": 12, "c": 20}))
    cell = lookup(workspace, "visits", "n", grp="b")
    assert (cell.value, cell.suppressed) == (None, True)
    # complementary suppression hides a too (smallest other cell), so only c is visible
    assert value(workspace, "visits", "n", grp="a") is None
    assert value(workspace, "visits", "n", grp="c") == 60
    total = lookup(workspace, "visits", "total", from_=JAN, to=MAR)
    assert (total.value, total.suppressed) == (None, True)
    assert value(workspace, "visits", "avg", from_=JAN, to=JAN, grp="b") is None
    rows = table(workspace, "visits", dims={"grp": "b"}).to_pylist()
    assert all(r["suppressed"] and r["n"] is None and r["avg"] is None for r in rows)


def test_errors_name_the_problem(workspace, lines, backend):
    build_sample(workspace, lines, specs=(VISITS, TOTALS))
    with pytest.raises(NotFound, match="visits: no measure 'nope'; measures: n, total, avg, ids"):
        value(workspace, "visits", "nope")
    with pytest.raises(NotFound, match="no derivative named 'ghost'"):
        value(workspace, "ghost", "n")
    with pytest.raises(ConfigError, match="no dimension 'dept'; dimensions: grp"):
        value(workspace, "visits", "n", dept="x")
    with pytest.raises(ConfigError, match="totals has no time grain"):
        value(workspace, "totals", "n", from_="2024-01-01")
    with pytest.raises(ConfigError, match="not an ISO date"):
        value(workspace, "visits", "n", from_="January")
    assert value(workspace, "totals", "top", grp="a") == 15


def test_not_built_yet_is_a_clear_error(workspace, lines, backend):
    add_spec(workspace, VISITS)
    with pytest.raises(NotFound, match="has not been built yet; run: lithotse derive build visits"):
        value(workspace, "visits", "n")


def test_table_lookups_filter_and_select(workspace, lines, backend):
    build_sample(workspace, lines)
    got = table(workspace, "visits", from_=FEB, to=MAR, dims={"grp": "a"}, measures=["n"])
    assert got.column_names == ["period", "grp", "n", "suppressed"]
    assert got.to_pylist() == [{"period": FEB, "grp": "a", "n": 15, "suppressed": False},
                               {"period": MAR, "grp": "a", "n": 15, "suppressed": False}]
    assert table(workspace, "visits", columns=["grp", "total"]).num_rows == 6
    assert table(workspace, "visits", to="2023-12-31").num_rows == 0
    assert isinstance(table(workspace, "visits"), pa.Table)


def test_a_miss_falls_back_to_l2_and_refills(workspace, lines, backend):
    build_sample(workspace, lines)
    handle = cache_for(workspace)
    handle.backend.drop("visits")
    handle._memo.clear()
    handle._known.clear()
    assert handle.backend.entries() == []
    assert value(workspace, "visits", "n", grp="a") == 45
    assert handle.backend.entries() == [("visits", Catalog(workspace).current("visits").version)]


def test_rebuild_invalidates_exactly_its_own_entries(workspace, lines, backend):
    build_sample(workspace, lines, specs=(VISITS, TOTALS))
    backend_ = cache_for(workspace).backend
    before = dict(backend_.entries())
    totals_before = backend_.load("totals")
    write_rows(lines, "b.txt", [("2024-04-02", 5, "a", "new")])
    run_import(workspace, "vals")
    build(workspace, "visits")
    after = dict(backend_.entries())
    assert set(after) == {"visits", "totals"}
    assert after["visits"] != before["visits"]
    assert backend_.load("totals") == totals_before
    assert value(workspace, "visits", "n", from_="2024-04-01") == 1


def test_cache_follows_l2_when_another_machine_published(workspace, lines, backend, monkeypatch):
    workspace.config["cache"]["revalidate_seconds"] = 0
    workspace.save()
    build_sample(workspace, lines)
    assert value(workspace, "visits", "n") == 81
    with monkeypatch.context() as patch:  # a build elsewhere: L2 moves, this cache hears nothing
        patch.setattr(get_plugin_manager(), "version_published", lambda *_args: None)
        write_rows(lines, "b.txt", [("2024-01-05", 1, "a", "late")])
        run_import(workspace, "vals")
        build(workspace, "visits")
    assert value(workspace, "visits", "n") == 82
    assert cache_for(workspace).backend.pointer("visits") == Catalog(workspace).current("visits").version


def test_removed_derivative_is_dropped(workspace, lines, backend):
    workspace.config["cache"]["revalidate_seconds"] = 0
    workspace.save()
    build_sample(workspace, lines)
    Catalog(workspace).remove("visits")
    with pytest.raises(NotFound):
        value(workspace, "visits", "n")
    assert cache_for(workspace).backend.entries() == []


def _backend_spec(workspace, backend):
    handle = cache_for(workspace)
    if backend == "redis":
        return {"kind": "redis", "url": workspace.config["cache"]["url"], "ns": handle.backend.ns}
    return {"kind": "embedded", "path": str(handle.backend.path)}


def test_concurrent_readers_never_see_a_torn_version(workspace, backend, tmp_path):
    spec = _backend_spec(workspace, backend)
    stop = tmp_path / "stop"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        readers = [pool.apply_async(workers.read_until, (spec, str(stop))) for _ in range(3)]
        writer = pool.apply_async(workers.write_versions, (spec, 300))
        # generous limits: the readers spin on both cores, so a loaded machine slows the writer
        assert writer.get(300) == 300
        stop.touch()
        results = [r.get(300) for r in readers]
    assert all(reads >= 20 for reads, _ in results), results
    assert [p for _, problems in results for p in problems] == []
    assert cache_for(workspace).backend.entries() == [("stress", "v299")]


def test_readers_during_real_rebuilds_match_l2(workspace, lines, backend, tmp_path):
    workspace.config["workspace"]["keep_versions"] = 100
    workspace.save()
    build_sample(workspace, lines)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        stop = tmp_path / "stop"
        readers = [pool.apply_async(workers.read_lookups, (str(workspace.root), str(stop))) for _ in range(2)]
        writer = pool.apply_async(workers.rebuild_repeatedly, (str(workspace.root), str(lines), 5))
        assert writer.get(300) == 5
        stop.touch()
        results = [r.get(300) for r in readers]
    assert [p for _, _, problems in results for p in problems] == []
    seen = set().union(*(versions for _, versions, _ in results))
    assert len(seen) >= 2, "readers should have seen the derivative change"
    assert all(reads > 5 for reads, _, _ in results)
    current = Catalog(workspace).current("visits").version
    entry, _ = table_of(workspace, "visits")
    assert entry.version == current


def test_an_unreachable_backend_never_fails_a_build_or_a_lookup(workspace, lines, caplog):
    from tests.cache.helpers import free_port

    workspace.config["cache"] = {"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"}
    workspace.save()
    build_sample(workspace, lines)
    assert Catalog(workspace).current("visits") is not None
    assert value(workspace, "visits", "n", grp="a") == 45
    assert "reading derivatives from L2" in caplog.text or "could not put visits" in caplog.text


def test_unknown_backend_is_a_clear_error(workspace, lines):
    workspace.config["cache"] = {"backend": "memcached"}
    workspace.save()
    with pytest.raises(ConfigError, match=r"backend = 'memcached': no such cache backend; available: .*embedded"):
        cache_for(workspace)


def test_versions_over_max_bytes_are_served_from_l2(workspace, lines, backend):
    workspace.config["cache"]["max_bytes"] = 10
    workspace.save()
    build_sample(workspace, lines)
    assert cache_for(workspace).backend.entries() == []
    assert value(workspace, "visits", "n", grp="b") == 36
    cache_for(workspace)._known.clear()
    assert value(workspace, "visits", "total", from_=JAN, to=JAN, grp="b") == sum(range(1, 13))
    assert cache_for(workspace).backend.entries() == []


def test_sql_derivatives_answer_single_rows(workspace, lines):
    build_sample(workspace, lines)
    add_spec(workspace, {"name": "per_group", "kind": "sql", "inputs": {"v": {"derivative": "visits"}},
                         "sql": "SELECT grp, sum(n) AS n FROM v GROUP BY grp"})
    build(workspace, "per_group")
    entry, _ = table_of(workspace, "per_group")
    assert entry.measures == {"n": None} and entry.dimensions == ["grp"]
    assert value(workspace, "per_group", "n", grp="b") == 36
    with pytest.raises(LookupMismatch, match="per_group.n is a non-additive value.*matches 2 rows"):
        value(workspace, "per_group", "n")
