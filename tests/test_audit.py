"""The audit tier: create-only records, each named by a digest of its content; API reads counted in."""

from __future__ import annotations

import json

import pytest
import requests

from lithotse_desktop import audit
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.errors import LithotseError
from lithotse_desktop.serve import start_server_thread, workspace_token
from lithotse_desktop.serve.readlog import ReadLog
from lithotse_desktop.storage import PreconditionFailed
from lithotse_desktop.sync import pull, push
from lithotse_desktop.workspace import Workspace
from tests.cache.helpers import build_sample
from tests.derive.conftest import lines  # noqa: F401 - a fixture, used by name


def with_trail(ws: Workspace, folder) -> Workspace:
    ws.config["stores"]["trail"] = {"url": str(folder)}
    ws.config["tiers"]["audit"] = "trail"
    ws.save()
    return Workspace.open(ws.root)


def test_records_go_to_the_audit_tier_and_are_never_overwritten(workspace, tmp_path):
    ws = with_trail(workspace, tmp_path / "trail")
    entry = audit.record(ws, "export", derivative="x", rows=3)
    key = audit.entry_key(entry)
    assert ws.store("audit").exists(key) and not ws.store("raw").exists(key)
    with pytest.raises(PreconditionFailed):
        ws.store("audit").put_bytes(key, b"{}", if_none_match=True)
    assert audit.entries(ws) == [entry]
    assert entry["who"] and entry["details"] == {"derivative": "x", "rows": 3}


def test_a_record_changed_after_it_was_written_is_reported(workspace, tmp_path):
    ws = with_trail(workspace, tmp_path / "trail")
    entry = audit.record(ws, "export", derivative="x", rows=3)
    path = tmp_path / "trail" / audit.entry_key(entry)
    path.write_text(json.dumps({**entry, "details": {"derivative": "x", "rows": 0}}, sort_keys=True))
    with pytest.raises(LithotseError, match="was changed after it was written: its content no longer matches"):
        audit.entries(ws)
    path.write_text(json.dumps({**entry, "id": "20240101T000000000000Z-0123456789abcdef"}))
    with pytest.raises(LithotseError, match="was changed after it was written: it names itself"):
        audit.entries(ws)


def test_records_written_before_names_carried_a_digest_are_still_read(workspace):
    old = {"id": "20240101T120000000000Z-0a1b2c3d", "at": "2024-01-01T12:00:00.000000Z", "who": "ann",
           "host": "h", "action": "import", "objects": [], "details": {}}
    workspace.store("audit").put_bytes(audit.entry_key(old), json.dumps(old).encode())
    assert audit.entries(workspace) == [old]


def test_api_reads_and_refusals_are_counted_into_one_record(workspace, lines, tmp_path):  # noqa: F811 - fixture
    ws = with_trail(workspace, tmp_path / "trail")
    ws.config["serve"] = {"audit_seconds": 3600}
    build_sample(ws, lines)
    add_spec(ws, {"name": "rows", "kind": "sql", "inputs": {"v": {"source": "vals", "stream": "values"}},
                  "sql": "SELECT grp, value FROM v"})
    server = start_server_thread(ws, 0)
    headers = {"Authorization": f"Bearer {workspace_token(ws)}"}
    base = server.url + "/api/v1/derivatives"
    try:
        for _ in range(2):
            assert requests.get(f"{base}/visits/table", headers=headers, timeout=10).status_code == 200
        for grp in ("a", "b", "a"):
            assert requests.get(f"{base}/visits/value", params={"measure": "n", "grp": grp, "from": "2024-01-01",
                                                               "to": "2024-01-31"}, headers=headers,
                                timeout=10).status_code == 200
        assert requests.get(f"{base}/rows/table", headers=headers, timeout=10).status_code == 403
        assert audit.entries(ws, action="api-read") == [], "counted, written later"
    finally:
        server.stop()
    [record] = audit.entries(ws, action="api-read")
    version = next(r for r in record["details"]["reads"] if r["derivative"] == "visits")["version"]
    assert record["details"]["reads"] == [{"derivative": "rows", "version": None, "refused": 1},
                                          {"derivative": "visits", "version": version, "table": 2, "value": 3}]
    assert record["details"]["requests"] == 6


def test_a_failed_audit_write_keeps_the_counts_for_the_next_record(workspace, monkeypatch):
    log = ReadLog(workspace, interval=3600)
    log.note("d", "v1", "value")
    real = audit.record
    monkeypatch.setattr(audit, "record", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    assert log.flush() is None
    monkeypatch.setattr(audit, "record", real)
    log.note("d", "v1", "value")
    written = log.flush()
    assert written is not None and written["details"]["reads"] == [{"derivative": "d", "version": "v1", "value": 2}]
    assert log.flush() is None, "nothing new, nothing written"


def test_reads_are_written_while_the_server_runs_once_the_interval_has_passed(workspace):
    log = ReadLog(workspace, interval=0)
    for _ in range(5):
        log.note("d", "v1", "table")
    log.close()
    total = sum(r["details"]["requests"] for r in audit.entries(workspace, action="api-read"))
    assert total == 5


def test_audit_records_arrive_in_the_audit_tier_on_pull(make_ws_pair, tmp_path):
    a, b = make_ws_pair
    entry = audit.record(a, "export", derivative="x")
    remote = str(tmp_path / "remote")
    push(a, remote)
    pull(b, remote)
    key = audit.entry_key(entry)
    assert b.store("audit").exists(key) and not b.store("raw").exists(key)
    assert entry in audit.entries(b)


@pytest.fixture
def make_ws_pair(tmp_path):
    a = Workspace.create(tmp_path / "a")
    b = with_trail(Workspace.create(tmp_path / "b"), tmp_path / "b-trail")
    return a, b
