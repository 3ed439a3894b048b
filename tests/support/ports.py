"""Free loopback ports for servers the tests start on a port of their choosing.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range, the
same range outgoing connections take their local ports from: once the probe socket is closed,
any connection of the other test worker (to SeaweedFS, Redis, an API) may take that port before
the server binds it, and the server then fails with "address already in use" (seen once in CI).
Ports here are picked below the ephemeral range and below SeaweedFS's (``seaweed._free_base_port``),
at random so two workers rarely try the same one, and checked free before they are given out.
"""

from __future__ import annotations

import functools
import os
import random
import socket
import time
from pathlib import Path

LOW = 17000
HIGH = 20000
"""The range used: under SeaweedFS's ports (bases 20000-29990, plus offsets up to 10004) and far
under Linux's ephemeral range."""

_given: set[int] = set()
_rng = random.Random(os.getpid() ^ time.monotonic_ns())


@functools.cache
def ephemeral_range() -> tuple[int, int]:
    """Linux's range for outgoing connections' local ports (its default where it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def bindable(port: int) -> bool:
    """Whether a server could listen on this loopback port now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on, outside the range outgoing connections use, and not
    given out before in this process."""
    eph_low, eph_high = ephemeral_range()
    for _ in range(500):
        port = _rng.randrange(LOW, HIGH)
        if port in _given or eph_low <= port <= eph_high:
            continue
        if bindable(port):
            _given.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {LOW}-{HIGH}")
