"""Errors users see: each names what was wrong (a file, record, URL or field) and why."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
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
    """The user cancelled a long job. What it had committed before (``committed``: an import's
    landings, derivatives a build published before the one cancelled, each said in a few words)
    stays; nothing else it started was committed."""

    def __init__(self, committed: Sequence[str] = ()) -> None:
        self.committed = list(committed)
        super().__init__(f"cancelled after it committed {self.kept}" if self.committed else "cancelled")

    @property
    def kept(self) -> str:
        """What the job had committed, in one phrase ("" for nothing)."""
        return "; ".join(self.committed)

    def sentence(self) -> str:
        """What the user is told: what stays, and that nothing else was committed."""
        if not self.committed:
            return "cancelled: nothing the command had started was committed"
        return f"cancelled: {self.kept} committed before the cancel; nothing else the command had started was"


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


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER_AFTER = re.compile(r"\b(with value|value)\s+-?[0-9][0-9.eE+-]*")
_LINE_AFTER = re.compile(r"((?:Original Line|Input|Line contents?|Row)\s*:\s*).*$")
_BARE = re.compile(r"^([A-Za-z ]*Error:\s*)(\S+)$")


def without_values(message: object, query: str = "") -> str:
    """A database error's message with the values it may quote from rows left out (pass 38: a
    failed cast showed a patient id in the build's error dialog; pass 39: a date format, a second
    line, ``error(patient_id)``). What failed and where stay: the first line, with every quoted
    fragment that is not in ``query`` (the query's own names and literals) replaced by ``'…'``,
    and the query's own lines (``LINE 1: …``)."""
    lines = str(message).splitlines() or [""]
    first = _QUOTED.sub(lambda m: m.group(0) if m.group(0)[1:-1] and m.group(0)[1:-1] in query
                        else m.group(0)[0] + "…" + m.group(0)[0], lines[0])
    first = _NUMBER_AFTER.sub(r"\1 …", first)
    first = _LINE_AFTER.sub(r"\1…", first)
    bare = _BARE.match(first)
    if bare and bare.group(2) not in query:
        first = bare.group(1) + "…"
    return "\n".join([first, *(line for line in lines[1:] if line.startswith("LINE "))])
