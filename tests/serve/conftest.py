from __future__ import annotations

import pytest
import requests

from lithotse_desktop.serve import start_server_thread, workspace_token
from tests.cache.helpers import _close_caches, build_sample  # noqa: F401  (fixture)
from tests.derive.conftest import lines  # noqa: F401  (fixture)
from tests.support.serving import served  # noqa: F401  (fixture)


@pytest.fixture
def api(workspace, lines):  # noqa: F811 - the fixture imported above, requested by name
    """A real uvicorn server on a free 127.0.0.1 port over a workspace with built derivatives."""
    build_sample(workspace, lines)
    server = start_server_thread(workspace, 0)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {workspace_token(workspace)}"
    session.base = server.url + "/api/v1"
    session.server = server
    yield session
    session.close()
    server.stop()
