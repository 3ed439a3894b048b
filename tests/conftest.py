"""Fixtures every test can use: a private secrets store, a fresh workspace, the sample data in tests/data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.seaweed import seaweed  # noqa: F401 - the one session-wide SeaweedFS fixture, defined once here

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test that used SeaweedFS reports weed's own errors, which say why a request got
    an InternalError (CI keeps no server logs)."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("seaweed")
    if report.failed and server is not None:
        errors = server.error_lines()
        if errors:
            report.sections.append(("weed errors", errors))


@pytest.fixture(autouse=True, scope="session")
def _isolated_secrets(tmp_path_factory: pytest.TempPathFactory):
    """Secrets of this whole session (and its subprocesses) go to a throwaway file store.

    The store is pinned to "file" in a temp folder, so the suite exercises the file store, and
    keyring is pointed at its fail backend, so nothing can reach the machine's own keyring.
    Tests that need a working OS keyring ask for ``os_keyring``.
    """
    folder = tmp_path_factory.mktemp("secrets")
    env = {"LITHOTSE_SECRETS_STORE": "file", "LITHOTSE_SECRETS_DIR": str(folder),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    old = {k: os.environ.get(k) for k in (*env, "LITHOTSE_TEST_KEYRING", "PYTHONPATH")}
    os.environ.update(env)
    os.environ.pop("LITHOTSE_TEST_KEYRING", None)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), old["PYTHONPATH"]]))
    import keyring
    from keyring.backends import fail

    from lithotse_desktop import secrets

    keyring.set_keyring(fail.Keyring())
    secrets.reset()
    yield folder
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def os_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A working "OS keyring" (a JSON file backend) that auto mode picks, here and in subprocesses.

    Yields the backend's file; the file store of this test lives in ``tmp_path / "secrets"``.
    """
    import keyring

    from lithotse_desktop import secrets
    from tests.support.keyring_backend import FileKeyring

    path = tmp_path / "os-keyring.json"
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.support.keyring_backend.FileKeyring")
    monkeypatch.setenv("LITHOTSE_TEST_KEYRING", str(path))
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "auto")
    monkeypatch.setenv("LITHOTSE_SECRETS_DIR", str(tmp_path / "secrets"))
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    secrets.reset()
    yield path
    keyring.set_keyring(previous)
    secrets.reset()


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
