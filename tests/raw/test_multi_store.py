"""A workspace reading several raw stores: its own (imports write there) plus ``[tiers] raw_read``."""

from __future__ import annotations

import json
import sqlite3

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import ConfigError
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.raw.index import landing_store, open_index
from lithotse_desktop.workspace import Workspace
from tests.support import lines_connector

JAN = DateRange.parse("2024-01-01", "2024-01-31")


@pytest.fixture
def lines_plugin():
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    yield
    reset_plugin_manager()


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1\n2024-01-15,2\n2024-02-01,3\n")
    return folder


def _teammate(tmp_path, name: str, team_store: dict, inbox) -> Workspace:
    """A second workspace whose raw tier is the shared store, with the same source."""
    mate = Workspace.create(tmp_path / name)
    mate.config["stores"]["team"] = team_store
    mate.config["tiers"]["raw"] = "team"
    mate.save()
    mate = Workspace.open(mate.root)
    mate.add_source("vals", "lines", {"path": str(inbox)}, {})
    return mate


def _reader(workspace: Workspace, team_store: dict, inbox) -> Workspace:
    workspace.config["stores"]["team"] = team_store
    workspace.config["tiers"]["raw_read"] = ["team"]
    workspace.save()
    ws = Workspace.open(workspace.root)
    ws.add_source("vals", "lines", {"path": str(inbox)}, {})
    return ws


def _values(ws: Workspace) -> list[int]:
    return sorted(r["value"] for b in read_stream(ws, "vals", "values") for r in b.to_pylist())


def test_landings_of_a_shared_raw_store_are_read_and_not_imported_again(
        workspace, tmp_path, inbox, lines_plugin, cli):
    team = {"url": str(tmp_path / "team-data")}
    mate = _teammate(tmp_path, "mate", team, inbox)
    [theirs] = run_import(mate, "vals", JAN).landings
    ws = _reader(workspace, team, inbox)
    assert [name for name, _store in ws.raw_stores()] == ["local", "team"]

    index = open_index(ws)
    try:
        [indexed] = index.landings("vals")
    finally:
        index.close()
    assert indexed.to_json() == theirs.manifest.to_json(), "the manifest is indexed as written"
    assert landing_store(indexed) == "team"
    assert "store" not in indexed.to_json()
    assert _values(ws) == [1, 2], "the object is read from the store its manifest came from"
    assert not (ws.root / "data" / "raw").exists()

    again = run_import(ws, "vals", JAN)
    assert again.landings == [], "the teammate's landing already covers a.txt for this range"
    (inbox / "b.txt").write_text("2024-01-20,10\n")
    [mine] = run_import(ws, "vals", JAN).landings
    assert mine.manifest.original_name == "b.txt"
    assert ws.store("raw").exists(mine.manifest.object_key)
    assert not ws.named_store("team").exists(mine.manifest.object_key), "imports write to raw only"
    assert _values(ws) == [1, 2, 10]

    rows = json.loads(cli("raw", "ls", "--json").output)
    assert [(r["original_name"], r["store"]) for r in rows] == [("a.txt", "team"), ("b.txt", "local")]
    assert _values(mate) == [1, 2], "the teammate does not read this workspace's own store"


def test_a_store_dropped_from_raw_read_leaves_the_index(workspace, tmp_path, inbox, lines_plugin):
    team = {"url": str(tmp_path / "team-data")}
    run_import(_teammate(tmp_path, "mate", team, inbox), "vals", JAN)
    ws = _reader(workspace, team, inbox)
    index = open_index(ws)
    assert len(index.landings()) == 1
    index.close()
    ws.config["tiers"]["raw_read"] = []
    ws.save()
    ws = Workspace.open(ws.root)
    index = open_index(ws)
    try:
        assert index.landings() == []
    finally:
        index.close()
    assert len(run_import(ws, "vals", JAN).landings) == 1, "without the team store a.txt is new"


def test_an_index_from_before_named_stores_is_upgraded(workspace, tmp_path, inbox, lines_plugin):
    workspace.add_source("vals", "lines", {"path": str(inbox)}, {})
    path = workspace.local_dir / "raw-index.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE landings (key TEXT PRIMARY KEY, id TEXT NOT NULL, "
                     "source TEXT NOT NULL, stream TEXT NOT NULL, sha256 TEXT NOT NULL, "
                     "landed_at TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL);")
    db.close()
    [landing] = run_import(workspace, "vals", JAN).landings
    index = open_index(workspace)
    try:
        [indexed] = index.landings()
    finally:
        index.close()
    assert indexed.id == landing.manifest.id and landing_store(indexed) == "local"
    assert _values(workspace) == [1, 2]


@pytest.mark.parametrize("raw_read, message", [
    ("team", "must be a list of store names"),
    (["nowhere"], "raw_read names 'nowhere', which is not in [stores]"),
])
def test_raw_read_is_checked(workspace, raw_read, message):
    workspace.config["tiers"]["raw_read"] = raw_read
    workspace.save()
    with pytest.raises(ConfigError) as caught:
        Workspace.open(workspace.root)
    assert message in str(caught.value)


def test_a_second_raw_store_on_s3(seaweed, workspace, tmp_path, inbox, lines_plugin, cli):
    url = seaweed.new_prefix()
    team = {"url": url, **seaweed.store_options("client")}
    mate = _teammate(tmp_path, "mate", team, inbox)
    [theirs] = run_import(mate, "vals", JAN).landings
    bucket = seaweed.store(url, "admin")
    assert bucket.exists(theirs.manifest.object_key)

    ws = _reader(workspace, team, inbox)
    assert _values(ws) == [1, 2]
    assert run_import(ws, "vals", JAN).landings == []
    rows = json.loads(cli("raw", "ls", "--json").output)
    assert [(r["id"], r["store"]) for r in rows] == [(theirs.manifest.id, "team")]
    assert (ws.local_dir / "object-cache" / theirs.manifest.sha256).exists()
