"""A landing's range is stored once, in its manifest; manifests of version 1 (range_from /
range_to, file cursors repeating their ranges) are still read, listed and honoured."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lithotse_desktop.connectors import fold_cursor
from lithotse_desktop.dates import DateRange
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.raw.index import open_index
from lithotse_desktop.raw.manifest import MANIFEST_VERSION, Manifest
from tests.support import lines_connector

V1_FIXTURE = Path(__file__).parent / "data" / "manifest-v1.json"
JAN = {"from": "2024-01-01", "to": "2024-01-31"}
FEB = {"from": "2024-02-01", "to": "2024-02-29"}
MAR = {"from": "2024-03-01", "to": "2024-03-31"}


@pytest.fixture
def old_landing(workspace, tmp_path):
    """A source whose one file was landed by a version 1 Lithotse (for February, after January)."""
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    folder = tmp_path / "in"
    folder.mkdir()
    data = folder / "a.txt"
    data.write_text("2024-01-05,1\n2024-02-10,2\n")
    workspace.add_source("vals", "lines", {"path": str(folder)}, {})
    body = data.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    text = (V1_FIXTURE.read_text("utf-8").replace("@PATH@", str(data)).replace("@SHA@", sha)
            .replace("@SIZE@", str(len(body))).replace("@MTIME@", str(data.stat().st_mtime_ns)))
    raw = workspace.store("raw")
    raw.put_bytes(f"raw/vals/{sha}", body)
    manifest = Manifest.loads(text)
    raw.put_bytes(manifest.key, text.encode("utf-8"))
    yield data, text
    reset_plugin_manager()


def _stored(workspace, manifest: Manifest) -> dict:
    return json.loads(workspace.store("raw").get_bytes(manifest.key))


def test_version_1_manifest_reads_with_its_range_and_keeps_its_layout(old_landing):
    _data, text = old_landing
    manifest = Manifest.loads(text)
    assert manifest.manifest_version == 1 < MANIFEST_VERSION
    assert manifest.date_range == DateRange.parse("2024-02-01", "2024-02-29")
    assert (manifest.range_from, manifest.range_to) == ("2024-02-01", "2024-02-29")
    public = manifest.to_json()
    assert (public["range_from"], public["range_to"]) == ("2024-02-01", "2024-02-29")
    assert "range" not in public and "date_range" not in public
    assert json.loads(manifest.dumps()) == json.loads(text)


def test_old_landings_count_for_the_incremental_state(workspace, old_landing):
    data, _text = old_landing
    index = open_index(workspace)
    try:
        state = index.cursors("vals")
    finally:
        index.close()
    assert state["values"]["files"][str(data)]["ranges"] == [JAN, FEB]
    assert run_import(workspace, "vals", DateRange.from_json(JAN)).landings == []
    assert run_import(workspace, "vals", DateRange.from_json(FEB)).landings == []

    [march] = run_import(workspace, "vals", DateRange.from_json(MAR)).landings
    stored = _stored(workspace, march.manifest)
    assert stored["manifest_version"] == MANIFEST_VERSION == 2
    assert stored["range"] == MAR
    assert "range_from" not in stored and "range_to" not in stored
    assert stored["cursor"] == {"files": {str(data): {"size": data.stat().st_size,
                                                      "mtime_ns": data.stat().st_mtime_ns}}}

    index = open_index(workspace, rebuild=True)
    try:
        assert index.cursors("vals")["values"]["files"][str(data)]["ranges"] == [JAN, FEB, MAR]
    finally:
        index.close()
    assert run_import(workspace, "vals", DateRange.from_json(MAR)).landings == []
    data.write_text("2024-01-05,1\n2024-02-10,2\n2024-02-11,3\n")
    changed = run_import(workspace, "vals", DateRange.from_json(JAN)).landings
    assert [item.manifest.original_name for item in changed] == ["a.txt"]


def test_listings_keep_their_range_keys_for_both_versions(workspace, old_landing, cli):
    run_import(workspace, "vals", DateRange.from_json(MAR))
    listed = json.loads(cli("raw", "ls", "--json").output)
    assert [(m["manifest_version"], m["range_from"], m["range_to"]) for m in listed] == [
        (1, FEB["from"], FEB["to"]), (2, MAR["from"], MAR["to"])]
    assert all("range" not in m for m in listed)
    for row in listed:
        shown = json.loads(cli("raw", "show", row["id"], "--json").output)
        assert (shown["range_from"], shown["range_to"]) == (row["range_from"], row["range_to"])
    # one object landed for February (version 1) and March: only its February record is in a landing's range
    rows = [r for batch in read_stream(workspace, "vals", "values") for r in batch.to_pylist()]
    assert [(str(r["day"]), r["value"]) for r in rows] == [("2024-02-10", 2)]


def test_fold_cursor_adds_each_landing_range_to_the_files_it_names():
    file_a = {"size": 10, "mtime_ns": 1}
    state = fold_cursor(None, {"files": {"a": file_a}, "columns": {"x": "int"}}, DateRange.from_json(JAN))
    state = fold_cursor(state, {"files": {"b": {"size": 5, "mtime_ns": 2}}}, DateRange.from_json(FEB))
    state = fold_cursor(state, {"files": {"a": file_a}, "columns": {"x": "str"}}, DateRange.from_json(MAR))
    assert state["columns"] == {"x": "str"}
    assert state["files"] == {"a": {**file_a, "ranges": [JAN, MAR]}, "b": {"size": 5, "mtime_ns": 2, "ranges": [FEB]}}
    quarter = DateRange.parse("2024-01-01", "2024-03-31")
    assert fold_cursor(state, {"files": {"a": file_a}}, quarter)["files"]["a"]["ranges"] == [quarter.to_json()]
    changed = fold_cursor(state, {"files": {"a": {"size": 11, "mtime_ns": 3}}}, DateRange.from_json(FEB))
    assert changed["files"]["a"] == {"size": 11, "mtime_ns": 3, "ranges": [FEB]}
    assert fold_cursor(changed, {"since": "x"}, DateRange()) == {"since": "x"}
