"""SIGKILL a real import subprocess at several points; the store must stay consistent and a
second run must land every file exactly once."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest

from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.raw.index import open_index
from lithotse_desktop.raw.manifest import Manifest
from tests.support import lines_connector

FILES = 40


def kill_when(ws, marker: str) -> bool:
    """Start the worker and kill it at the first progress line that starts with ``marker``
    (``committing|K``: once K objects are committed)."""
    prefix, _, done = marker.partition("|")
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.import_worker", str(ws.root), "vals"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = False
    for line in proc.stdout:
        text, _, count = line.strip().rpartition("|")
        if text.startswith(prefix) and (not done or count == done):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.wait(timeout=60)
    return killed


def check_store(ws) -> list[Manifest]:
    store = ws.store("raw")
    manifests = [Manifest.loads(store.get_bytes(o.key)) for o in store.list("manifests/")]
    for m in manifests:
        data = store.get_bytes(m.object_key)
        assert hashlib.sha256(data).hexdigest() == m.sha256 and len(data) == m.bytes
    for obj in store.list("raw/"):
        assert hashlib.sha256(store.get_bytes(obj.key)).hexdigest() == obj.key.rsplit("/", 1)[1]
    return manifests


@pytest.mark.parametrize("marker", [
    "fetching", "checking f005", "checking f039", "committing|0", "committing|3", "committing|20",
    "committing|39"])
def test_kill_then_rerun_lands_each_file_once(workspace, tmp_path, marker):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"f{i:03d}.txt").write_text("".join(f"2024-01-{d:02d},{i}\n" for d in range(1, 29)) * 20)
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    workspace.add_source("vals", "lines", {"path": str(folder)}, {})
    assert kill_when(workspace, marker)
    before = check_store(workspace)
    try:
        run_import(workspace, "vals")
    finally:
        reset_plugin_manager()
    after = check_store(workspace)
    names = sorted(m.original_name for m in after)
    assert names == [f"f{i:03d}.txt" for i in range(FILES)]
    assert {m.id for m in before} <= {m.id for m in after}
    index = open_index(workspace)
    assert len(index.landings("vals")) == FILES
    index.close()
    staging = workspace.local_dir / "staging"
    assert not staging.exists() or not any(staging.iterdir())
