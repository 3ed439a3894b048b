"""The local HTTP API (``lithotse serve``) over the L3 cache; see :mod:`.app`.

The names below load :mod:`.app` (Starlette, the cache) when first used, so commands that do not
serve (an import, a build) do not pay for importing the web stack."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import RunningServer, create_app, run_server, start_server_thread
    from .token import workspace_token

__all__ = ["RunningServer", "create_app", "run_server", "start_server_thread", "workspace_token"]
_HOMES = {"RunningServer": ".app", "create_app": ".app", "run_server": ".app", "start_server_thread": ".app",
          "workspace_token": ".token"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name], __name__), name)
