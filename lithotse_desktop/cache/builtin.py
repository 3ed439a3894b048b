"""The embedded L3 cache as a plugin (``builtin-cache``), registered by the plugin manager.

It offers the ``embedded`` backend and listens for published derivative versions: each one
goes into the workspace's cache (whichever backend ``[cache] backend`` names), straight from
the table the build just made; a derivative withdrawn (row-level now) is dropped. A Redis
plugin offers its backend through the same hook. The cache's lookup code (and the derive
package under it) is imported when a version is published or withdrawn, not when every
command loads the plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from .backends import embedded_factory

if TYPE_CHECKING:
    import pyarrow as pa

    from ..derive.catalog import Version
    from ..workspace import Workspace


@hookimpl
def lithotse_register_cache_backends() -> dict[str, Callable[..., Any]]:
    return {"embedded": embedded_factory}


@hookimpl
def lithotse_version_published(workspace: Workspace, version: Version, table: pa.Table) -> None:
    from .lookup import publish_to_cache

    publish_to_cache(workspace, version, table)


@hookimpl
def lithotse_version_withdrawn(workspace: Workspace, name: str) -> None:
    from .lookup import withdraw_from_cache

    withdraw_from_cache(workspace, name)
