"""The core's engines as a plugin (``builtin-engines``), registered by the plugin manager:
``duckdb`` (embedded, the default) and ``spark`` (any Spark Connect server, or a local one).

Each engine's module is imported when a build opens it: every command loads the plugins, and
one that builds nothing (an import) should not pay for the derive package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...hookspecs import hookimpl

if TYPE_CHECKING:
    from ...workspace import Workspace
    from . import Engine, EngineFactory


def _duckdb(ws: Workspace, settings: dict[str, Any]) -> Engine:
    from .duckdb import DuckDBEngine

    return DuckDBEngine(ws, settings)


def _spark(ws: Workspace, settings: dict[str, Any]) -> Engine:
    from .spark import SparkEngine  # pyspark is imported only when a build asks for Spark

    return SparkEngine(ws, settings)


@hookimpl
def lithotse_register_engines() -> dict[str, EngineFactory]:
    return {"duckdb": _duckdb, "spark": _spark}
