"""Medplum's FHIR server (``@medplum/fhir-router`` with its in-memory repository), run with
Node from ``medplum/server.mjs`` on 127.0.0.1, for testing the REST connector against a
server the project did not write.

The npm packages come from ``medplum/package-lock.json`` (``npm ci``, which
``scripts/test.sh`` runs). A missing ``node`` or missing packages fail the tests that need
the server, with the command that fixes it.

    with MedplumServer(token="secret") as server:
        server.post_batch([...]); server.base_url  # http://127.0.0.1:PORT/fhir/R4
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.support.ports import free_port

FOLDER = Path(__file__).resolve().parent / "medplum"
ROUTER_VERSION = "5.2.13"
READY_TIMEOUT = 60.0



def node_command() -> list[str]:
    """``node`` with the flags Medplum needs on this Node version; fails the test when absent."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("the Medplum FHIR test server needs Node.js: `node` is not on PATH "
                    "(bash scripts/system-deps.sh installs Debian's nodejs and npm)", pytrace=False)
    manifest = FOLDER / "node_modules" / "@medplum" / "fhir-router" / "package.json"
    installed = json.loads(manifest.read_text("utf-8")).get("version") if manifest.exists() else None
    if installed != ROUTER_VERSION:
        found = f"version {installed} is installed" if installed else "it is not installed"
        pytest.fail(f"the Medplum FHIR test server needs @medplum/fhir-router {ROUTER_VERSION}, but "
                    f"{found}; run: (cd {FOLDER} && npm ci)  (bash scripts/test.sh does)", pytrace=False)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    if major < 20:
        pytest.fail(f"the Medplum FHIR test server needs Node.js 20 or newer; `{node}` is {version.strip()}",
                    pytrace=False)
    # @medplum/core uses the WebSocket global, which Node only has unflagged from 22 on
    return [node, "--experimental-websocket"] if major < 22 else [node]


class MedplumServer:
    """One Node process serving FHIR R4 at ``base_url`` with a bearer token check."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="lithotse-medplum-", suffix=".log", delete=False)
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}",
                                     "Content-Type": "application/fhir+json",
                                     "Accept": "application/fhir+json"})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir/R4"

    def __enter__(self) -> MedplumServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.session.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def start(self) -> None:
        command = [*node_command(), str(FOLDER / "server.mjs"), str(self.port)]
        self.process = subprocess.Popen(command, cwd=FOLDER, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT,
                                        env={**os.environ, "LITHOTSE_MEDPLUM_TOKEN": self.token})
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if f"ready {self.base_url}" in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"the Medplum FHIR test server did not start within {READY_TIMEOUT:.0f}s:\n"
                    f"{self.output()[-3000:]}", pytrace=False)

    def stop(self) -> None:
        """End the Node process (and wait for it), so its port refuses connections."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return Path(self.log.name).read_text("utf-8", errors="replace")

    # --- data, through Medplum's own REST interface ------------------------------------
    def reset(self) -> None:
        """Empty the repository (a test-only route of the wrapper)."""
        self._check(self.session.post(f"{self.base_url}/$reset"), "reset")

    def post_batch(self, resources: list[dict]) -> list[dict]:
        """Create resources in one batch Bundle; returns them as stored (ids, meta) in order."""
        bundle = {"resourceType": "Bundle", "type": "batch",
                  "entry": [{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
                            for r in resources]}
        answer = self._check(self.session.post(self.base_url, data=json.dumps(bundle)), "batch")
        stored = []
        for i, entry in enumerate(answer.get("entry") or []):
            status = str(entry.get("response", {}).get("status", ""))
            if not status.startswith("201"):
                raise AssertionError(f"Medplum refused batch entry {i}: {json.dumps(entry)[:500]}")
            stored.append(entry["resource"])
        assert len(stored) == len(resources)
        return stored

    def put(self, resource: dict) -> dict:
        url = f"{self.base_url}/{resource['resourceType']}/{resource['id']}"
        return self._check(self.session.put(url, data=json.dumps(resource)), "update")

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict]:
        """Every match of a search, following the wrapper's next links."""
        found: list[dict] = []
        url: str | None = f"{self.base_url}/{resource_type}"
        query: list[tuple[str, str]] | None = [*params, ("_count", "1000")]
        while url:
            bundle = self._check(self.session.get(url, params=query), "search")
            found += [e["resource"] for e in bundle.get("entry") or []]
            url = next((link["url"] for link in bundle.get("link") or [] if link["relation"] == "next"), None)
            query = None
        return found

    @staticmethod
    def _check(response: requests.Response, what: str) -> dict:
        if not response.ok:
            raise AssertionError(f"Medplum {what} failed: HTTP {response.status_code} {response.text[:500]}")
        return response.json()
