"""A real Spark for the SQL-on-FHIR tests: one local Spark Connect server for the whole test session.

Kept small on purpose: tests/support/spark.py (the engine work) has the shared fixture, and the two are
to be unified. The server is a local[2] Spark (Java 17) with the Connect plugin on a free loopback port,
and the tests talk to it only through a Spark Connect client. `remote("local[2]")` would do the same
but always on port 15002, which another Spark on the machine (a parallel test run) may already hold.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    port = _free_port()
    server = (
        SparkSession.builder.master("local[2]")
        .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
        .config("spark.connect.grpc.binding.address", "127.0.0.1")
        .config("spark.connect.grpc.binding.port", str(port))
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    client = ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    yield client
    client.stop()
    server.stop()
