"""The check reads a steady source file while a thread stages it; what lands must be exactly
what was checked, so a source that changes meanwhile is refused and nothing lands."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from lithotse_desktop.connectors import RawObject
from lithotse_desktop.errors import InputError
from lithotse_desktop.hookspecs import hookimpl
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import landing, run_import
from lithotse_desktop.raw.index import open_index
from tests.support.lines_connector import LinesConnector

CONTENT = "".join(f"2024-01-{d:02d},{d}\n" for d in range(1, 29)) * 50


class WatchedLines(LinesConnector):
    """The lines connector, telling the test which file it read and letting it act meanwhile."""

    name = "watched-lines"
    during_read: Callable[[Path], None] | None = None
    read_paths: list[Path] = []

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        type(self).read_paths.append(Path(obj.path or ""))
        if type(self).during_read is not None:
            type(self).during_read(Path(self.settings["path"]) / obj.name)
        yield from super().read(obj)


class _Plugin:
    @hookimpl
    def lithotse_register_connectors(self):
        return [WatchedLines]


@pytest.fixture
def source(workspace, tmp_path, monkeypatch):
    """A source of one file older than the (shortened) racy window, so it is checked in place."""
    monkeypatch.setattr(landing, "RACY_SECONDS", 0.05)
    monkeypatch.setattr(WatchedLines, "during_read", None)
    monkeypatch.setattr(WatchedLines, "read_paths", [])
    reset_plugin_manager()
    get_plugin_manager().register(_Plugin(), "watched-lines-test")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text(CONTENT)
    workspace.add_source("vals", "watched-lines", {"path": str(folder)}, {})
    time.sleep(0.1)
    yield folder / "a.txt"
    reset_plugin_manager()


def _nothing_landed(workspace) -> None:
    assert list(workspace.store("raw").list("")) == []
    index = open_index(workspace)
    try:
        assert index.landings("vals") == []
    finally:
        index.close()
    staging = workspace.local_dir / "staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_a_steady_source_is_checked_in_place_and_lands_unchanged(workspace, source):
    [landed] = run_import(workspace, "vals").landings
    assert WatchedLines.read_paths == [source]
    m = landed.manifest
    assert workspace.store("raw").get_bytes(m.object_key) == source.read_bytes()
    assert (m.bytes, m.records) == (len(CONTENT), 28 * 50)


def _append(path: Path) -> None:
    with open(path, "a") as fh:
        fh.write("2024-02-01,99\n")


def _rewrite_same_size_keeping_mtime(path: Path) -> None:
    st = path.stat()
    path.write_text(CONTENT.replace("2024-01-05,5", "2024-01-05,6"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def _replace(path: Path) -> None:
    other = path.with_suffix(".new")
    other.write_text(CONTENT)
    os.replace(other, path)


@pytest.mark.parametrize("change, refusal", [
    (_append, "changed while it was being imported"),
    (_rewrite_same_size_keeping_mtime, "changed while it was being imported"),
    (_replace, "changed while it was being imported"),
    (Path.unlink, "No such file"),  # gone before the connector opened it: its own error
])
def test_a_source_changed_during_the_check_is_refused_and_nothing_lands(workspace, source, change, refusal):
    WatchedLines.during_read = change
    with pytest.raises(InputError, match=rf"^a\.txt: .*{refusal}"):
        run_import(workspace, "vals")
    _nothing_landed(workspace)


def test_a_freshly_written_source_is_staged_first_and_the_staged_copy_checked(workspace, source, monkeypatch):
    monkeypatch.setattr(landing, "RACY_SECONDS", 3600.0)
    WatchedLines.during_read = _append
    [landed] = run_import(workspace, "vals").landings
    [read] = WatchedLines.read_paths
    assert read != source and read.parent.parent == workspace.local_dir / "staging"
    assert workspace.store("raw").get_bytes(landed.manifest.object_key) == CONTENT.encode()
    assert landed.manifest.records == 28 * 50
