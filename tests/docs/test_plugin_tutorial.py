"""docs/plugins.md's tutorial, followed literally in an empty folder (runs pip: slow).

Its shell commands run with bash against this environment's ``lithotse`` and ``python``; its
files are written, edited and compared as the page says (see :mod:`tests.docs.tutorial_doc`);
each output it shows must be what the commands print. Before the plugin is removed again, the
records the imports landed are read back and compared with the page's data files, parsed here
with ``json`` and filtered by the ranges of the page's import commands.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lithotse_desktop.plugins import reset_plugin_manager
from tests.conftest import REPO
from tests.docs.tutorial_doc import Step, output_matches, steps
from tests.support.wheels import SHARED_VENV

PAGE = REPO / "docs" / "plugins.md"
DIST = "lithotse-my-plugin"
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, SHARED_VENV]


def _installed() -> bool:
    try:
        md.distribution(DIST)
    except md.PackageNotFoundError:
        return False
    return True


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty folder, this environment's commands first on PATH, pip offline."""
    assert not _installed(), f"{DIST} is installed already; uninstall it before running this test"
    cwd = tmp_path / "tutorial"
    cwd.mkdir()
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip's spelling of "build with what is installed"
    for name in ("LITHOTSE_WORKSPACE", "LITHOTSE_PLUGINS", "LITHOTSE_DISABLE_PLUGINS", "LITHOTSE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    yield cwd
    if _installed():
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", DIST], capture_output=True)
    reset_plugin_manager()


def run_shell(cwd: Path, step: Step) -> str:
    assert not re.search(r"^\s*cd\b", step.text, re.M), f"{step.where}: the tutorial stays in one folder"
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step.text], cwd=cwd, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == 0, f"{step.where}: {step.text}\nexited {proc.returncode}:\n{proc.stdout}"
    return proc.stdout


def apply_file_step(cwd: Path, step: Step) -> None:
    path = cwd / step.path
    if step.kind == "generated":
        assert path.read_text("utf-8") == step.text, (
            f"{step.where}: {step.path} differs from what `lithotse plugins new` writes")
    elif step.kind == "create":
        assert not path.exists(), f"{step.where}: {step.path} exists already"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(step.text, "utf-8")
    else:
        text = path.read_text("utf-8")
        assert text.count(step.old) == 1, f"{step.where}: the text to change must occur once in {step.path}"
        path.write_text(text.replace(step.old, step.text), "utf-8")


def imported_ranges(page_steps: list[Step]) -> list[tuple[dt.date, dt.date]]:
    ranges = []
    for step in page_steps:
        for line in step.text.splitlines() if step.kind == "shell" else []:
            found = re.search(r"\bimport bp --from (\S+) --to (\S+)", line)
            if found:
                ranges.append((dt.date.fromisoformat(found[1]), dt.date.fromisoformat(found[2])))
    return ranges


def expected_readings(page_steps: list[Step]) -> dict[str, dict]:
    """The page's readings whose day lies in a range the page imported, parsed independently."""
    ranges = imported_ranges(page_steps)
    assert len(ranges) == 2, ranges
    found = {}
    for step in page_steps:
        if step.kind == "create" and step.path.startswith("readings/"):
            for line in step.text.splitlines():
                record = json.loads(line)
                day = dt.date.fromisoformat(record["date"])
                if any(lo <= day <= hi for lo, hi in ranges):
                    found[record["id"]] = {"date": day.isoformat(), "value": float(record["value"])}
    return found


READ_BACK = """
import json, sys
from lithotse_desktop.testing import read_rows
from lithotse_desktop.workspace import Workspace
rows = read_rows(Workspace.open(sys.argv[1]), "bp", "readings")
print(json.dumps({r["id"]: {"date": r["date"].isoformat(), "value": r["value"]} for r in rows}))
"""


def check_landed(cwd: Path, page_steps: list[Step]) -> None:
    """What the imports landed, read back by a new process through the installed plugin."""
    listed = json.loads(run_shell(cwd, Step("shell", "lithotse plugins list --json", "check")))
    [row] = [r for r in listed if r["name"] == "my-plugin"]
    assert row["status"] == "ok" and row["origin"].startswith("editable "), row
    proc = subprocess.run([sys.executable, "-c", READ_BACK, str(cwd / "work")], capture_output=True,
                          text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    want = expected_readings(page_steps)
    assert json.loads(proc.stdout) == want
    assert sorted(want) == ["bp-0002", "bp-0003", "bp-0004", "bp-0005", "bp-0006"]


def test_the_tutorial_runs_as_written(folder):
    page_steps = steps(PAGE)
    kinds = [s.kind for s in page_steps]
    for kind in ("shell", "generated", "create", "replace", "output"):
        assert kind in kinds, f"docs/plugins.md has no {kind} step: the tutorial format changed"
    shells = "\n".join(s.text for s in page_steps if s.kind == "shell")
    for command in ("lithotse plugins new my-plugin", "lithotse plugins install -e ./my-plugin",
                    "python -m pytest my-plugin", "import bp --from"):
        assert command in shells, command
    printed: str | None = None
    checked = False
    for step in page_steps:
        if step.kind == "shell":
            if "plugins remove" in step.text:
                check_landed(folder, page_steps)
                checked = True
            printed = run_shell(folder, step)
        elif step.kind == "output":
            assert printed is not None, f"{step.where}: output shown before any command"
            assert output_matches(step.text, printed), (
                f"{step.where}: the page shows\n{step.text}\nbut the commands printed\n{printed}")
            printed = None
        else:
            apply_file_step(folder, step)
    assert checked, "the tutorial ends by removing the plugin"
    assert not _installed(), "the tutorial's `plugins remove` uninstalled it"
