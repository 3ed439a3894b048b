"""S3Store against a real SeaweedFS: multipart, paging, permissions, errors, Arrow, a workspace on S3."""

from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import tomllib
from pathlib import Path

import pytest

from lithotse_desktop.errors import ConfigError, LithotseError, NotFound
from lithotse_desktop.plugins import open_store
from lithotse_desktop.secrets import SecretMissing, secret_ref
from lithotse_desktop.storage.s3 import AccessDenied, S3Store, save_credentials

MiB = 1 << 20


def _count_calls(store: S3Store, operation: str) -> list[int]:
    calls: list[int] = []
    store.client.meta.events.register(f"before-call.s3.{operation}", lambda **_: calls.append(1))
    return calls


def _uploads(seaweed, store: S3Store) -> list[dict]:
    listing = seaweed.client("admin").list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return listing.get("Uploads", [])


def test_large_file_goes_multipart_and_creates_once(seaweed, tmp_path):
    store = seaweed.store(seaweed.new_prefix(), multipart_threshold=6 * MiB, part_size=5 * MiB)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB + 123))
    parts = _count_calls(store, "UploadPart")
    assert store.put_file("raw/big", big, if_none_match=True) is True
    assert len(parts) == 3
    assert store.put_file("raw/big", big, if_none_match=True) is False
    assert len(parts) == 3, "an existing object is not uploaded again"
    assert store.stat("raw/big").size == big.stat().st_size
    ranged = _count_calls(store, "GetObject")
    out = store.fetch_to("raw/big", tmp_path / "back.bin")
    assert out.read_bytes() == big.read_bytes()
    assert len(ranged) == 3, "large downloads are fetched as parallel byte ranges"
    assert _uploads(seaweed, store) == []


def test_interrupted_multipart_upload_resumes_its_parts(seaweed, tmp_path):
    store = seaweed.store(seaweed.new_prefix(), multipart_threshold=6 * MiB, part_size=5 * MiB,
                          max_workers=1)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(14 * MiB))
    sent: list[int] = []

    def stop_after_first_part(n: int) -> None:
        sent.append(n)
        if len(sent) > 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put_file("raw/resume", big, if_none_match=True, on_bytes=stop_after_first_part)
    assert store.stat("raw/resume") is None
    assert len(_uploads(seaweed, store)) == 1

    parts = _count_calls(store, "UploadPart")
    assert store.put_file("raw/resume", big, if_none_match=True) is True
    assert len(parts) == 1, "only the part that never finished is sent again"
    assert store.get_bytes("raw/resume") == big.read_bytes()
    assert _uploads(seaweed, store) == []


def test_resume_ignores_parts_of_different_bytes(seaweed, tmp_path):
    store = seaweed.store(seaweed.new_prefix(), multipart_threshold=6 * MiB, part_size=5 * MiB)
    admin = seaweed.client("admin")
    key = store.prefix + "raw/other"
    upload = admin.create_multipart_upload(Bucket=store.bucket, Key=key)
    admin.upload_part(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                      Body=b"\x00" * (5 * MiB))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MiB))
    assert store.put_file("raw/other", big) is True
    assert store.get_bytes("raw/other") == big.read_bytes()


def test_concurrent_multipart_creates_have_one_winner(seaweed, tmp_path):
    url = seaweed.new_prefix()
    stores = [seaweed.store(url, multipart_threshold=6 * MiB, part_size=5 * MiB) for _ in range(2)]
    files = []
    for n in range(2):
        path = tmp_path / f"f{n}"
        path.write_bytes(bytes([n]) * (7 * MiB))
        files.append(path)
    with cf.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: stores[i].put_file("obj", files[i], if_none_match=True),
                                range(2)))
    assert sorted(results) == [False, True]
    assert stores[0].get_bytes("obj") == files[results.index(True)].read_bytes()


