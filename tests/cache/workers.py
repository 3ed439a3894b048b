"""Functions run in separate processes by the concurrency tests (importable for 'spawn')."""

from __future__ import annotations

import os
import time

import pyarrow as pa


def open_backend(spec: dict):
    if spec["kind"] == "redis":
        from lithotse_redis import RedisCache

        return RedisCache(spec["url"], spec["ns"])
    from lithotse_desktop.cache.backends import EmbeddedCache

    return EmbeddedCache(spec["path"])


def synthetic(i: int) -> pa.Table:
    """Version i: 100 + 7*(i % 40) rows, every row saying i."""
    n = 100 + 7 * (i % 40)
    return pa.table({"v": pa.array([i] * n, pa.int64()), "x": pa.array(range(n), pa.int64())})


def write_versions(spec: dict, count: int) -> int:
    from lithotse_desktop.cache.lookup import encode_table

    backend = open_backend(spec)
    for i in range(count):
        backend.publish("stress", f"v{i}", {"i": i}, encode_table(synthetic(i)))
    backend.close()
    return count


def _running(stop: str, deadline: float) -> bool:
    return not os.path.exists(stop) and time.monotonic() < deadline


def read_until(spec: dict, stop: str) -> tuple[int, list[str]]:
    """Load the current entry over and over until ``stop`` exists; report every inconsistency."""
    from lithotse_desktop.cache.lookup import decode_table

    backend = open_backend(spec)
    reads, problems = 0, []
    deadline = time.monotonic() + 60
    while _running(stop, deadline) or reads < 20:
        loaded = backend.load("stress")
        if loaded is None:
            continue
        version, meta, data = loaded
        table = decode_table(data)
        i = int(version[1:])
        values = set(table.column("v").to_pylist())
        if meta["i"] != i or values != {i} or table.num_rows != synthetic(i).num_rows:
            problems.append(f"{version}: meta {meta}, values {sorted(values)[:3]}, rows {table.num_rows}")
        reads += 1
    backend.close()
    return reads, problems


def rebuild_repeatedly(root: str, folder: str, rounds: int) -> int:
    """Land one more file and rebuild, ``rounds`` times, through the real build and hook."""
    from pathlib import Path

    from lithotse_desktop.derive.build import build
    from lithotse_desktop.plugins import get_plugin_manager
    from lithotse_desktop.raw import run_import
    from lithotse_desktop.workspace import Workspace
    from tests.support import lines_connector

    get_plugin_manager().register(lines_connector, "lines-test")
    ws = Workspace.open(root)
    for r in range(rounds):
        rows = [f"2024-0{1 + (r + d) % 3}-{1 + d:02d},{d},{'abc'[d % 3]},w{r}-{d}" for d in range(5 + r)]
        (Path(folder) / f"w{r}.txt").write_text("\n".join(rows) + "\n")
        run_import(ws, "vals")
        build(ws, "visits")
    return rounds


def read_lookups(root: str, stop: str) -> tuple[int, set[str], list[str]]:
    """Read the derivative through the cache; each answer must equal L2's copy of that version."""
    from lithotse_desktop.cache import table_of
    from lithotse_desktop.derive.catalog import Catalog
    from lithotse_desktop.workspace import Workspace

    ws = Workspace.open(root)
    catalog = Catalog(ws)
    reads, versions, problems = 0, set(), []
    deadline = time.monotonic() + 60
    while _running(stop, deadline) or reads < 5:
        entry, table = table_of(ws, "visits")
        expected = catalog.read(catalog.version("visits", entry.version))
        if table.to_pylist() != expected.to_pylist():
            problems.append(f"version {entry.version}: cache and L2 differ")
        versions.add(entry.version)
        reads += 1
    return reads, versions, problems
