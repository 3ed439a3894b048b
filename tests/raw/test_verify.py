"""Integrity you can check: ``lithotse raw verify`` and builds refusing altered raw objects."""

from __future__ import annotations

import hashlib
import json

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive.build import build, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.errors import CorruptObject
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.raw.verify import verify_raw
from lithotse_desktop.workspace import Workspace
from tests.support import lines_connector

SPEC = {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
        "date_field": "day", "grain": "month", "measures": [{"fn": "count", "as": "n"},
                                                            {"fn": "sum", "column": "amount", "as": "total"}],
        "suppress_below": 0}


@pytest.fixture(autouse=True)
def plugins():
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    yield
    reset_plugin_manager()


def visits_csv(folder, rows: int = 40) -> None:
    folder.mkdir(exist_ok=True)
    lines = ["visit,day,amount"] + [f"V{i},2024-0{1 + i % 3}-{1 + i % 27:02d},{100 + i}" for i in range(rows)]
    (folder / "visits.csv").write_text("\n".join(lines) + "\n")


def csv_workspace(root, inbox, raw_store: dict | None = None) -> Workspace:
    ws = Workspace.create(root)
    if raw_store is not None:
        ws.config["stores"]["bucket"] = raw_store
        ws.config["tiers"]["raw"] = "bucket"
        ws.save()
        ws = Workspace.open(root)
    ws.add_source("ehr", "csv", {"path": str(inbox)}, {})
    run_import(ws, "ehr")
    add_spec(ws, SPEC)
    build(ws, "by_month")
    return ws


def flip_a_digit(data: bytes) -> bytes:
    """The first amount's last digit changed: still a valid CSV with the same types."""
    at = data.index(b"\n", data.index(b"\n") + 1) - 1
    digit = data[at:at + 1]
    assert digit.isdigit()
    return data[:at] + (b"7" if digit != b"7" else b"3") + data[at + 1:]


def the_object(ws: Workspace) -> str:
    [key] = [i.key for i in ws.store("raw").list("raw/")]
    return key


def snapshot(ws: Workspace) -> dict[str, str]:
    """Every key of every raw store with the sha256 of its bytes."""
    return {f"{name}:{info.key}": hashlib.sha256(store.get_bytes(info.key)).hexdigest()
            for name, store in ws.raw_stores() for info in store.list("")}


def test_flipped_byte_is_found_by_verify_and_refused_by_builds(cli, tmp_path, monkeypatch):
    inbox = tmp_path / "in"
    visits_csv(inbox)
    ws = csv_workspace(tmp_path / "ws", inbox)
    monkeypatch.setenv("LITHOTSE_WORKSPACE", str(ws.root))
    good = read_table(ws, "by_month")[1]
    published = Catalog(ws).current("by_month").version
    clean = json.loads(cli("raw", "verify", "--json").output)
    assert clean == {"summary": {"stores": ["local"], "objects": 1, "ok": 1, "bytes": clean["summary"]["bytes"],
                                 "manifests": 1, "corrupted": 0, "missing": 0, "unreferenced": 0,
                                 "bad_manifest": 0},
                     "problems": []}

    key = the_object(ws)
    path = ws.store("raw").local_path(key)
    original = path.read_bytes()
    path.write_bytes(flip_a_digit(original))
    before = snapshot(ws)

    out = cli("raw", "verify", "--json", expect=1).output
    report = json.loads(out)
    assert report["summary"]["corrupted"] == 1 and report["summary"]["ok"] == 0
    [problem] = report["problems"]
    assert (problem["problem"], problem["key"], problem["store"]) == ("corrupted", key, "local")
    assert problem["landings"][0]["original_name"] == "visits.csv"
    text = cli("raw", "verify", expect=1).output
    assert f"corrupted     local:{key}" in text and "1 corrupted" in text
    assert snapshot(ws) == before, "verify changes nothing"

    failed = cli("derive", "build", "by_month", "--full", expect=1).output
    assert f"raw object {key} (ehr/visits, visits.csv) is damaged" in failed
    assert "lithotse raw verify" in failed
    assert Catalog(ws).current("by_month").version == published, "nothing was published"
    assert read_table(ws, "by_month")[1] == good
    with pytest.raises(CorruptObject, match=key):
        list(read_stream(ws, "ehr", "visits"))

    path.write_bytes(original)
    cli("raw", "verify")
    build(ws, "by_month", full=True)
    assert read_table(ws, "by_month")[1] == good


def test_a_group_reading_its_input_once_refuses_a_damaged_object_and_publishes_nothing(tmp_path, monkeypatch):
    """Aggregates of one input that suppress are built together from one read of it (one table
    for all): a damaged object fails that read, before any member's query, and no member moves."""
    from lithotse_desktop.derive import build as build_module

    inbox = tmp_path / "in"
    visits_csv(inbox, rows=400)
    ws = csv_workspace(tmp_path / "ws", inbox)
    add_spec(ws, {**SPEC, "suppress_below": 3}, replace=True)
    add_spec(ws, {**SPEC, "name": "by_year", "grain": "year", "suppress_below": 3})
    build_all(ws)
    catalog = Catalog(ws)
    published = {n: catalog.current(n).version for n in ("by_month", "by_year")}
    key = the_object(ws)
    path = ws.store("raw").local_path(key)
    path.write_bytes(flip_a_digit(path.read_bytes()))
    shared = []
    load_shared = build_module._load_shared
    monkeypatch.setattr(build_module, "_load_shared", lambda ws, catalog, members, *rest: shared.append(
        sorted(w.name for w in members)) or load_shared(ws, catalog, members, *rest))
    with pytest.raises(CorruptObject, match=key):
        build_all(ws, full=True)
    assert shared == [["by_month", "by_year"]]
    assert {n: catalog.current(n).version for n in ("by_month", "by_year")} == published


