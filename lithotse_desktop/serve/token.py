"""The workspace token that every local API request must carry, kept in the secrets store."""

from __future__ import annotations

import secrets

from ..secrets import SecretMissing, load_secret, secret_ref, store_secret
from ..workspace import Workspace

PURPOSE = "serve/token"


def workspace_token(ws: Workspace, *, rotate: bool = False) -> str:
    """The token, created (or replaced, with ``rotate``) on first use."""
    ref = secret_ref(ws.id, PURPOSE)
    if not rotate:
        try:
            return load_secret(ref)
        except SecretMissing:
            pass
    token = secrets.token_urlsafe(32)
    store_secret(ref, token)
    return token
