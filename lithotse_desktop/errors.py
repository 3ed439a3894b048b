"""Errors users see: each names what was wrong (a file, record, URL or field) and why."""

from __future__ import annotations

from typing import Iterable


class LithotseError(Exception):
    """Base for every error meant for a person to read; the CLI prints it without a traceback."""


class InputError(LithotseError):
    """Bad input: the location (file, line, record, URL) and the reason, in one message."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")


class ConfigError(LithotseError):
    """A workspace, source or spec setting that cannot be used as given."""


class NotFound(LithotseError):
    """A named thing (source, landing, derivative, plugin) that does not exist."""

    @classmethod
    def unknown(cls, what: str, name: str, known: "Iterable[str]", listed: str = "known") -> "NotFound":
        """``no <what> named '<name>'; <listed>: a, b`` — the names that would have worked."""
        names = ", ".join(sorted(set(known))) or "none"
        return cls(f"no {what} named {name!r}; {listed}: {names}")


class Cancelled(LithotseError):
    """The user cancelled a long job; nothing it started was committed."""

    def __init__(self) -> None:
        super().__init__("cancelled")


class CorruptObject(LithotseError):
    """A raw object whose bytes no longer match the sha256 (or size) it was landed with."""

    def __init__(self, key: str, what: str, reason: str) -> None:
        self.key = key
        super().__init__(f"raw object {key} ({what}) is damaged: {reason}; it was not used. "
                         f"`lithotse raw verify` checks every raw object and reports the details")
