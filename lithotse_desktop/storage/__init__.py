"""One storage interface for every tier and every backend.

Keys are ``/``-separated relative paths (``raw/ehr/encounters/<sha256>``) and mean the
same thing on local disk and in S3, so tiers and stores are configuration, not code paths.
Every write is atomic: a reader sees the old object or the new one, never a partial one.

This package is the interface and its two built-in implementations (:mod:`.local`,
:mod:`.s3`). Stores are opened by URL through the plugin manager
(:func:`lithotse_desktop.plugins.open_store`), which asks the built-in plugin in
:mod:`.builtin` first and third-party plugins after it; nothing here looks plugins up.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError, LithotseError

_KEY_PART = re.compile(r"^[A-Za-z0-9._=@+-][A-Za-z0-9._=@+ -]*$")


class PreconditionFailed(LithotseError):
    """A conditional write lost: the object exists (create) or changed (update)."""


class AccessDenied(LithotseError):
    """The server refused these credentials for this bucket or operation."""


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _KEY_PART.match(p) for p in parts):
        raise ConfigError(f"invalid object key {key!r}")
    return key


def safe_part(text: str) -> str:
    """A key segment made from a user-facing name (stream, file) without path tricks."""
    cleaned = re.sub(r"[^A-Za-z0-9._=@+-]+", "_", text).strip("._") or "_"
    return cleaned[:120]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: float


class Store(abc.ABC):
    """An object store holding one or more tiers."""

    url: str

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, *, if_none_match: bool = False, move: bool = False) -> bool:
        """Store a local file under ``key``; with ``if_none_match`` return False if it exists."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None) -> str:
        """Store bytes; returns the new etag. Raises PreconditionFailed when a condition fails."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO: ...

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo | None: ...

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    @property
    def identity(self) -> str:
        """What this store is whatever its address is written as (a folder through ``..`` or a
        link, a bucket's prefix with or without a slash): two stores with one identity are one."""
        return self.url

    def local_path(self, key: str) -> Path | None:
        """A path a reader can open directly, or None when the object is remote."""
        return None

    def location(self, key: str) -> str | None:
        """Where another program (a Spark engine) reads the object: a path or an ``s3://`` URL;
        None when this store has no such address."""
        path = self.local_path(key)
        return str(path) if path is not None else None

    def fetch_to(self, key: str, dest: Path) -> Path:
        """Copy an object to a local file (used where a reader needs a real path)."""
        import shutil

        from ..atomic import atomic_write_stream

        with self.open_read(key) as src:
            atomic_write_stream(dest, lambda out: shutil.copyfileobj(src, out, 1 << 20))
        return dest

