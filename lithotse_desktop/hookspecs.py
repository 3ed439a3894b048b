"""The hooks a Lithotse plugin can implement.

Plugins are Python distributions that declare an entry point in the ``lithotse`` group,
pointing at a module (or object) holding functions marked with ``@hookimpl``::

    [project.entry-points.lithotse]
    csv = "lithotse_csv"

First-party connectors in ``plugins/`` use exactly this path, so a third-party plugin is
installed and loaded the same way as the built-in ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from .connectors import Connector
    from .storage import Store

PROJECT = "lithotse"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lithotse_register_connectors() -> list[type["Connector"]]:
    """Return connector classes this plugin provides.

    Each class declares its ``name`` (unique across plugins), ``version``, typed config
    ``fields`` (from which the desktop app draws its form), its streams and, per stream,
    the date field used for date ranges.
    """


@hookspec(firstresult=True)
def lithotse_open_store(url: str, options: dict[str, Any]) -> "Store | None":
    """Open a store for a URL scheme the core does not know, or return None to pass."""


@hookspec
def lithotse_register_cache_backends() -> dict[str, Callable[..., Any]]:
    """Return ``{name: factory}`` for L3 cache backends; a factory takes the workspace and options."""
