"""Paths as a person would write them, for text that is shown (GUI pages, screenshots, hints).

Absolute paths name one machine's folder layout; shown text uses ``~`` for the home folder or a
path relative to the folder the program was started from instead. Stored data keeps full paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname


def display_path(path: str | os.PathLike[str]) -> str:
    """``~/…`` under the home folder, relative under the current folder, else unchanged."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    target = Path(text)
    home = Path.home()
    if home != Path(home.anchor):
        for base in dict.fromkeys((home, home.resolve())):
            if target.is_relative_to(base):
                return str(Path("~") / target.relative_to(base))
    return relative_to_cwd(target) or text


def relative_to_cwd(path: str | os.PathLike[str]) -> str | None:
    """The path relative to the current folder when it lies inside it (and that is not ``/``)."""
    target = Path(path)
    cwd = Path.cwd()
    if cwd == Path(cwd.anchor) or not target.is_absolute() or not target.is_relative_to(cwd):
        return None
    return str(target.relative_to(cwd)) if target != cwd else "."


def display_paths(value: Any) -> Any:
    """:func:`display_path` applied to every absolute path (key or value) inside JSON-like data."""
    if isinstance(value, dict):
        return {display_paths(k): display_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [display_paths(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return display_path(value)
    return value


def display_origin(origin: str) -> str:
    """A plugin origin (``editable file:///…`` or a ``file://`` URL) with its path shortened;
    unchanged when the path cannot be shortened."""
    prefix, _, url = origin.rpartition(" ")
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return origin
    path = url2pathname(parsed.path)
    shown = display_path(path)
    if shown == path:
        return origin
    return f"{prefix} {shown}" if prefix else shown
