"""Keyring backends standing in for an OS keyring, for the tests that need one (``os_keyring``).

The suite as a whole keeps secrets in Lithotse's file store; these backends let tests check
that a usable keyring is preferred and that a failing one is handled. ``FileKeyring`` keeps
entries in the JSON file named by $LITHOTSE_TEST_KEYRING, so subprocesses see the same ones;
it is never the machine's keyring.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _path(self) -> Path:
        return Path(os.environ["LITHOTSE_TEST_KEYRING"])

    def _load(self) -> dict:
        try:
            return json.loads(self._path().read_text())
        except FileNotFoundError:
            return {}

    def _save(self, data: dict) -> None:
        tmp = self._path().with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._path())

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\x00{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\x00{username}"] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\x00{username}", None) is None:
            raise PasswordDeleteError(username)
        self._save(data)


class LockedOnWriteKeyring(FileKeyring):
    """Answers reads but refuses every write, like a Secret Service collection that stays locked."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("collection is locked and the unlock prompt was dismissed")
