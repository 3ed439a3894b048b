"""Shared by the cache, serve and excel tests: a real redis-server, sample derivatives."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lithotse_desktop.cache import close_all
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.raw import run_import
from tests.support.ports import free_port

VISITS = {"name": "visits", "kind": "aggregate", "input": {"source": "vals", "stream": "values"},
          "date_field": "day", "grain": "month", "group_by": ["grp"],
          "measures": [{"fn": "count", "as": "n"}, {"fn": "sum", "column": "value", "as": "total"},
                       {"fn": "mean", "column": "value", "as": "avg"},
                       {"fn": "count_distinct", "column": "id", "as": "ids"}],
          "suppress_below": 0}
TOTALS = {"name": "totals", "kind": "aggregate", "input": {"source": "vals", "stream": "values"},
          "group_by": ["grp"], "measures": [{"fn": "count", "as": "n"}, {"fn": "max", "column": "value", "as": "top"}],
          "suppress_below": 0}



def write_rows(folder: Path, name: str, rows) -> None:
    (folder / name).write_text("".join(",".join(map(str, r)) + "\n" for r in rows))


def sample_rows(months=(1, 2, 3), per_group=None):
    """Rows for groups a (15/month) and b (12/month) with value = day of month."""
    per_group = per_group or {"a": 15, "b": 12}
    rows = []
    for m in months:
        for grp, count in per_group.items():
            for d in range(1, count + 1):
                rows.append((dt.date(2024, m, d).isoformat(), d, grp, f"{grp}{m}-{d}"))
    return rows


def build_sample(ws, folder: Path, specs=(VISITS,), rows=None, file="a.txt"):
    write_rows(folder, file, rows if rows is not None else sample_rows())
    run_import(ws, "vals")
    for spec in specs:
        if spec["name"] not in Catalog(ws).names():
            add_spec(ws, spec)
        build(ws, spec["name"])


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server on 127.0.0.1 at a free port for the session; fails if it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; install it with: apt-get install -y redis-server "
                    "(macOS: brew install redis)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--daemonize", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start: {proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(autouse=True)
def _close_caches():
    yield
    close_all()


def use_backend(ws, backend: str, redis_url: str | None) -> None:
    if backend == "redis":
        ws.config["cache"] = {"backend": "redis", "url": redis_url, "prefix": f"t{time.monotonic_ns()}"}
    else:
        ws.config["cache"] = {"backend": "embedded"}
    ws.save()
