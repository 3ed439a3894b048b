"""Sync rules, checked against a folder remote (the S3 specifics are in test_sync_s3.py)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from click.testing import CliRunner

from lithotse_desktop.errors import Cancelled, ConfigError, LithotseError
from lithotse_desktop.progress import Progress
from lithotse_desktop.storage import PreconditionFailed
from lithotse_desktop.storage.local import LocalStore
from lithotse_desktop.sync import is_mutable, open_remote, pull, push, status
from lithotse_desktop.sync.cli import sync_group

from .util import audit_of, audit_pending, data_of, is_audit, land, new_sync_record, pointer, rows, snapshot

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


@pytest.fixture
def remote(tmp_path):
    return (tmp_path / "remote").as_uri()


def test_push_then_pull_reproduces_the_workspace(make_ws, lines_plugin, remote, tmp_path):
    a, b = make_ws("a"), make_ws("b")
    land(a, tmp_path / "in", {"x.txt": "2024-01-01,1\n2024-01-02,2\n", "y.txt": "2024-02-01,3\n"})
    before = status(a, remote)
    assert len(before.to_push) == 4 and before.bytes_to_push > 0 and not before.in_sync

    first = push(a, remote)
    assert (first.copied, first.ok) == (4, True)
    pushed = new_sync_record(a, {}, direction="push", remote=remote, copied=4)
    target = LocalStore(a.root.parent / "remote")
    assert audit_of(target) == audit_of(a.store("raw")), "a push sends its own record at once"
    again = push(a, remote)
    assert (again.copied, again.pointers_updated) == (0, [])
    assert set(audit_of(a.store("raw"))) == {pushed}, "a no-op sync leaves no record"
    assert status(a, remote).in_sync

    b.add_source("vals", "lines", {"path": str(tmp_path / "in")}, {})
    to_pull = status(b, remote).to_pull
    assert len([k for k in to_pull if not is_audit(k)]) == 4 and pushed in to_pull
    assert pull(b, remote).copied == 5
    pulled = new_sync_record(b, {}, arrived={pushed}, direction="pull", remote=remote, copied=5)
    assert data_of(b.store("raw")) == data_of(a.store("raw"))
    assert rows(b) == rows(a) == [1, 2, 3]
    assert audit_pending(status(b, remote)) == ({pulled}, set()), "a pull's record waits for a push"
    before = audit_of(b.store("raw"))
    assert pull(b, remote).copied == 0 and audit_of(b.store("raw")) == before

    assert push(b, remote).copied == 1
    assert audit_of(b.store("raw")) == before, "sending only audit records is not itself recorded"
    assert status(b, remote).in_sync
    assert audit_pending(status(a, remote)) == (set(), {pulled})
    assert pull(a, remote).copied == 1
    assert snapshot(a.store("raw")) == snapshot(b.store("raw")) == snapshot(target)
    assert status(a, remote).in_sync


def test_objects_reach_the_remote_before_their_manifests(make_ws, lines_plugin, remote, tmp_path,
                                                         monkeypatch):
    a = make_ws("a")
    land(a, tmp_path / "in", {f"f{n}.txt": f"2024-01-0{n + 1},{n}\n" for n in range(5)})
    order: list[str] = []
    original = LocalStore.put_file

    def recording(self, key, path, **kwargs):
        if self.url == remote:
            order.append(key)
            if len(order) == 3:
                raise OSError("disk full")
        return original(self, key, path, **kwargs)

    monkeypatch.setattr(LocalStore, "put_file", recording)
    with pytest.raises(OSError):
        push(a, remote)
    target = LocalStore(a.root.parent / "remote")
    pushed = {i.key for i in target.list("")}
    assert pushed and all(key.startswith("raw/") for key in pushed | set(order))
    monkeypatch.setattr(LocalStore, "put_file", original)
    push(a, remote)
    assert snapshot(target) == snapshot(a.store("raw"))


def test_pointer_moves_with_compare_and_swap(make_ws, remote):
    a, b = make_ws("a"), make_ws("b")
    key = "derived/counts/CURRENT"
    a.store("derived").put_bytes(key, pointer("v1", T0))
    assert push(a, remote).pointers_updated == [key]
    a1 = new_sync_record(a, {}, direction="push", remote=remote, copied=0)
    assert pull(b, remote).pointers_updated == [key]
    b1 = new_sync_record(b, {}, arrived={a1}, direction="pull", copied=1)
    assert json.loads(b.store("raw").get_bytes(b1))["objects"] == [key]
    assert b.store("derived").get_bytes(key) == pointer("v1", T0)

    b.store("derived").put_bytes(key, pointer("v2", T0 + dt.timedelta(hours=1)))
    assert status(b, remote).pointers_to_push == [key]
    assert status(b, remote).to_push == [b1]
    assert status(a, remote).in_sync
    before = audit_of(b.store("raw"))
    assert push(b, remote).pointers_updated == [key]
    b2 = new_sync_record(b, before, direction="push", copied=1)
    assert status(b, remote).in_sync
    moved = status(a, remote)
    assert moved.pointers_to_pull == [key] and set(moved.to_pull) == {b1, b2}
    before = audit_of(a.store("raw"))
    assert push(a, remote).pointers_updated == [], "a stale client never pushes back its old value"
    assert audit_of(a.store("raw")) == before
    assert pull(a, remote).pointers_updated == [key]
    a2 = new_sync_record(a, before, arrived={b1, b2}, direction="pull", copied=2)
    assert a.store("derived").get_bytes(key) == pointer("v2", T0 + dt.timedelta(hours=1))
    assert audit_pending(status(a, remote)) == ({a2}, set())


def test_both_sides_moved_later_publication_wins(make_ws, remote):
    a, b = make_ws("a"), make_ws("b")
    key = "derived/counts/CURRENT"
    a.store("derived").put_bytes(key, pointer("v1", T0))
    push(a, remote)
    pull(b, remote)
    a.store("derived").put_bytes(key, pointer("va", T0 + dt.timedelta(hours=2)))
    b.store("derived").put_bytes(key, pointer("vb", T0 + dt.timedelta(hours=1)))
    assert push(a, remote).pointers_updated == [key]
    later_loses = push(b, remote)
    assert (later_loses.pointers_updated, later_loses.conflicts) == ([], [])
    assert status(b, remote).pointers_to_pull == [key]
    assert pull(b, remote).pointers_updated == [key]
    assert b.store("derived").get_bytes(key) == pointer("va", T0 + dt.timedelta(hours=2))


def test_undecidable_pointer_conflict_is_reported_and_left_alone(make_ws, remote):
    a, b = make_ws("a"), make_ws("b")
    key = "specs/counts.json"
    assert is_mutable(key)
    a.store("derived").put_bytes(key, b'{"name": "counts", "v": 1}')
    push(a, remote)
    pull(b, remote)
    a.store("derived").put_bytes(key, b'{"name": "counts", "v": "a"}')
    b.store("derived").put_bytes(key, b'{"name": "counts", "v": "b"}')
    push(a, remote)
    result = push(b, remote)
    assert result.conflicts == [key] and not result.ok
    assert "conflict: specs/counts.json" in result.summary()
    assert LocalStore(a.root.parent / "remote").get_bytes(key) == b'{"name": "counts", "v": "a"}'
    assert status(b, remote).conflicts == [key]
    assert pull(b, remote).conflicts == [key]
    assert b.store("derived").get_bytes(key) == b'{"name": "counts", "v": "b"}'

    before = audit_of(b.store("raw"))
    resolved = pull(b, remote, take_remote=True)
    assert resolved.pointers_updated == [key] and resolved.ok
    taken = new_sync_record(b, before, direction="pull", copied=0)
    assert b.store("derived").get_bytes(key) == b'{"name": "counts", "v": "a"}'
    assert audit_pending(status(b, remote)) == ({taken}, set())
    assert push(b, remote).ok and status(b, remote).in_sync


def test_pointer_write_that_loses_a_race_is_re_read(make_ws, remote, monkeypatch):
    a, b = make_ws("a"), make_ws("b")
    key = "derived/x/CURRENT"
    a.store("derived").put_bytes(key, pointer("v1", T0))
    push(a, remote)
    pull(b, remote)
    a.store("derived").put_bytes(key, pointer("va", T0 + dt.timedelta(hours=1)))
    target = LocalStore(a.root.parent / "remote")
    original = LocalStore.put_bytes
    raced: list[str] = []

    def sneaky(self, k, data, **kwargs):
        if self.url == remote and kwargs.get("if_match") and not raced:
            raced.append(k)  # another client publishes between our read and our write
            original(target, k, pointer("vb", T0 + dt.timedelta(hours=3)))
            raise PreconditionFailed(f"{k} changed")
        return original(self, k, data, **kwargs)

    monkeypatch.setattr(LocalStore, "put_bytes", sneaky)
    result = push(a, remote)
    assert raced == [key]
    assert result.pointers_updated == [] and result.ok
    assert target.get_bytes(key) == pointer("vb", T0 + dt.timedelta(hours=3))


def test_pull_rejects_a_damaged_content_addressed_object(make_ws, lines_plugin, remote, tmp_path):
    a, b = make_ws("a"), make_ws("b")
    [landing] = land(a, tmp_path / "in", {"x.txt": "2024-01-01,1\n"})
    push(a, remote)
    target = LocalStore(a.root.parent / "remote")
    target.put_bytes(landing.manifest.object_key, b"2024-01-01,9\n")
    with pytest.raises(LithotseError, match="does not match its sha256"):
        pull(b, remote)
    assert b.store("raw").stat(landing.manifest.object_key) is None


def test_size_mismatch_is_reported_not_overwritten(make_ws, remote):
    a = make_ws("a")
    a.store("raw").put_bytes("audit/2024/log.json", b"[1]")
    target = LocalStore(a.root.parent / "remote")
    target.put_bytes("audit/2024/log.json", b"[1, 2]")
    result = push(a, remote)
    assert result.mismatched == ["audit/2024/log.json"] and not result.ok
    assert target.get_bytes("audit/2024/log.json") == b"[1, 2]"


def test_other_prefixes_sync_generically_and_route_by_tier(make_ws, remote, tmp_path):
    a, b = make_ws("a"), make_ws("b")
    b.config["stores"]["l2"] = {"url": "derived-data"}
    b.config["tiers"]["derived"] = "l2"
    b.save()
    from lithotse_desktop.workspace import Workspace

    b = Workspace.open(b.root)
    a.store("raw").put_bytes("audit/2024/05/event.json", b"{}")
    a.store("derived").put_bytes("derived/x/parts/p.parquet", b"PAR1")
    push(a, remote)
    pull(b, remote)
    assert b.store("raw").get_bytes("audit/2024/05/event.json") == b"{}"
    assert b.store("derived").get_bytes("derived/x/parts/p.parquet") == b"PAR1"
    assert b.store("raw").stat("derived/x/parts/p.parquet") is None


def test_cancel_stops_and_a_rerun_finishes(make_ws, remote, monkeypatch):
    a = make_ws("a")
    original = LocalStore.put_file

    def slow(self, *args, **kwargs):
        time.sleep(0.02)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "put_file", slow)
    for n in range(30):
        a.store("raw").put_bytes(f"raw/s/t/{n:064x}", b"x" * 100)
    progress = Progress()
    seen: list[int] = []

    def cancel_soon(state):
        seen.append(state.done)
        if state.done >= 5:
            progress.cancel()

    progress.callback = cancel_soon
    with pytest.raises(Cancelled):
        push(a, remote, progress)
    assert 5 <= len(list(LocalStore(a.root.parent / "remote").list(""))) < 30
    assert push(a, remote).ok
    assert status(a, remote).in_sync


def test_a_cancel_while_pointers_move_lets_every_pointer_move(make_ws, remote):
    """Moving the pointers is the push's commit: a cancel asked while it runs waits for its end
    (every pointer moved, the pointer state saved, the push recorded); before, the next pointer's
    progress line raised, leaving some moved and the state unsaved, and the push said nothing was
    committed."""
    a = make_ws("a")
    keys = [f"derived/t{n}/CURRENT" for n in range(4)]
    for key in keys:
        a.store("derived").put_bytes(key, pointer("v1", T0))
    progress = Progress()
    progress.callback = lambda state: progress.cancel() if state.message.startswith("publishing pointers 1/") else None
    result = push(a, remote, progress)
    assert progress.cancelled and sorted(result.pointers_updated) == keys
    assert status(a, remote).in_sync


def test_remote_resolution(make_ws, tmp_path):
    ws = make_ws("a")
    with pytest.raises(ConfigError, match=r"no sync remote: pass --remote"):
        push(ws)
    ws.config["sync"] = {"remote": (tmp_path / "r1").as_uri()}
    assert open_remote(ws).url == (tmp_path / "r1").as_uri()
    ws.config["stores"]["team"] = {"url": (tmp_path / "r2").as_uri()}
    assert open_remote(ws, "team") is ws.named_store("team")
    assert open_remote(ws, (tmp_path / "r2").as_uri()) is ws.named_store("team")
    ws.config["tiers"] = {"raw": "team", "derived": "team", "cache": "team"}
    with pytest.raises(ConfigError, match="nothing to sync"):
        push(ws, "team")


def test_cli_push_status_pull(make_ws, lines_plugin, remote, tmp_path):
    a, b = make_ws("a"), make_ws("b")
    land(a, tmp_path / "in", {"x.txt": "2024-01-01,1\n"})
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(sync_group, list(args), catch_exceptions=False)
        assert result.exit_code == expect, result.output
        return result.output

    assert "to push: 2 object(s)" in run("status", "--workspace", str(a.root), "--remote", remote)
    assert f"pushed to {remote}: 2 object(s)" in run("push", "--workspace", str(a.root),
                                                      "--remote", remote)
    data = json.loads(run("status", "--workspace", str(a.root), "--remote", remote, "--json"))
    assert data["in_sync"] is True
    pulled = json.loads(run("pull", "--workspace", str(b.root), "--remote", remote, "--json"))
    assert pulled["copied"] == 3, "the landing's object and manifest, and the push's audit record"
    assert data_of(b.store("raw")) == data_of(a.store("raw"))
    assert "error: no sync remote" in run("push", "--workspace", str(b.root), expect=1)

    a.store("derived").put_bytes("specs/s.json", b"1")
    b.store("derived").put_bytes("specs/s.json", b"2")
    run("push", "--workspace", str(a.root), "--remote", remote)
    assert "conflict: specs/s.json" in run("push", "--workspace", str(b.root), "--remote", remote,
                                           expect=1)
    assert "pulled from" in run("pull", "--workspace", str(b.root), "--remote", remote,
                                "--take-remote")


def test_publication_times_compare_as_instants():
    from lithotse_desktop.sync.engine import _later

    utc = b'{"version": "a", "published_at": "2024-05-01T10:30:00+00:00"}'
    paris = b'{"version": "b", "published_at": "2024-05-01T12:00:00+02:00"}'
    assert _later(utc, paris) is True and _later(paris, utc) is False
    assert _later(utc, b'{"version": "c"}') is None
    assert _later(utc, b"not json") is None


def test_sync_commands_under_the_main_cli(make_ws, remote, monkeypatch):
    from lithotse_desktop.cli import main

    monkeypatch.setitem(main.commands, "sync", sync_group)
    a = make_ws("a")
    a.store("raw").put_bytes("audit/e.json", b"{}")
    runner = CliRunner()
    result = runner.invoke(main, ["--workspace", str(a.root), "sync", "push", "--remote", remote],
                           catch_exceptions=False)
    assert result.exit_code == 0 and "1 object(s)" in result.output
    result = runner.invoke(main, ["--workspace", str(a.root), "sync", "status"], catch_exceptions=False)
    assert result.exit_code == 1 and "error: no sync remote" in result.output


def test_audit_records_travel_with_the_workspace(make_ws, lines_plugin, remote, tmp_path):
    from lithotse_desktop import audit
    from lithotse_desktop.jobs import import_and_build

    a, b = make_ws("a"), make_ws("b")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_text("2024-01-01,1\n2024-01-02,2\n")
    a.add_source("vals", "lines", {"path": str(tmp_path / "in")}, {})
    outcome = import_and_build(a, "vals")
    [imported] = audit.entries(a, action="import")
    assert imported["objects"] == [m.manifest.object_key for m in outcome.imported.landings]
    pushed = push(a, remote)
    pulled = pull(b, remote)

    on_b = {e["id"]: e for e in audit.entries(b)}
    assert on_b[imported["id"]] == imported
    [a_sync] = audit.entries(a, action="sync")
    assert on_b[a_sync["id"]] == a_sync
    assert (a_sync["details"]["direction"], a_sync["details"]["remote"],
            a_sync["details"]["copied"]) == ("push", remote, pushed.copied)
    [b_sync] = [e for e in on_b.values() if e["id"] not in {imported["id"], a_sync["id"]}]
    assert (b_sync["action"], b_sync["details"]["direction"], b_sync["details"]["copied"]) == (
        "sync", "pull", pulled.copied)
    b.add_source("vals", "lines", {"path": str(tmp_path / "in")}, {})
    assert rows(b) == rows(a) == [1, 2]
