"""Benchmark: import + read-back of N FHIR Encounters vs a plain DuckDB read_ndjson scan.

Generates N Encounter resources as NDJSON with a seeded RNG, then times (median of 3 runs):

(a) Lithotse: a fresh workspace, a ``fhir-files`` source, ``run_import`` (copy + sha256 +
    validating read + commit) and reading every batch of the Encounter stream back with
    ``read_stream``;
(b) DuckDB: ``read_ndjson`` over the same file, fetched as Arrow (every column materialised).

Target: (a) ≤ 2 × (b). Run: .venv/bin/python bench/import_fhir.py [--n 200000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

CLASSES = [("AMB", "ambulatory"), ("IMP", "inpatient encounter"), ("EMER", "emergency"),
           ("VR", "virtual"), ("HH", "home health")]
TYPES = [("185349003", "Encounter for check up"), ("185347001", "Encounter for problem"),
         ("390906007", "Follow-up encounter"), ("50849002", "Emergency room admission"),
         ("698314001", "Consultation for treatment")]
OFFSETS = [dt.timezone(dt.timedelta(hours=h)) for h in (-7, -5, -4, 0, 1, 2)]


def generate(path: Path, n: int, seed: int = 20240601) -> None:
    """Write n realistic Encounters (one JSON object per line) deterministically."""
    rng = random.Random(seed)
    base = dt.datetime(2012, 1, 1, tzinfo=dt.UTC)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            start = base + dt.timedelta(minutes=rng.randrange(0, 12 * 365 * 24 * 60))
            end = start + dt.timedelta(minutes=rng.randrange(10, 720))
            zone = rng.choice(OFFSETS)
            code, display = rng.choice(CLASSES)
            type_code, type_text = rng.choice(TYPES)
            updated = end + dt.timedelta(hours=rng.randrange(1, 96))
            res = {
                "resourceType": "Encounter", "id": f"enc-{i:08d}",
                "meta": {"versionId": str(rng.randrange(1, 4)),
                         "lastUpdated": updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")},
                "status": rng.choice(["finished"] * 8 + ["cancelled", "in-progress"]),
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code,
                          "display": display},
                "type": [{"coding": [{"system": "http://snomed.info/sct", "code": type_code,
                                      "display": type_text}], "text": type_text}],
                "subject": {"reference": f"Patient/pat-{rng.randrange(50_000):06d}"},
                "period": {"start": start.astimezone(zone).isoformat(),
                           "end": end.astimezone(zone).isoformat()},
                "serviceProvider": {"reference": f"Organization/org-{rng.randrange(300):04d}"},
            }
            fh.write(json.dumps(res, separators=(",", ":")) + "\n")


def run_lithotse(folder: Path, work: Path) -> tuple[float, int]:
    from lithotse_desktop.dates import DateRange
    from lithotse_desktop.raw import read_stream, run_import
    from lithotse_desktop.workspace import Workspace

    shutil.rmtree(work, ignore_errors=True)
    os.environ.setdefault("LITHOTSE_SECRETS_STORE", "file")  # any secret stays in the scratch folder
    os.environ.setdefault("LITHOTSE_SECRETS_DIR", str(work.parent / "secrets"))
    t0 = time.perf_counter()
    ws = Workspace.create(work)
    ws.add_source("bench", "fhir-files", {"path": str(folder), "resource_types": "Encounter"}, {})
    run_import(ws, "bench", DateRange())
    rows = sum(batch.num_rows for batch in read_stream(ws, "bench", "Encounter"))
    return time.perf_counter() - t0, rows


def run_duckdb(path: Path) -> tuple[float, int]:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    reader = con.sql(f"SELECT * FROM read_ndjson('{path}')").to_arrow_reader(32_768)
    rows = sum(batch.num_rows for batch in reader)
    con.close()
    return time.perf_counter() - t0, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="number of Encounters (default 200000)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory(prefix="lithotse-bench-") as tmp:
        folder = Path(tmp) / "export"
        folder.mkdir()
        data = folder / "Encounter.000.ndjson"
        t0 = time.perf_counter()
        generate(data, args.n)
        print(f"generated {args.n} Encounters, {data.stat().st_size / 1e6:.1f} MB "
              f"in {time.perf_counter() - t0:.1f}s")
        ours, theirs = [], []
        for run in range(args.runs):
            seconds, rows = run_lithotse(folder, Path(tmp) / f"ws{run}")
            assert rows == args.n, rows
            ours.append(seconds)
            seconds, rows = run_duckdb(data)
            assert rows == args.n, rows
            theirs.append(seconds)
            print(f"run {run + 1}: lithotse import+read {ours[-1]:.3f}s, duckdb read_ndjson {theirs[-1]:.3f}s")
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"median: lithotse {a:.3f}s, duckdb {b:.3f}s, ratio {a / b:.2f}x (target <= 2.00x)")
        return 0 if a / b <= 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
