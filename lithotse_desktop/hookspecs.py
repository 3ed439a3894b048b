"""The hooks a Lithotse plugin can implement.

Plugins are Python distributions that declare an entry point in the ``lithotse`` group,
pointing at a module (or object) holding functions marked with ``@hookimpl``::

    [project.entry-points.lithotse]
    csv = "lithotse_csv"

First-party connectors in ``plugins/`` use exactly this path, so a third-party plugin is
installed and loaded the same way as the built-in ones. The core's own stores (local folders,
``s3://``), its embedded L3 cache and its engines (DuckDB, Spark) implement these hooks too, as
in-process plugins the plugin manager always registers (``builtin-stores``, ``builtin-cache``,
``builtin-engines``): there is one way to
extend Lithotse, and the core uses it. Plugin authors import everything from
:mod:`lithotse_desktop.plugin`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import pyarrow as pa

    from .connectors import Connector
    from .derive.catalog import Version
    from .derive.engines import EngineFactory
    from .storage import Store
    from .workspace import Workspace

PROJECT = "lithotse"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lithotse_register_connectors() -> list[type[Connector]]:
    """Return connector classes this plugin provides.

    Each class declares its ``name`` (unique across plugins), ``version``, typed config
    ``fields`` (from which the desktop app draws its form), its streams and, per stream,
    the date field used for date ranges.
    """


@hookspec(firstresult=True)
def lithotse_open_store(url: str, options: dict[str, Any], base: Path) -> Store | None:
    """Open a store for ``url`` (with the options of its ``[stores.NAME]`` table), or return
    None to pass. ``base`` is the workspace folder, for URLs relative to it.

    The built-in stores answer first for local folders and ``s3://``; a plugin adds schemes.
    """


@hookspec
def lithotse_register_cache_backends() -> dict[str, Callable[..., Any]]:
    """Return ``{name: factory}`` for L3 cache backends; a factory takes the workspace and options.

    A plugin cannot replace the built-in ``embedded`` backend.
    """


@hookspec
def lithotse_register_engines() -> dict[str, EngineFactory]:
    """Return ``{name: factory}`` for engines that build derivatives; a factory takes the workspace
    and its ``[engine]`` settings and returns an :class:`~lithotse_desktop.plugin.Engine`.

    The built-in ``duckdb`` and ``spark`` cannot be replaced by a plugin.
    """


@hookspec
def lithotse_version_published(workspace: Workspace, version: Version, table: pa.Table) -> None:
    """A derivative version was just published to L2 (its CURRENT pointer moved to it).

    Only versions that may leave the workspace are announced: aggregates and de-identified
    versions, never row-level ones (see :mod:`lithotse_desktop.derive.disclosure`).
    ``table`` is the version's whole table as the build made it (suppressed, pseudonymized),
    the same rows and columns :meth:`~lithotse_desktop.derive.catalog.Catalog.read` returns, so
    a listener needs not read the Parquet back. The built-in cache puts it in the L3 cache.
    An exception is recorded against the plugin that raised it; the build stays published.
    """


@hookspec
def lithotse_version_withdrawn(workspace: Workspace, name: str) -> None:
    """A derivative's published copies must go: it is row-level now (its latest version went to
    the restricted store). The built-in cache drops it; a plugin that copied earlier versions
    elsewhere should remove them. An exception is recorded against the plugin that raised it.
    """
