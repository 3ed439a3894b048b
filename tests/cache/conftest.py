from __future__ import annotations

import pytest

from tests.cache.helpers import _close_caches, redis_url, use_backend  # noqa: F401  (fixtures)
from tests.derive.conftest import lines  # noqa: F401  (fixture)


@pytest.fixture(params=["embedded", "redis"])
def backend(request, workspace):
    """Run a test on each cache backend; the redis one talks to a real redis-server."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    use_backend(workspace, request.param, url)
    return request.param
