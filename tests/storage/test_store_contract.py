"""One contract, every backend: LocalStore and S3Store (against a real SeaweedFS) behave alike."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lithotse_desktop.errors import ConfigError
from lithotse_desktop.storage import PreconditionFailed, Store
from lithotse_desktop.storage.local import LocalStore


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    seaweed = request.getfixturevalue("seaweed")
    return seaweed.store(seaweed.new_prefix())


def test_put_get_stat_list_delete(store: Store, tmp_path: Path):
    etag = store.put_bytes("a/one.json", b'{"x": 1}')
    src = tmp_path / "two.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    assert store.put_file("a/b/two.bin", src) is True
    store.put_bytes("c/three", b"3")

    info = store.stat("a/one.json")
    assert (info.key, info.size, info.etag) == ("a/one.json", 8, etag)
    assert store.stat("a/missing") is None
    assert store.exists("c/three") and not store.exists("c/four")
    assert store.get_bytes("a/b/two.bin") == src.read_bytes()
    with store.open_read("a/one.json") as fh:
        assert fh.read() == b'{"x": 1}'
    assert sorted(i.key for i in store.list("")) == ["a/b/two.bin", "a/one.json", "c/three"]
    assert sorted(i.key for i in store.list("a/")) == ["a/b/two.bin", "a/one.json"]
    assert {i.key: i.size for i in store.list("a/b/")} == {"a/b/two.bin": 2000}
    assert list(store.list("nothing/")) == []

    fetched = store.fetch_to("a/b/two.bin", tmp_path / "out" / "copy.bin")
    assert fetched.read_bytes() == src.read_bytes()

    store.delete("a/one.json")
    store.delete("a/one.json")  # deleting what is gone is not an error
    assert store.stat("a/one.json") is None
    with pytest.raises(FileNotFoundError):
        store.get_bytes("a/one.json")


def test_overwrite_without_condition_replaces(store: Store):
    first = store.put_bytes("k", b"one")
    second = store.put_bytes("k", b"two, longer")
    assert store.get_bytes("k") == b"two, longer"
    assert first != second


def test_create_only_second_writer_loses(store: Store, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    assert store.put_file("obj", a, if_none_match=True) is True
    assert store.put_file("obj", b, if_none_match=True) is False
    assert store.get_bytes("obj") == b"first"
    assert b.exists(), "a losing move must leave the caller's file alone"

    store.put_bytes("m.json", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put_bytes("m.json", b"2", if_none_match=True)
    assert store.get_bytes("m.json") == b"1"


def test_create_only_race_has_one_winner(store: Store, tmp_path: Path):
    files = []
    for n in range(4):
        path = tmp_path / f"f{n}"
        path.write_bytes(f"writer {n}".encode())
        files.append(path)
    results: list[bool] = []
    barrier = threading.Barrier(len(files))

    def write(path: Path) -> None:
        barrier.wait()
        results.append(store.put_file("race", path, if_none_match=True))

    threads = [threading.Thread(target=write, args=(p,)) for p in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 3 + [True]
    assert store.get_bytes("race") in {p.read_bytes() for p in files}


def test_if_match_detects_a_stale_etag(store: Store):
    etag = store.put_bytes("ptr/CURRENT", b"v1")
    newer = store.put_bytes("ptr/CURRENT", b"v2", if_match=etag)
    assert store.get_bytes("ptr/CURRENT") == b"v2"
    with pytest.raises(PreconditionFailed):
        store.put_bytes("ptr/CURRENT", b"v3", if_match=etag)
    assert store.get_bytes("ptr/CURRENT") == b"v2"
    with pytest.raises(PreconditionFailed):
        store.put_bytes("other/CURRENT", b"v1", if_match=newer)
    assert store.stat("other/CURRENT") is None


def test_move_consumes_the_source(store: Store, tmp_path: Path):
    src = tmp_path / "staged"
    src.write_bytes(b"payload")
    assert store.put_file("moved", src, if_none_match=True, move=True)
    assert not src.exists()
    assert store.get_bytes("moved") == b"payload"


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/b/"])
def test_bad_keys_are_rejected(store: Store, key: str):
    with pytest.raises(ConfigError):
        store.put_bytes(key, b"x")


def test_local_path_only_for_local(store: Store):
    store.put_bytes("x", b"1")
    path = store.local_path("x")
    if isinstance(store, LocalStore):
        assert path is not None and path.read_bytes() == b"1"
    else:
        assert path is None
