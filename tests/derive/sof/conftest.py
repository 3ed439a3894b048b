"""A real Spark for the SQL-on-FHIR tests: the engine's own local Spark Connect server.

``lithotse_desktop.derive.engines.spark.connect("local[2]")`` starts one local[2] Spark (Java 17) with
the Connect plugin on a free loopback port per process and talks to it only through a Spark Connect
client, as builds do; the engine tests (tests/support/spark.py) share the same server, and both
modules run in one xdist group so a parallel run starts it once.
"""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def spark() -> object:
    from lithotse_desktop.derive.engines.spark import connect

    if shutil.which("java") is None:
        pytest.fail("a local Spark needs Java 17: apt-get install openjdk-17-jre-headless "
                    "(scripts/system-deps.sh installs it)", pytrace=False)
    return connect("local[2]")
