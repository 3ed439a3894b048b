"""The embedded L3 cache as a plugin (``builtin-cache``), registered by the plugin manager.

It offers the ``embedded`` backend and listens for published derivative versions: each one
goes into the workspace's cache (whichever backend ``[cache] backend`` names), straight from
the table the build just made; a derivative withdrawn (row-level now) is dropped. A Redis
plugin offers its backend through the same hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ..derive.catalog import Version
from ..hookspecs import hookimpl
from ..workspace import Workspace
from .backends import embedded_factory
from .lookup import publish_to_cache, withdraw_from_cache


@hookimpl
def lithotse_register_cache_backends() -> dict[str, Callable[..., Any]]:
    return {"embedded": embedded_factory}


@hookimpl
def lithotse_version_published(workspace: Workspace, version: Version, table: pa.Table) -> None:
    publish_to_cache(workspace, version, table)


@hookimpl
def lithotse_version_withdrawn(workspace: Workspace, name: str) -> None:
    withdraw_from_cache(workspace, name)