def test_incremental_build_refuses_an_object_damaged_since_the_last_build(tmp_path):
    inbox = tmp_path / "in"
    visits_csv(inbox)
    ws = csv_workspace(tmp_path / "ws", inbox)
    key = the_object(ws)
    path = ws.store("raw").local_path(key)
    path.write_bytes(flip_a_digit(path.read_bytes()))
    published = Catalog(ws).current("by_month").version
    # a new landing of the same object for a wider range makes the next build read it again
    run_import(ws, "ehr", DateRange.parse("2023-01-01", "2024-12-31"), full=True)
    with pytest.raises(CorruptObject, match=f"raw object {key}"):
        build(ws, "by_month")
    assert Catalog(ws).current("by_month").version == published


def test_damage_that_breaks_parsing_is_reported_as_damage(workspace, tmp_path):
    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,10\n2024-01-02,20\n")
    workspace.add_source("vals", "lines", {"path": str(folder)}, {})
    run_import(workspace, "vals")
    [key] = [i.key for i in workspace.store("raw").list("raw/")]
    path = workspace.store("raw").local_path(key)
    path.write_bytes(path.read_bytes().replace(b"20\n", b"2x\n"))
    with pytest.raises(CorruptObject, match=f"raw object {key} \\(vals/values, a.txt\\)") as info:
        list(read_stream(workspace, "vals", "values"))
    assert "line 2" in str(info.value.__cause__), "the parse error is kept as the cause"


def test_missing_unreferenced_and_unreadable_manifests_are_reported(cli, workspace, tmp_path):
    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,10\n")
    (folder / "b.txt").write_text("2024-01-02,20\n")
    workspace.add_source("vals", "lines", {"path": str(folder)}, {})
    workspace.add_source("other", "lines", {"path": str(folder)}, {})
    landed = {i.manifest.original_name: i.manifest for i in run_import(workspace, "vals").landings}
    run_import(workspace, "other")
    store = workspace.store("raw")
    store.delete(landed["a.txt"].object_key)
    stray = b"2024-01-03,30\n"
    stray_key = f"raw/vals/{hashlib.sha256(stray).hexdigest()}"
    store.put_bytes(stray_key, stray)
    store.put_bytes("manifests/vals/values/broken.json", b"{not json")
    report = json.loads(cli("raw", "verify", "--json", "--source", "vals", expect=1).output)
    got = sorted((p["problem"], p["key"]) for p in report["problems"])
    assert got == [("bad-manifest", "manifests/vals/values/broken.json"),
                   ("missing", landed["a.txt"].object_key), ("unreferenced", stray_key)]
    summary = report["summary"]
    assert (summary["objects"], summary["ok"], summary["manifests"]) == (2, 1, 2)
    [missing] = [p for p in report["problems"] if p["problem"] == "missing"]
    assert missing["landings"][0]["id"] == landed["a.txt"].id
    # the other source is untouched and verifies clean on its own
    assert json.loads(cli("raw", "verify", "--json", "--source", "other").output)["problems"] == []
    assert "no source 'ghost'" in cli("raw", "verify", "--source", "ghost", expect=1).output


def test_s3_raw_store_damage_is_found_by_verify_and_the_streaming_build(seaweed, tmp_path):
    inbox = tmp_path / "in"
    visits_csv(inbox, rows=200)
    ws = csv_workspace(tmp_path / "ws", inbox,
                       {"url": seaweed.new_prefix(), **seaweed.store_options("client")})
    assert verify_raw(ws).clean
    published = Catalog(ws).current("by_month").version
    store = ws.store("raw")
    key = the_object(ws)
    store.put_bytes(key, flip_a_digit(store.get_bytes(key)))
    report = verify_raw(ws)
    assert [(p["problem"], p["store"], p["key"]) for p in report.problems] == [("corrupted", "bucket", key)]
    with pytest.raises(CorruptObject, match=f"raw object {key} \\(ehr/visits, visits.csv\\)"):
        build(ws, "by_month", full=True)
    assert Catalog(ws).current("by_month").version == published
    cache = ws.local_dir / "object-cache"
    assert not cache.exists() or not any(cache.iterdir()), "the CSV was streamed, not copied"


def test_a_damaged_local_copy_of_an_s3_object_is_refused_then_fetched_again(seaweed, tmp_path):
    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,10\n2024-01-02,20\n")
    ws = Workspace.create(tmp_path / "ws")
    ws.config["stores"]["bucket"] = {"url": seaweed.new_prefix(), **seaweed.store_options("client")}
    ws.config["tiers"]["raw"] = "bucket"
    ws.save()
    ws = Workspace.open(ws.root)
    ws.add_source("vals", "lines", {"path": str(folder)}, {})
    [landing] = run_import(ws, "vals").landings
    assert sum(r["value"] for b in read_stream(ws, "vals", "values") for r in b.to_pylist()) == 30
    copy = ws.local_dir / "object-cache" / landing.manifest.sha256
    assert copy.exists(), "this connector reads local files, so the object was fetched once"
    copy.write_bytes(copy.read_bytes().replace(b"10", b"19"))
    with pytest.raises(CorruptObject, match="local copy") as info:
        list(read_stream(ws, "vals", "values"))
    assert landing.manifest.object_key in str(info.value)
    assert not copy.exists(), "the damaged copy is dropped"
    assert sum(r["value"] for b in read_stream(ws, "vals", "values") for r in b.to_pylist()) == 30
    assert verify_raw(ws).clean, "the store's object itself was never damaged"
