"""A configured source's connector: the class its plugin registered, and an instance with its
settings and secrets. Both sides of L1 use it: landing fetches through it, readers read with it."""

from __future__ import annotations

from ..connectors import Connector
from ..errors import connector_guard
from ..plugins import get_plugin_manager
from ..workspace import Workspace


def connector_class(ws: Workspace, source_name: str) -> type[Connector]:
    """The connector class installed now for a source (no settings or secrets are read)."""
    return get_plugin_manager().connector(ws.source(source_name).connector)


def make_connector(ws: Workspace, source_name: str) -> Connector:
    """The source's connector, given its checked settings with secrets read from the secrets store."""
    src = ws.source(source_name)
    cls = get_plugin_manager().connector(src.connector)
    resolved = ws.resolved_settings(src)
    with connector_guard(cls.name, f"to start for source {source_name}"):
        return cls(cls.validate_settings(resolved))
