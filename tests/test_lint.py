"""ruff's findings where a developer running pytest alone sees them (scripts/test.sh runs mypy too).

ruff takes well under a second over the whole tree, so it runs here; mypy, slower from a cold
cache, is left to scripts/test.sh.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

RUFF = Path(sys.executable).parent / "ruff"


def _ruff(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert RUFF.exists(), "ruff is missing: install the test extra (bash scripts/setup.sh --test)"
    return subprocess.run([str(RUFF), "check", "--no-cache", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_ruff_finds_nothing():
    proc = _ruff()
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_ruff_reads_the_project_rules(tmp_path):
    """The same configuration catches what it is meant to: an unused import, a stale noqa, a long line."""
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text("utf-8"), "utf-8")
    (tmp_path / "lithotse_desktop").mkdir()
    (tmp_path / "lithotse_desktop" / "bad.py").write_text(
        "import os\n\n"
        "x = 1  # noqa: E501\n"
        f"y = {'1 + ' * 40}1\n", "utf-8")
    proc = _ruff("--output-format", "concise", cwd=tmp_path)
    assert proc.returncode == 1
    codes = {line.split(" ")[1] for line in proc.stdout.splitlines() if line.startswith("lithotse_desktop/")}
    assert codes == {"F401", "RUF100", "E501"}, proc.stdout
