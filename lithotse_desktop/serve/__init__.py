"""The local HTTP API (``lithotse serve``) over the L3 cache; see :mod:`.app`."""

from .app import RunningServer, create_app, run_server, start_server_thread
from .token import workspace_token

__all__ = ["RunningServer", "create_app", "run_server", "start_server_thread", "workspace_token"]
