"""Sync against a real SeaweedFS: end to end, no-op cost, a killed run, two clients at once."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lithotse_desktop import audit
from lithotse_desktop.progress import Progress
from lithotse_desktop.secrets import secret_ref
from lithotse_desktop.storage.s3 import AccessDenied, S3Store
from lithotse_desktop.sync import pull, push, status
from lithotse_desktop.workspace import Workspace

from .util import audit_of, audit_pending, data_of, land, new_sync_record, pointer, rows, snapshot, split

MiB = 1 << 20


def use_remote(ws: Workspace, seaweed, url: str, identity: str = "client", **extra) -> Workspace:
    """Point the workspace's [sync] table at ``url`` with credentials in the keyring."""
    options = seaweed.store_options(identity, keyring_ref=secret_ref(ws.id, "sync"), **extra)
    ws.config["sync"] = {"remote": url, **options}
    ws.save()
    return Workspace.open(ws.root)


@pytest.fixture
def s3_calls(monkeypatch):
    """Counts S3 operations by name across every S3Store client created during the test."""
    calls: collections.Counter = collections.Counter()
    original = S3Store._make_client

    def counting(self):
        client = original(self)
        client.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
        return client

    monkeypatch.setattr(S3Store, "_make_client", counting)
    return calls


def raw_key(data: bytes) -> str:
    return f"raw/src/stream/{hashlib.sha256(data).hexdigest()}"


def test_push_and_pull_through_s3(seaweed, make_ws, lines_plugin, tmp_path):
    url = seaweed.new_prefix()
    a = use_remote(make_ws("a"), seaweed, url)
    b = use_remote(make_ws("b"), seaweed, url)
    land(a, tmp_path / "in", {"x.txt": "2024-01-01,1\n", "y.txt": "2024-03-01,2\n"})
    a.store("derived").put_bytes("derived/n/CURRENT", pointer("v1"))
    messages: list[str] = []
    result = push(a, progress=Progress(lambda state: messages.append(state.message)))
    assert f"listing {url}" in messages and "pushing 4/4 object(s), 0.0/0.0 MB" in messages
    assert (result.copied, result.pointers_updated, result.ok) == (4, ["derived/n/CURRENT"], True)
    pushed = new_sync_record(a, {}, direction="push", remote=url, copied=4)
    assert status(a).in_sync

    b.add_source("vals", "lines", {"path": str(tmp_path / "in")}, {})
    assert pull(b).copied == 5, "four landed objects and the push's audit record"
    pulled = new_sync_record(b, {}, arrived={pushed}, direction="pull", remote=url, copied=5)
    assert rows(b) == rows(a) == [1, 2]
    assert snapshot(seaweed.store(url, "admin")) == snapshot(a.store("raw"))
    assert data_of(b.store("raw")) == data_of(a.store("raw"))
    assert audit_pending(status(b)) == ({pulled}, set())
    assert push(b).copied == 1 and status(b).in_sync
    assert snapshot(seaweed.store(url, "admin")) == snapshot(b.store("raw"))
    for ws in (a, b):
        text = (ws.root / "lithotse.toml").read_text()
        assert seaweed.credentials["client"]["secret_access_key"] not in text


def test_manager_identity_cannot_push_to_the_raw_bucket(seaweed, make_ws):
    ws = use_remote(make_ws("m"), seaweed, seaweed.new_prefix(), identity="manager")
    ws.store("raw").put_bytes("raw/s/t/" + "0" * 64, b"x")
    with pytest.raises(AccessDenied, match=r"s3://raw-bucket/t-\w+ .*access denied"):
        push(ws)


