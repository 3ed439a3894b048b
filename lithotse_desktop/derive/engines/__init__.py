"""Engines that run a derivative's SQL: DuckDB embedded (the default) and Spark through Spark Connect.

An engine is a plugin like a connector or a store: ``lithotse_register_engines`` returns
``{name: factory}``, and the core's own two come from the built-in plugin ``builtin-engines``
(:mod:`.builtin`). A factory takes the workspace and the ``[engine]`` settings and returns an
:class:`Engine`; each build opens one :class:`EngineSession` on it, loads the inputs under their
aliases, runs the kind's SQL (compiled in the engine's :class:`~..compile.Dialect`) and hands
back only the Arrow result. Suppression, pseudonymization, version ids and Parquet publishing
happen afterwards in :mod:`..build`, the same whichever engine computed the cells.

Which engine builds a derivative: ``--engine`` for one run, else the spec's ``"engine"``, else
``[engine] kind`` of ``lithotse.toml``, else ``duckdb``; a ``sql`` derivative's text is in one
engine's dialect, so it is always built by its spec's engine (DuckDB unless it names one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ...errors import ConfigError, NotFound
from ...plugins import get_plugin_manager

if TYPE_CHECKING:  # the built-in engines' plugin module is imported by every command: keep this light
    from ...progress import Progress
    from ...raw.verify import IntegrityChecks
    from ...workspace import Workspace
    from ..catalog import Catalog, Version
    from ..compile import Dialect
    from ..inputs import StreamInput

DEFAULT_ENGINE = "duckdb"


class EngineSession(ABC):
    """One build's relations on an engine: inputs loaded by alias, queries run, results as Arrow."""

    dialect: Dialect

    @abstractmethod
    def load_stream(self, ws: Workspace, alias: str, resolved: StreamInput, progress: Progress,
                    checks: IntegrityChecks, *, materialize: bool = False, rescanned: bool = False,
                    unused: tuple[str, ...] = ()) -> pa.Schema:
        """Make ``alias`` (newest version of each record) and ``<alias>__landed`` (every landed
        row with its provenance) from a stream's raw objects; return ``alias``'s columns.
        ``rescanned``: the query may read ``alias`` more than once; ``unused``: columns the
        query never reads, which may be left out (see :func:`..inputs.load_stream`)."""

    @abstractmethod
    def load_derivative(self, catalog: Catalog, alias: str, name: str) -> pa.Schema:
        """Make ``alias`` the current version of derivative ``name``."""

    @abstractmethod
    def touched_periods(self, ws: Workspace, spec: dict, schema: pa.Schema, resolved: StreamInput,
                        previous: Version) -> list[Any] | None:
        """Periods that the landings new since ``previous`` can change, or None for a full rebuild."""

    @abstractmethod
    def mask_inputs(self, roles: dict[str, dict[str, str | None]]) -> dict[str, tuple[str, str]]:
        """Show identifiers of the inputs as tokens (a ``sql`` derivative's cells, see disclosure)."""

    @abstractmethod
    def lock_down(self, user_sql: bool = False) -> None:
        """From here on the SQL run may not read files other than the inputs; with ``user_sql``
        (a ``sql`` derivative's own text comes next) an engine that cannot promise it refuses."""

    @abstractmethod
    def run(self, sql: str, params: list[Any], what: str, progress: Progress | None = None) -> pa.Table:
        """The query's result; an engine error becomes a LithotseError starting with ``what``."""

    @abstractmethod
    def close(self) -> None:
        """Drop what the session made (relations, staged files)."""


class Engine(ABC):
    """A configured engine: opens a session per build."""

    name: str

    @abstractmethod
    def session(self, progress: Progress) -> EngineSession:
        """A fresh session; errors reaching the engine are a LithotseError naming where and why."""


EngineFactory = Callable[["Workspace", dict[str, Any]], Engine]


def engine_factories() -> dict[str, EngineFactory]:
    return get_plugin_manager().engines()


def engine_settings(ws: Workspace) -> dict[str, Any]:
    """``[engine]`` of ``lithotse.toml`` (``kind``, ``url``, engine-specific keys)."""
    section = ws.config.get("engine", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{ws.root / 'lithotse.toml'}: [engine] must be a table")
    return dict(section)


def check_engine_name(name: str, where: str = "engine") -> str:
    """``name`` if an installed engine has it; otherwise the error lists the ones that do."""
    known = engine_factories()
    if name not in known:
        raise NotFound(f"{where}: no engine named {name!r}; installed: {', '.join(sorted(known))}")
    return name


def engine_name(ws: Workspace, spec: dict, override: str | None = None) -> str:
    """The engine that builds ``spec``: the run's override, the spec's, the workspace's, DuckDB. A
    ``sql`` derivative is always built by the engine whose dialect its text is in (its spec's)."""
    if spec.get("kind") == "sql":
        return check_engine_name(str(spec.get("engine") or DEFAULT_ENGINE), f"derivative {spec['name']}: engine")
    if override:
        return check_engine_name(override, "--engine")
    if spec.get("engine"):
        return check_engine_name(str(spec["engine"]), f"derivative {spec['name']}: engine")
    kind = engine_settings(ws).get("kind")
    if kind:
        return check_engine_name(str(kind), f"{ws.root / 'lithotse.toml'}: [engine] kind")
    return DEFAULT_ENGINE


def open_engine(ws: Workspace, name: str) -> Engine:
    """The engine ``name`` with the workspace's ``[engine]`` settings (those of ``[engine.NAME]`` when
    the default engine is another one)."""
    factory = engine_factories()[check_engine_name(name)]
    settings = engine_settings(ws)
    if settings.get("kind", DEFAULT_ENGINE) != name:
        nested = settings.get(name)
        settings = dict(nested) if isinstance(nested, dict) else {}
    return factory(ws, settings)