def test_listing_pages_past_1000_keys(seaweed, tmp_path):
    url = seaweed.new_prefix()
    (tmp_path / "many").mkdir()
    keys = [f"many/{n:05d}" for n in range(1234)]
    for key in keys:
        (tmp_path / key).write_bytes(b"x")
    seaweed.seed(url, tmp_path / "many")
    store = seaweed.store(url)
    store.put_bytes("other/one", b"y")
    pages = _count_calls(store, "ListObjectsV2")
    listed = list(store.list("many/"))
    assert [i.key for i in listed] == keys
    assert {i.size for i in listed} == {1}
    assert len(pages) == 2
    assert len(list(store.list(""))) == 1235


def test_wrong_secret_is_a_clear_error_without_the_secret(seaweed):
    url = seaweed.new_prefix()
    ref = secret_ref("test", "wrong-secret")
    good = seaweed.credentials["client"]
    save_credentials(ref, good["access_key_id"], "not-the-secret-123")
    store = S3Store(url, endpoint_url=seaweed.endpoint_url, credentials=ref)
    for action in (lambda: list(store.list("")), lambda: store.stat("k"),
                   lambda: store.put_bytes("k", b"x"), lambda: store.get_bytes("k")):
        with pytest.raises(AccessDenied) as info:
            action()
        message = str(info.value)
        assert url in message and seaweed.endpoint_url in message
        assert "not-the-secret-123" not in message
    assert "secret key was rejected" in str(info.value)


def test_unknown_access_key(seaweed):
    ref = secret_ref("test", "unknown-key")
    save_credentials(ref, "NOBODY", "whatever")
    store = S3Store(seaweed.new_prefix(), endpoint_url=seaweed.endpoint_url, credentials=ref)
    with pytest.raises(AccessDenied, match="access key id is unknown"):
        list(store.list(""))


def test_manager_cannot_touch_the_raw_bucket_but_reads_derived(seaweed):
    raw_url = seaweed.new_prefix(seaweed.raw_bucket)
    seaweed.store(raw_url, "client").put_bytes("raw/x", b"secret data")
    manager = seaweed.store(raw_url, "manager")
    for action, verb in ((lambda: manager.get_bytes("raw/x"), "read"),
                         (lambda: manager.stat("raw/x"), "read"),
                         (lambda: list(manager.list("")), "list"),
                         (lambda: manager.put_bytes("raw/y", b"z"), "write")):
        with pytest.raises(AccessDenied, match=f"access denied: these credentials may not {verb}") as info:
            action()
        assert raw_url in str(info.value)

    derived_url = seaweed.new_prefix(seaweed.derived_bucket)
    seaweed.store(derived_url, "client").put_bytes("derived/t/CURRENT", b"{}")
    reader = seaweed.store(derived_url, "manager")
    assert reader.get_bytes("derived/t/CURRENT") == b"{}"
    assert [i.key for i in reader.list("")] == ["derived/t/CURRENT"]
    with pytest.raises(AccessDenied):
        reader.put_bytes("derived/t/CURRENT", b"{}")


def test_missing_bucket_and_unreachable_endpoint(seaweed):
    store = seaweed.store("s3://no-such-bucket/p", "admin")
    with pytest.raises(NotFound, match="s3://no-such-bucket/p .*bucket 'no-such-bucket' does not exist"):
        list(store.list(""))
    with pytest.raises(NotFound, match="no-such-bucket"):
        store.get_bytes("k")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    offline = S3Store("s3://bucket/p", endpoint_url=dead, credentials=seaweed.store_options()["credentials"])
    with pytest.raises(LithotseError, match=r"s3://bucket/p/k \(at .*\): cannot reach the S3 endpoint") as info:
        offline.stat("k")
    assert dead in str(info.value)