def test_noop_sync_of_10000_objects_reads_no_bodies(seaweed, make_ws, s3_calls):
    url = seaweed.new_prefix()
    ws = use_remote(make_ws("big"), seaweed, url)
    for name in ("a", "b", "c"):
        ws.store("derived").put_bytes(f"derived/{name}/CURRENT", pointer(name))
    assert len(push(ws).pointers_updated) == 3
    raw_dir = ws.root / "data" / "raw"
    for d in range(100):
        folder = raw_dir / "src" / f"s{d:02d}"
        folder.mkdir(parents=True)
        for n in range(100):
            (folder / f"{d * 100 + n:064x}").write_bytes(b"%d" % n)
    seaweed.seed(url, raw_dir)  # the same 10,000 objects, put there fast by the filer

    records = audit_of(ws.store("raw"))
    s3_calls.clear()
    started = time.monotonic()
    again = push(ws)
    pushed_in = time.monotonic() - started
    assert (again.copied, again.already_there, again.pointers_updated) == (0, 0, [])
    pulled = pull(ws)
    assert (pulled.copied, pulled.pointers_updated) == (0, [])
    assert set(s3_calls) == {"ListObjectsV2"}, s3_calls
    assert s3_calls["ListObjectsV2"] <= 2 * 11
    assert audit_of(ws.store("raw")) == records, "a no-op sync leaves no record"
    print(f"no-op push of 10,003 objects: {pushed_in:.2f} s")


def _write_kill_fixture(ws: Workspace) -> None:
    store = ws.store("raw")
    for n in range(40):
        data = f"object {n}\n".encode() * 50
        store.put_bytes(raw_key(data), data)
        if n % 10 == 0:
            store.put_bytes(f"manifests/src/stream/2024{n:04d}.json", b'{"n": %d}' % n)
    big = os.urandom(40 * MiB)
    store.put_bytes(raw_key(big), big)
    ws.store("derived").put_bytes("derived/big/CURRENT", pointer("v1"))


def _wait_for_a_started_upload(seaweed, url: str, proc: subprocess.Popen) -> bool:
    admin = seaweed.client("admin")
    bucket, prefix = url[len("s3://"):].split("/", 1)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        for upload in admin.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []):
            parts = admin.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if parts.get("Parts"):
                return True
        time.sleep(0.01)
    return False


def test_killed_push_resumes_to_the_same_end_state(seaweed, make_ws, s3_calls):
    options = {"multipart_threshold": 6 * MiB, "part_size": 5 * MiB, "max_workers": 1}
    killed_url, clean_url = seaweed.new_prefix(), seaweed.new_prefix()
    ws = use_remote(make_ws("a"), seaweed, killed_url, **options)
    _write_kill_fixture(ws)
    code = "import sys; from lithotse_desktop.workspace import Workspace; " \
           "from lithotse_desktop.sync import push; push(Workspace.open(sys.argv[1]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(ws.root)], stderr=subprocess.PIPE)
    try:
        assert _wait_for_a_started_upload(seaweed, killed_url, proc), proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not status(ws).in_sync

    assert audit_of(ws.store("raw")) == {}, "the killed push recorded nothing"
    s3_calls.clear()
    assert push(ws).ok
    assert s3_calls["UploadPart"] < 8, "the interrupted upload resumes instead of starting over"
    resumed = new_sync_record(ws, {}, direction="push", remote=killed_url)
    assert push(ws, clean_url).ok
    uninterrupted = new_sync_record(ws, {resumed}, direction="push", remote=clean_url, copied=46)
    killed, clean = seaweed.store(killed_url, "admin"), seaweed.store(clean_url, "admin")
    assert data_of(killed) == data_of(clean) == data_of(ws.store("raw"))
    assert audit_of(killed) == {resumed: audit_of(ws.store("raw"))[resumed]}
    assert audit_of(clean) == audit_of(ws.store("raw"))
    admin = seaweed.client("admin")
    assert admin.list_multipart_uploads(Bucket=killed.bucket, Prefix=killed.prefix).get("Uploads", []) == []
    assert audit_pending(status(ws)) == ({uninterrupted}, set()), "records travel to every remote"

    other = use_remote(make_ws("b"), seaweed, killed_url, **options)
    proc = subprocess.Popen([sys.executable, "-c", code.replace("push", "pull"), str(other.root)])
    scratch = other.local_dir / "sync-tmp"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if scratch.exists() and any(any(d.iterdir()) for d in scratch.iterdir()):
            break  # a download is in flight
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pull(other).ok
    assert data_of(other.store("raw")) == data_of(ws.store("raw"))
    new_sync_record(other, {}, arrived={resumed}, direction="pull", remote=killed_url)
    assert not any((other.local_dir / "sync-tmp").iterdir())


