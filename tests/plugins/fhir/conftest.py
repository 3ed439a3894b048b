"""Fixtures for the FHIR connector tests: the plugin loaded from its entry point, sample data,
a running test server and fast retries."""

from __future__ import annotations

import pytest

from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from tests.conftest import TEST_DATA

from .fhir_server import FhirTestServer

SMART = TEST_DATA / "fhir" / "bulk-ndjson-smart-10-patients"
PATHLING = TEST_DATA / "fhir" / "ndjson-pathling-synthea-r4"
BUNDLES = TEST_DATA / "fhir" / "bundles-pathling-synthea-r4"
TOKEN = "s3cret-token"


@pytest.fixture
def fhir_plugin():
    """The installed lithotse-fhir distribution, loaded through the ``lithotse`` entry point."""
    reset_plugin_manager()
    pm = get_plugin_manager()
    assert pm.plugins["fhir"].error is None
    assert {"fhir-files", "fhir-rest", "fhir-bulk"} <= set(pm.connectors())
    yield pm
    reset_plugin_manager()


@pytest.fixture
def fast_retries(monkeypatch):
    from lithotse_fhir.http import FhirHttp

    monkeypatch.setattr(FhirHttp, "backoff_base", 0.01)


@pytest.fixture
def fhir_server(fast_retries):
    with FhirTestServer.from_folders([SMART, PATHLING], token=TOKEN) as server:
        yield server


def raw_keys(ws) -> list[str]:
    return [o.key for o in ws.store("raw").list("")]


@pytest.fixture(scope="session")
def medplum_process():
    """One Medplum FHIR server (Node) for the whole session; see medplum_server.py."""
    from .medplum_server import MedplumServer

    with MedplumServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def medplum(medplum_process, fast_retries):
    """The session's Medplum server, emptied for this test."""
    medplum_process.reset()
    return medplum_process