def test_standard_aws_chain_env_and_profile(seaweed, monkeypatch, tmp_path):
    creds = seaweed.credentials["client"]
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["secret_access_key"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint_url)
    url = seaweed.new_prefix()
    store = S3Store(url)
    store.put_bytes("from-env", b"1")
    assert store.get_bytes("from-env") == b"1"

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    shared = tmp_path / "credentials"
    shared.write_text(f"[team]\naws_access_key_id = {creds['access_key_id']}\n"
                      f"aws_secret_access_key = {creds['secret_access_key']}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    assert S3Store(url, profile="team").get_bytes("from-env") == b"1"
    with pytest.raises(ConfigError, match="profile 'nobody' is not configured"):
        S3Store(url, profile="nobody").stat("x")
    with pytest.raises(ConfigError, match="no S3 credentials"):
        S3Store(url).stat("x")


def test_bad_configuration_is_rejected(seaweed):
    with pytest.raises(ConfigError, match="unknown store option"):
        S3Store("s3://b/p", endpoint="x")
    with pytest.raises(ConfigError, match="expected s3://bucket"):
        S3Store("s3:///nobucket")
    with pytest.raises(ConfigError, match="keyring reference"):
        S3Store("s3://b/p", credentials={"access_key_id": "A", "secret_access_key": "S"}).stat("k")
    with pytest.raises(SecretMissing, match="secret nothing/here is not in the secrets file"):
        S3Store("s3://b/p", credentials={"keyring": "nothing/here"}).stat("k")
    store = open_store("s3://b/some/prefix/", base=Path("."), options={"region": "eu-west-1"})
    assert (store.bucket, store.prefix, store.url) == ("b", "some/prefix/", "s3://b/some/prefix")


def test_arrow_scans_parquet_in_place(seaweed, tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    url = seaweed.new_prefix(seaweed.derived_bucket)
    writer = seaweed.store(url, "client")
    for n in range(3):
        local = tmp_path / f"p{n}.parquet"
        pq.write_table(pa.table({"period": [f"2024-0{n + 1}"] * 2, "count": [n, 10 * n]}), local)
        writer.put_file(f"derived/counts/parts/p{n}.parquet", local)

    fs, base = seaweed.store(url, "manager").arrow_filesystem()
    dataset = ds.dataset(f"{base}/derived/counts/parts", filesystem=fs, format="parquet")  # noqa: F841 - DuckDB reads it by name
    rows = duckdb.sql("SELECT sum(count) AS n, count(DISTINCT period) AS p FROM dataset").fetchall()
    assert rows == [(33, 3)]


def test_workspace_with_raw_tier_on_s3(seaweed, workspace, tmp_path):
    from lithotse_desktop.dates import DateRange
    from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
    from lithotse_desktop.raw import read_stream, run_import
    from lithotse_desktop.raw.index import open_index
    from lithotse_desktop.workspace import Workspace
    from tests.support import lines_connector

    url = seaweed.new_prefix()
    ref = secret_ref(workspace.id, "store/team")
    options = seaweed.store_options("client", keyring_ref=ref)
    workspace.config["stores"]["team"] = {"url": url, **options}
    workspace.config["tiers"]["raw"] = "team"
    workspace.save()
    text = (workspace.root / "lithotse.toml").read_text()
    assert seaweed.credentials["client"]["secret_access_key"] not in text
    assert tomllib.loads(text)["stores"]["team"]["credentials"] == ref

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1\n2024-01-15,2\n2024-02-01,3\n")
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    try:
        ws = Workspace.open(workspace.root)
        ws.add_source("vals", "lines", {"path": str(folder)}, {})
        [landing] = run_import(ws, "vals", DateRange.parse("2024-01-01", "2024-01-31")).landings
        m = landing.manifest
        bucket = seaweed.store(url, "admin")
        assert sorted(i.key for i in bucket.list("")) == sorted([m.object_key, m.key])
        assert bucket.get_bytes(m.object_key) == (folder / "a.txt").read_bytes()
        assert not (ws.root / "data" / "raw").exists()
        assert run_import(ws, "vals", DateRange.parse("2024-01-01", "2024-12-31"), full=True
                          ).landings[0].manifest.already_stored

        (ws.local_dir / "raw-index.sqlite").unlink()
        fresh = Workspace.open(ws.root)
        index = open_index(fresh)
        assert len(index.landings("vals")) == 2
        index.close()
        rows = [r for b in read_stream(fresh, "vals", "values") for r in b.to_pylist()]
        # two landings of the same bytes with different ranges, January then the whole year:
        # one object, read once, each row inside either range
        assert sorted(r["value"] for r in rows) == [1, 2, 3]
        assert (ws.local_dir / "object-cache" / m.sha256).exists()
    finally:
        reset_plugin_manager()
