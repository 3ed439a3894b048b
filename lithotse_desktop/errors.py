"""Errors users see: each names what was wrong (a file, record, URL or field) and why."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


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
    def unknown(cls, what: str, name: str, known: Iterable[str], listed: str = "known") -> NotFound:
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


class ConnectorFailed(LithotseError):
    """A connector raised something other than a LithotseError: a bug in the plugin.

    Reported in one line naming the connector and what it was doing; the original exception
    is the ``__cause__``, whose traceback ``lithotse --debug`` (or ``LITHOTSE_DEBUG=1``) shows.
    """


@contextlib.contextmanager
def connector_guard(connector: str, doing: str) -> Iterator[None]:
    """Turn a connector's unexpected exception into ConnectorFailed; LithotseErrors pass."""
    try:
        yield
    except LithotseError:
        raise
    except Exception as exc:
        raise ConnectorFailed(f"connector {connector} failed {doing} ({type(exc).__name__}: {exc})") from exc


def guarded(items: Iterable[T], connector: str, doing: str) -> Iterator[T]:
    """The items of a connector's iterator, its unexpected exceptions reported by connector_guard.

    Only the connector's own steps are guarded, not what the caller does with each item."""
    iterator = iter(items)
    while True:
        with connector_guard(connector, doing):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


_QUOTED_VALUES = [
    (re.compile(r"""((?:string|value|Value|input|text|field value[^:'"]*:?)\s+)'(?:[^']|'')*'"""), r"\1'…'"),
    (re.compile(r'''((?:string|value|Value|input|text|field value[^:'"]*:?)\s+)"(?:[^"\\]|\\.)*"'''), r'\1"…"'),
    (re.compile(r"\b(with value)\s+-?[0-9][0-9.eE+-]*"), r"\1 …"),
    (re.compile(r"((?:Original Line|Input|Line contents?|Row)\s*:\s*).*$", re.M), r"\1…"),
]
"""Where DuckDB quotes a row's value in its messages: a string it could not convert, a value it
could not cast, the JSON or CSV line it could not parse."""


def without_values(message: object) -> str:
    """A database error's message with the values it quotes from rows left out (pass 38: a
    failed cast showed a patient id in the build's error dialog). What failed, where, and the
    query stay."""
    text = str(message)
    for pattern, replacement in _QUOTED_VALUES:
        text = pattern.sub(replacement, text)
    return text
