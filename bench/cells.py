"""How fast do cells get their numbers: the local API against direct reads of the L3 cache.

Builds a throwaway workspace with a monthly aggregate (24 months x 20 groups), starts the
real local API (uvicorn on 127.0.0.1) and, in the same run, times:

* 10,000 single-value lookups done directly (``lithotse_desktop.cache.lookup``, in process);
* the same 10,000 through ``GET /api/v1/derivatives/{name}/value`` (one keep-alive session);
* the same 10,000 through ``POST /api/v1/values`` in batches of ``--batch`` lookups;
* 100 table lookups directly and through ``GET /api/v1/derivatives/{name}/table``.

Targets: the batched 10,000 within 3x the direct reads; p99 per value (GET) under 20 ms.
Exit status 0 when both are met.

    python bench/cells.py [--lookups N] [--batch N] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SPEC = {"name": "visits", "kind": "aggregate", "input": {"source": "vals", "stream": "values"},
        "date_field": "day", "grain": "month", "group_by": ["grp"],
        "measures": [{"fn": "count", "as": "n"}, {"fn": "sum", "column": "value", "as": "total"},
                     {"fn": "mean", "column": "value", "as": "avg"}], "suppress_below": 0}
GROUPS = [f"g{i:02d}" for i in range(20)]
MONTHS = [dt.date(2023 + m // 12, m % 12 + 1, 1) for m in range(24)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"{label:<34} n={len(ms):>6}  total {sum(ms) / 1000:7.3f} s  p50 {statistics.median(ms):7.3f} ms  "
            f"p99 {percentile(ms, 0.99):7.3f} ms")


def make_lookups(count: int, rng: random.Random) -> list[dict]:
    out = []
    for _ in range(count):
        a, b = sorted(rng.sample(range(len(MONTHS)), 2))
        item = {"derivative": "visits", "measure": "n", "from": MONTHS[a].isoformat(),
                "to": MONTHS[b].isoformat(), "dims": {"grp": rng.choice(GROUPS)}}
        if rng.random() < 0.2:
            item.update(measure="avg", to=item["from"])
        out.append(item)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--tables", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1_000, help="lookups per POST /api/v1/values")
    parser.add_argument("--redis", help="use the Redis backend at this URL (lithotse-redis installed)")
    args = parser.parse_args()

    import requests

    from lithotse_desktop.cache import lookup, table_of
    from lithotse_desktop.derive.build import build
    from lithotse_desktop.derive.service import add_spec
    from lithotse_desktop.plugins import get_plugin_manager
    from lithotse_desktop.raw import run_import
    from lithotse_desktop.serve import start_server_thread
    from lithotse_desktop.workspace import Workspace
    from tests.support import lines_connector

    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        with open(folder / "rows.txt", "w", encoding="utf-8") as fh:
            for i in range(60_000):
                day = MONTHS[i % 24] + dt.timedelta(days=i % 28)
                fh.write(f"{day},{i % 97},{GROUPS[(i // 24) % 20]},r{i}\n")
        ws = Workspace.create(Path(tmp) / "ws")
        if args.redis:
            ws.config["cache"] = {"backend": "redis", "url": args.redis, "prefix": f"bench{os.getpid()}"}
            ws.save()
        get_plugin_manager().register(lines_connector, "lines-bench")
        ws.add_source("vals", "lines", {"path": str(folder)}, {})
        run_import(ws, "vals")
        add_spec(ws, SPEC)
        build(ws, "visits")

        lookups = make_lookups(args.lookups, rng)
        token = secrets.token_urlsafe(32)
        server = start_server_thread(ws, 0, token=token)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        base = f"{server.url}/api/v1"
        try:
            for item in lookups[:200]:  # warm both paths (memo, connections)
                lookup(ws, item["derivative"], item["measure"], item["from"], item["to"], **item["dims"])
                session.get(f"{base}/derivatives/visits/value",
                            params={"measure": item["measure"], "from": item["from"], "to": item["to"],
                                    **item["dims"]}).raise_for_status()

            direct, expected = [], []
            for item in lookups:
                t0 = time.perf_counter()
                cell = lookup(ws, item["derivative"], item["measure"], item["from"], item["to"], **item["dims"])
                direct.append(time.perf_counter() - t0)
                expected.append(cell.value)

            single = []
            for item, want in zip(lookups, expected, strict=True):
                t0 = time.perf_counter()
                res = session.get(f"{base}/derivatives/visits/value",
                                  params={"measure": item["measure"], "from": item["from"], "to": item["to"],
                                          **item["dims"]})
                single.append(time.perf_counter() - t0)
                if res.status_code != 200 or res.json()["value"] != want:
                    print(f"mismatch for {item}: {res.status_code} {res.text}", file=sys.stderr)
                    return 2

            batches, got = [], []
            for start in range(0, len(lookups), args.batch):
                chunk = lookups[start:start + args.batch]
                t0 = time.perf_counter()
                res = session.post(f"{base}/values", json={"lookups": chunk})
                batches.append(time.perf_counter() - t0)
                res.raise_for_status()
                got += [r["value"] for r in res.json()["results"]]
            if got != expected:
                print("batch answers differ from direct reads", file=sys.stderr)
                return 2

            table_direct, table_api = [], []
            for _ in range(args.tables):
                a, b = sorted(rng.sample(range(len(MONTHS)), 2))
                frm, to = MONTHS[a].isoformat(), MONTHS[b].isoformat()
                t0 = time.perf_counter()
                _entry, table = table_of(ws, "visits", frm, to)
                table.to_pylist()
                table_direct.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                res = session.get(f"{base}/derivatives/visits/table", params={"from": frm, "to": to})
                table_api.append(time.perf_counter() - t0)
                if len(res.json()["rows"]) != table.num_rows:
                    print("table answers differ", file=sys.stderr)
                    return 2
        finally:
            session.close()
            server.stop()

        backend = "redis" if args.redis else "embedded"
        print(f"backend: {backend}; {os.cpu_count()} CPUs; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(summary("value, direct (cache.lookup)", direct))
        print(summary("value, GET /value", single))
        print(summary(f"value, POST /values x{args.batch}", batches))
        print(summary("table, direct (cache.table_of)", table_direct))
        print(summary("table, GET /table (json)", table_api))
        ratio_batch = sum(batches) / sum(direct)
        ratio_single = sum(single) / sum(direct)
        p99 = percentile(single, 0.99) * 1000
        print(f"ratio API/direct for {len(lookups)} values: batched {ratio_batch:.2f}x (target <= 3x), "
              f"one GET each {ratio_single:.1f}x")
        print(f"ratio API/direct for {args.tables} tables: {sum(table_api) / sum(table_direct):.1f}x")
        print(f"p99 per value over GET: {p99:.2f} ms (target < 20 ms)")
        return 0 if ratio_batch <= 3 and p99 < 20 else 1


if __name__ == "__main__":
    sys.exit(main())
