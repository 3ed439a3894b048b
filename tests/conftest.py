"""Fixtures every test can use: an isolated keyring, a fresh workspace, paths to shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_keyring(tmp_path_factory: pytest.TempPathFactory):
    """Point keyring at a throwaway file backend for this whole test session (and subprocesses)."""
    path = tmp_path_factory.mktemp("keyring") / "keyring.json"
    old = {k: os.environ.get(k) for k in ("PYTHON_KEYRING_BACKEND", "LITHOTSE_TEST_KEYRING", "PYTHONPATH")}
    os.environ["PYTHON_KEYRING_BACKEND"] = "tests.support.keyring_backend.FileKeyring"
    os.environ["LITHOTSE_TEST_KEYRING"] = str(path)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), old["PYTHONPATH"]]))
    import keyring
    from tests.support.keyring_backend import FileKeyring

    keyring.set_keyring(FileKeyring())
    yield path
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from lithotse_desktop.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    monkeypatch.setenv("LITHOTSE_WORKSPACE", str(ws.root))
    return ws


@pytest.fixture
def cli():
    """Run the CLI in-process; returns the click Result. Fails loudly on unexpected exceptions."""
    from lithotse_desktop.cli import main

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, expect: int | None = 0):
        result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, (result.output, getattr(result, "stderr", ""))
        return result

    return invoke


def run_lithotse(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run the real ``lithotse`` entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "lithotse_desktop", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kwargs)
