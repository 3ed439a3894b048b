"""The workspace token that every local API request must carry, kept in the OS keyring."""

from __future__ import annotations

import secrets

from ..errors import ConfigError
from ..secrets import load_secret, secret_ref, store_secret
from ..workspace import Workspace

PURPOSE = "serve/token"


def workspace_token(ws: Workspace, *, rotate: bool = False) -> str:
    """The token, created (or replaced, with ``rotate``) on first use."""
    ref = secret_ref(ws.id, PURPOSE)
    if not rotate:
        try:
            return load_secret(ref)
        except ConfigError as exc:
            if "is not in the OS keyring" not in str(exc):
                raise
    token = secrets.token_urlsafe(32)
    store_secret(ref, token)
    return token
