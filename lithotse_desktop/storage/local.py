"""Local-disk store: objects are files below a root folder, written atomically."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..atomic import atomic_write_bytes, fsync_dir
from . import ObjectInfo, PreconditionFailed, Store, check_key


def _etag(st: os.stat_result) -> str:
    return hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()).hexdigest()[:16]


class LocalStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = self.root.as_uri()
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def identity(self) -> str:
        return Path(os.path.realpath(self.root)).as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put_file(self, key: str, path: Path, *, if_none_match: bool = False, move: bool = False) -> bool:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if if_none_match and dest.exists():
            return False
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        os.close(fd)
        try:
            if move:
                try:
                    os.replace(path, tmp)
                except OSError:
                    shutil.copyfile(path, tmp)
            else:
                shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if if_none_match:
                try:
                    os.link(tmp, dest)  # fails if another writer won the race
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(dest.parent)
        return True

    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None) -> str:
        dest = self._path(key)
        if if_none_match:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                try:
                    os.link(tmp, dest)
                except FileExistsError:
                    raise PreconditionFailed(f"{key} already exists") from None
            finally:
                os.unlink(tmp)
            fsync_dir(dest.parent)
        else:
            if if_match is not None:
                current = self.stat(key)
                if current is None or current.etag != if_match:
                    raise PreconditionFailed(f"{key} changed since it was read")
            atomic_write_bytes(dest, data)
        return _etag(dest.stat())

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def open_read(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, _etag(st), st.st_mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root
        start = base.joinpath(*prefix.rstrip("/").split("/")) if prefix.strip("/") else base
        if start.is_file():
            start = start.parent
        if not start.exists():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath, name)
                key = full.relative_to(base).as_posix()
                if not key.startswith(prefix):
                    continue
                st = full.stat()
                yield ObjectInfo(key, st.st_size, _etag(st), st.st_mtime)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def local_path(self, key: str) -> Path | None:
        return self._path(key)
