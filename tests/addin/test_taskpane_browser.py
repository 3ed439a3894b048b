"""The task pane in Debian's headless Chromium, from the real server, over HTTPS the browser trusts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.addin.conftest import ADDIN


def test_task_pane_inserts_the_table_formula(https_serve, node_modules, tmp_path):
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed; run: bash scripts/system-deps.sh")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    # trust the server's CA as a user would, in this throwaway HOME's browser certificate database
    trust = subprocess.run([sys.executable, "-m", "lithotse_desktop", "excel", "trust-cert"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert trust.returncode == 0, trust.stdout + trust.stderr
    assert f"trusted for websites in the NSS database {home / '.pki' / 'nssdb'}" in trust.stdout
    shots = tmp_path / "shots"
    shots.mkdir()
    proc = subprocess.run(["node", "e2e/taskpane.mjs", https_serve["base"], https_serve["token"], str(shots)],
                          cwd=ADDIN, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == 200
    assert "token" in report["before_token"]
    assert report["connected"].startswith("Connected: workspace ws (")
    assert report["range"] == ["2024-01-01", "2024-03-31"]
    assert report["written"] == [[['=LITHOTSE.TABLE("visits","2024-01-01","2024-03-31")']]]
    assert report["message"] == "Inserted at Sheet1!B3."
    assert report["problems"] == []
    for width in (320, 500):
        shot = shots / f"taskpane-{width}.png"
        assert shot.stat().st_size > 5000
        keep = os.environ.get("LITHOTSE_SCREENSHOTS")
        if keep:
            shutil.copy(shot, keep)
