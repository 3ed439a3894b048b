from __future__ import annotations

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import InputError
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.raw.index import open_index
from lithotse_desktop.raw.manifest import Manifest
from tests.support import lines_connector


@pytest.fixture
def lines_source(workspace, tmp_path):
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1\n2024-01-15,2\n2024-02-01,3\n")
    workspace.add_source("vals", "lines", {"path": str(folder)}, {})
    yield folder
    reset_plugin_manager()


def test_landing_counts_range_and_stores_bytes_unchanged(workspace, lines_source):
    result = run_import(workspace, "vals", DateRange.parse("2024-01-01", "2024-01-31"))
    [landing] = result.landings
    m = landing.manifest
    assert (m.records, m.records_in_range, m.records_out_of_range) == (3, 2, 1)
    assert (m.date_min, m.date_max) == ("2024-01-01", "2024-02-01")
    raw = workspace.store("raw")
    assert raw.get_bytes(m.object_key) == (lines_source / "a.txt").read_bytes()
    assert m.object_key == f"raw/vals/{m.sha256}"
    stored = Manifest.loads(raw.get_bytes(m.key))
    assert stored.to_json() == m.to_json()
    rows = pa_rows(read_stream(workspace, "vals", "values"))
    assert [r["value"] for r in rows] == [1, 2]


def pa_rows(batches):
    out = []
    for b in batches:
        out.extend(b.to_pylist())
    return out


def test_incremental_and_same_bytes_stored_once(workspace, lines_source):
    rng = DateRange.parse("2024-01-01", "2024-12-31")
    first = run_import(workspace, "vals", rng)
    assert len(first.landings) == 1
    assert run_import(workspace, "vals", rng).landings == []
    again = run_import(workspace, "vals", rng, full=True)
    assert again.landings[0].manifest.already_stored
    (lines_source / "b.txt").write_text("2024-03-01,4\n")
    third = run_import(workspace, "vals", rng)
    assert [item.manifest.original_name for item in third.landings] == ["b.txt"]
    objects = [o.key for o in workspace.store("raw").list("raw/")]
    assert len(objects) == 2


def test_bad_file_lands_nothing(workspace, lines_source):
    (lines_source / "b.txt").write_text("2024-03-01,4\nnot a line\n")
    with pytest.raises(InputError, match=r"b.txt, line 2"):
        run_import(workspace, "vals")
    assert list(workspace.store("raw").list("")) == []
    index = open_index(workspace)
    assert index.landings() == []
    index.close()


def test_index_is_rebuildable(workspace, lines_source):
    run_import(workspace, "vals")
    (workspace.local_dir / "raw-index.sqlite").unlink()
    index = open_index(workspace)
    assert len(index.landings("vals")) == 1
    index.close()


def test_each_manifest_records_only_its_own_file(workspace, lines_source):
    for i in range(30):
        (lines_source / f"f{i:02d}.txt").write_text(f"2024-01-{i % 28 + 1:02d},{i}\n")
    first = run_import(workspace, "vals")
    assert len(first.landings) == 31
    assert all(len(item.manifest.cursor["files"]) == 1 for item in first.landings)
    assert run_import(workspace, "vals").landings == []
    (lines_source / "f07.txt").write_text("2024-02-01,7\n")
    assert [m.manifest.original_name for m in run_import(workspace, "vals").landings] == ["f07.txt"]
