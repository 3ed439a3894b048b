"""Secrets through the OS keyring; config files hold only a reference.

A reference looks like ``{"keyring": "<workspace-id>/<purpose>"}``. Tests point
``PYTHON_KEYRING_BACKEND`` at a backend of their own, never the machine's keyring.
"""

from __future__ import annotations

import keyring
import keyring.errors

from .errors import ConfigError

SERVICE = "lithotse"


def secret_ref(workspace_id: str, purpose: str) -> dict[str, str]:
    return {"keyring": f"{workspace_id}/{purpose}"}


def is_ref(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"keyring"}


def store_secret(ref: dict[str, str], value: str) -> None:
    try:
        keyring.set_password(SERVICE, ref["keyring"], value)
    except keyring.errors.KeyringError as exc:
        raise ConfigError(f"cannot save secret {ref['keyring']} in the OS keyring: {exc}. "
                          "Install and unlock a keyring (Secret Service, macOS Keychain, "
                          "Windows Credential Locker) or set PYTHON_KEYRING_BACKEND.") from None


def load_secret(ref: dict[str, str]) -> str:
    try:
        value = keyring.get_password(SERVICE, ref["keyring"])
    except keyring.errors.KeyringError as exc:
        raise ConfigError(f"cannot read secret {ref['keyring']} from the OS keyring: {exc}") from None
    if value is None:
        raise ConfigError(f"secret {ref['keyring']} is not in the OS keyring; set it again "
                          "(for a source: lithotse source add NAME ... --replace)")
    return value


def delete_secret(ref: dict[str, str]) -> None:
    try:
        keyring.delete_password(SERVICE, ref["keyring"])
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringError:
        pass
