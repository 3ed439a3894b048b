"""``lithotse serve`` as a user runs it: a real subprocess, waited for until it answers, then stopped."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def _stderr_of(proc: subprocess.Popen) -> str:
    log = getattr(proc, "stderr_log", None)
    if log is not None:
        return Path(log).read_text("utf-8", errors="replace")
    return proc.stderr.read() if proc.stderr is not None else ""


def wait_for_api(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Until ``/api/v1/derivatives`` answers (401 without a token is an answer)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/v1/derivatives"
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"lithotse serve exited with {proc.returncode}: {_stderr_of(proc)}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"lithotse serve did not answer on port {port} within {timeout:.0f} s") from exc
            time.sleep(0.1)


@contextlib.contextmanager
def lithotse_serve(workspace: Path, port: int, *args: str, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run ``lithotse serve ARGS`` for ``workspace`` in the background; ``port`` is where it should
    listen (from ``--port`` or ``[serve] port``). Stopped (and reaped) on exit. Its stderr goes to a
    file (a pipe nobody reads could fill and stall it); when the test fails inside, the failure
    carries the server's last output, so an error the API answered with can be traced."""
    with tempfile.NamedTemporaryFile("w+", prefix="lithotse-serve-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen([sys.executable, "-m", "lithotse_desktop", "serve", *args],
                                env={**os.environ, "LITHOTSE_WORKSPACE": str(workspace)}, cwd=cwd,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    proc.stderr_log = log.name  # type: ignore[attr-defined]
    try:
        wait_for_api(port, proc)
        yield proc
    except BaseException as exc:
        exc.add_note("lithotse serve stderr (last 4000 characters):\n" + _stderr_of(proc)[-4000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture
def served(workspace):
    """``served(port=0, token=None)`` starts the real local API over the workspace (in a thread)
    and returns a client of it; ``served.stop()`` stops it, as does the end of the test."""
    from lithotse_desktop.serve import start_server_thread
    from lithotse_desktop.serve.client import ApiClient
    from lithotse_desktop.serve.token import workspace_token

    running = []

    def start(port: int = 0, token: str | None = None) -> ApiClient:
        server = start_server_thread(workspace, port, token=token)
        running.append(server)
        return ApiClient(server.port, token or workspace_token(workspace))

    def stop() -> None:
        while running:
            running.pop().stop()

    start.stop = stop
    yield start
    stop()
