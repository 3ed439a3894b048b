"""A workspace with a CSV source and a suppressed aggregate, and the real ``lithotse serve --https``
over it, for the Office add-in's tests (Node's test runner, headless Chromium) and the server's."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.raw import run_import
from lithotse_desktop.secrets import secrets_dir
from lithotse_desktop.serve.token import workspace_token
from tests.cache.helpers import _close_caches, free_port  # noqa: F401  (fixture)
from tests.conftest import REPO
from tests.support.serving import lithotse_serve

ADDIN = REPO / "addin"
VISITS = {"name": "visits", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
          "date_field": "day", "grain": "month", "group_by": ["grp"],
          "measures": [{"fn": "count", "as": "n"}, {"fn": "sum", "column": "value", "as": "total"}],
          "suppress_below": 5}


def csv_rows(start_id: int = 0, months=(1, 2, 3), per_group=None) -> list[str]:
    """Groups a (15 a month), b (12) and c (3, below the threshold, so suppressed)."""
    per_group = per_group or {"a": 15, "b": 12, "c": 3}
    lines, n = [], start_id
    for month in months:
        for grp, count in per_group.items():
            for day in range(1, count + 1):
                n += 1
                lines.append(f"{n},{dt.date(2024, month, day).isoformat()},{grp},{day}")
    return lines


def write_csv(folder: Path, lines: list[str]) -> None:
    (folder / "visits.csv").write_text("id,day,grp,value\n" + "\n".join(lines) + "\n")


@pytest.fixture
def addin_workspace(workspace, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    write_csv(folder, csv_rows())
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "day", "key": "id"}, {})
    run_import(workspace, "ehr")
    add_spec(workspace, VISITS)
    build(workspace, "visits")
    workspace.csv_folder = folder
    return workspace


def derive_show(ws) -> dict:
    proc = subprocess.run([sys.executable, "-m", "lithotse_desktop", "derive", "show", "visits", "--json"],
                          env={**os.environ, "LITHOTSE_WORKSPACE": str(ws.root)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def https_serve(addin_workspace):
    """``lithotse serve --https`` as a user runs it; yields (http port, https port, CA file)."""
    port, https_port = free_port(), free_port()
    with lithotse_serve(addin_workspace.root, port, "--port", str(port), "--https", "--https-port",
                        str(https_port)) as proc:
        yield {"port": port, "https_port": https_port, "proc": proc,
               "ca": secrets_dir() / "tls" / "lithotse-ca.pem", "token": workspace_token(addin_workspace),
               "base": f"https://localhost:{https_port}"}


@pytest.fixture(scope="session")
def node_modules():
    """The add-in's npm packages, installed from its lock file (scripts/test.sh runs npm ci)."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is not installed; run: bash scripts/system-deps.sh")
    if not (ADDIN / "node_modules" / "office-addin-mock").is_dir():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ADDIN,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    return ADDIN / "node_modules"
