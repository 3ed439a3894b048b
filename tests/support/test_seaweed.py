"""The SeaweedFS test server as parallel test workers use it: ports taken under its feet."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support import seaweed as seaweed_module
from tests.support.seaweed import SeaweedServer


@pytest.mark.parametrize("offset", [0, 1], ids=["s3-port", "master-port"])
def test_a_port_taken_before_weed_binds_it_makes_it_start_on_others(offset, tmp_path, monkeypatch):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1] - offset
    real = seaweed_module._free_base_port
    offered: list[int] = []

    def first_a_taken_range() -> int:
        offered.append(taken if not offered else real())
        return offered[-1]

    monkeypatch.setattr(seaweed_module, "_free_base_port", first_a_taken_range)
    started = time.monotonic()
    try:
        with SeaweedServer(root=tmp_path / "weed") as server:
            assert len(offered) == 2
            assert server.port == offered[1] != taken
            server.client("admin").list_buckets()
    finally:
        holder.close()
    assert time.monotonic() - started < 60, "the retry waited for a time-out instead of seeing weed fail"
