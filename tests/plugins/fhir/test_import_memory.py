"""Importing FHIR NDJSON takes memory bounded by the setting, not by the file: a run five times
larger must not need much more peak memory than a small one (a ratio, so a loaded machine or
a different one does not matter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from lithotse_desktop.workspace import Workspace

# Linux keeps a process's peak RSS across exec, so a child forked from this (large) test
# process would start with this process's size; a small Python process starts the command
# instead and writes the command's own peak RSS (os.wait4) to a file.
PEAK_RSS = """
import os, sys
pid = os.spawnv(os.P_NOWAIT, sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def cli_peak_rss(tmp: Path, tag: str, ws: Workspace, *args: str) -> tuple[str, int]:
    """(stdout, peak RSS in bytes) of ``lithotse --workspace WS ARGS`` run as its own process."""
    out, err, peak = tmp / f"out{tag}", tmp / f"err{tag}", tmp / f"peak{tag}"
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(peak), sys.executable, "-m", "lithotse_desktop",
                               "--workspace", str(ws.root), *args], stdout=fout, stderr=ferr, env=dict(os.environ))
    assert proc.returncode == 0, err.read_text()
    return out.read_text(), int(peak.read_text())


def _encounters(path: Path, n: int) -> None:
    """n Encounters of ~560 bytes, written by DuckDB (deterministic, quick)."""
    duckdb.connect().execute(f"""
        COPY (SELECT 'Encounter' AS "resourceType", 'enc-' || i AS id,
                     {{'versionId': '1', 'lastUpdated': '2024-01-02T03:04:05.000Z'}} AS meta,
                     'finished' AS status, {{'code': 'AMB', 'display': repeat('x', 300)}} AS class,
                     {{'reference': 'Patient/p' || (i % 997)}} AS subject,
                     {{'start': '2023-0' || (1 + i % 9) || '-1' || (i % 10) || 'T08:00:00+02:00'}} AS period
              FROM range({n}) t(i))
        TO '{path}' (FORMAT json)""")


def _peak_import_rss(tmp: Path, n: int) -> tuple[int, int]:
    """(file bytes, peak RSS in bytes) of ``lithotse import`` of n Encounters as its own process."""
    data = tmp / f"data{n}"
    data.mkdir()
    ndjson = data / "Encounter.ndjson"
    _encounters(ndjson, n)
    ws = Workspace.create(tmp / f"ws{n}")
    # a small limit: batches of 4 MB, so the smaller file already holds several of them
    ws.config["limits"] = {"memory": "512MB"}
    ws.save()
    ws.add_source("fhir", "fhir-files", {"path": str(data), "resource_types": "Encounter"}, {})
    out, peak = cli_peak_rss(tmp, str(n), ws, "import", "fhir", "--no-build", "--json")
    assert json.loads(out)["landings"][0]["records"] == n
    return ndjson.stat().st_size, peak


def test_peak_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    # both files hold many batches, so both runs reach the steady state of the bounded queues
    # (a file of a few batches may end before they fill, which a loaded machine showed)
    small_bytes, small_rss = _peak_import_rss(tmp_path, 135_000)
    large_bytes, large_rss = _peak_import_rss(tmp_path, 270_000)
    assert large_bytes > 1.9 * small_bytes
    # before, memory grew ~1.4 MB per MB of input: these 75 MB more would cost ~105 MB more
    assert large_rss < 1.2 * small_rss, (small_rss, large_rss, small_bytes, large_bytes)
    assert large_rss < 512e6, large_rss  # the setting bounds the whole process
