"""Spark Connect servers for tests: one local Spark (pyspark's jars, Java 17) for the whole session,
and Sail (``pysail``), a Spark Connect server with native S3, reading the tests' SeaweedFS.

Both are real servers the engine reaches over gRPC exactly as it would a cluster's; neither is
skipped when missing: the session fails naming what to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ports import free_port

LOCAL_SPARK = "local[2]"



@pytest.fixture(scope="session")
def spark_url() -> str:
    """``local[2]``, its server started once for the session (about half a minute on 2 cores)."""
    from lithotse_desktop.derive.engines.spark import connect

    if shutil.which("java") is None:
        pytest.fail("a local Spark needs Java 17: apt-get install openjdk-17-jre-headless "
                    "(scripts/system-deps.sh installs it)", pytrace=False)
    connect(LOCAL_SPARK)
    return LOCAL_SPARK


class SailServer:
    """``sail spark server`` in its own process; S3 settings reach it through its environment only
    (the AWS SDK's variables, which Sail reads), never through Lithotse or a log line."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.port = free_port()
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> SailServer:
        sail = Path(sys.executable).parent / "sail"
        if not sail.exists():
            pytest.fail(f"Sail is not installed: {sys.executable} -m pip install pysail", pytrace=False)
        self._log = open(self.workdir / "sail.log", "wb")
        self._proc = subprocess.Popen([str(sail), "spark", "server", "--ip", "127.0.0.1", "--port", str(self.port)],
                                      cwd=self.workdir, env={**os.environ, **self.env}, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sail exited: {(self.workdir / 'sail.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("sail did not start listening")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def sail(seaweed, tmp_path_factory: pytest.TempPathFactory):
    """A Sail Spark Connect server that reads the session's SeaweedFS as the ``client`` identity."""
    creds = seaweed.credentials["client"]
    env = {"AWS_ACCESS_KEY_ID": creds["access_key_id"], "AWS_SECRET_ACCESS_KEY": creds["secret_access_key"],
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT": seaweed.endpoint_url, "AWS_ENDPOINT_URL": seaweed.endpoint_url,
           "AWS_ALLOW_HTTP": "true", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}
    server = SailServer(tmp_path_factory.mktemp("sail"), env).start()
    try:
        yield server
    finally:
        from lithotse_desktop.derive.engines.spark import forget

        forget(server.url)  # closes the client: at exit it would retry its cleanup calls on a stopped server
        server.stop()
