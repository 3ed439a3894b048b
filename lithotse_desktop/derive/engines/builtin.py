"""The core's engines as a plugin (``builtin-engines``), registered by the plugin manager:
``duckdb`` (embedded, the default) and ``spark`` (any Spark Connect server, or a local one)."""

from __future__ import annotations

from typing import Any

from ...hookspecs import hookimpl
from ...workspace import Workspace
from . import Engine, EngineFactory
from .duckdb import DuckDBEngine


def _spark(ws: Workspace, settings: dict[str, Any]) -> Engine:
    from .spark import SparkEngine  # pyspark is imported only when a build asks for Spark

    return SparkEngine(ws, settings)


@hookimpl
def lithotse_register_engines() -> dict[str, EngineFactory]:
    return {"duckdb": DuckDBEngine, "spark": _spark}