def test_two_clients_syncing_concurrently_lose_nothing(seaweed, make_ws, monkeypatch):
    url = seaweed.new_prefix()
    lock = threading.Lock()
    recorded: list[dict] = []
    original_record = audit.record

    def record(*args, **kwargs):
        entry = original_record(*args, **kwargs)
        with lock:
            recorded.append(entry)
        return entry

    monkeypatch.setattr(audit, "record", record)
    clients = [use_remote(make_ws(name), seaweed, url) for name in ("a", "b")]
    rounds = 4
    created: list[set[str]] = [set(), set()]
    published: list[bytes] = []
    results: list = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def client(idx: int) -> None:
        ws = clients[idx]
        try:
            barrier.wait()
            for r in range(rounds):
                for n in range(3):
                    data = f"client {idx} round {r} object {n}".encode()
                    ws.store("raw").put_bytes(raw_key(data), data)
                    created[idx].add(raw_key(data))
                record = f"manifests/src/stream/{idx}-{r}.json"
                ws.store("raw").put_bytes(record, b"{}")
                created[idx].add(record)
                now = dt.datetime.now(dt.UTC)
                now = now.replace(microsecond=now.microsecond // 2 * 2 + idx)
                body = pointer(f"{idx}-{r}", now)
                with lock:
                    published.append(body)
                ws.store("derived").put_bytes("derived/shared/CURRENT", body)
                ws.store("derived").put_bytes(f"derived/own{idx}/CURRENT", pointer(f"{r}", now))
                results.append(push(ws))
                results.append(pull(ws))
        except BaseException as exc:  # re-raised on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for ws in clients:
        results.append(push(ws))
        results.append(pull(ws))
    assert all(r.ok for r in results), [r.summary() for r in results if not r.ok]
    remote = data_of(seaweed.store(url, "admin"))
    for ws in clients:
        local = data_of(ws.store("raw"))
        assert local == remote
        assert created[0] | created[1] <= set(local)
    for ws in clients:  # the last pulls' records go out; moving only records records nothing
        results.append(push(ws))
    for ws in clients:
        results.append(pull(ws))
    remote = snapshot(seaweed.store(url, "admin"))
    for ws in clients:
        assert snapshot(ws.store("raw")) == remote
        assert status(ws).in_sync
    assert {audit.entry_key(e) for e in recorded} == set(split(remote)[1]), "no audit record lost"
    with_pointers = [r for r in results if r.pointers_updated]
    assert with_pointers and len(recorded) >= len(with_pointers)
    outcomes = collections.Counter((r.direction, r.copied, tuple(sorted(r.pointers_updated)))
                                   for r in results)
    described = collections.Counter((e["details"]["direction"], e["details"]["copied"],
                                     tuple(e["objects"])) for e in recorded)
    assert not described - outcomes, "each sync record describes one sync that ran"
    newest = max(published, key=lambda body: json.loads(body)["published_at"])
    for ws in clients:
        assert ws.store("derived").get_bytes("derived/shared/CURRENT") == newest
    assert seaweed.store(url, "admin").get_bytes("derived/shared/CURRENT") == newest


def test_tier_already_on_s3_is_copied_through_a_scratch_file(seaweed, make_ws, tmp_path):
    ws = make_ws("a")
    team = seaweed.new_prefix()
    ws.config["stores"]["team"] = {"url": team, **seaweed.store_options("client")}
    ws.config["tiers"]["raw"] = "team"
    ws.save()
    ws = Workspace.open(ws.root)
    data = b"landed on S3"
    ws.store("raw").put_bytes(raw_key(data), data)
    ws.store("derived").put_bytes("derived/x/CURRENT", pointer("v1"))
    elsewhere = (tmp_path / "backup").as_uri()
    result = push(ws, elsewhere)
    assert (result.copied, result.pointers_updated) == (1, ["derived/x/CURRENT"])
    assert (tmp_path / "backup" / raw_key(data)).read_bytes() == data
    assert not any((ws.local_dir / "sync-tmp").iterdir())
    assert push(ws, team).copied == 0, "the derived tier goes to the team bucket; raw is there already"
