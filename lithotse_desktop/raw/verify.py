"""Raw objects checked against their names and manifests, by ``lithotse raw verify`` and by
every read.

An object's key ends in the sha256 of its bytes, and each manifest naming it records that
sha256 and the size, so any change to stored bytes (a flipped byte that still parses, a
truncated copy) shows when the bytes are hashed again. Reads hash what they read as they
read it (:class:`ObjectCheck`); :func:`verify_raw` hashes every object of every raw store the
workspace reads. Nothing here writes to a store.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import CorruptObject, LithotseError, NotFound
from ..progress import Progress
from ..storage import Store, safe_part
from ..workspace import Workspace
from .manifest import Manifest

CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    """The sha256 and size of one complete read of an object, and what was read."""

    sha256: str
    size: int
    origin: str
    path: Path | None = None


class _Stopped(Exception):
    """The read this hash was for has ended; the result is no longer wanted."""


def hash_stream(fh: BinaryIO, origin: str, stop: threading.Event | None = None,
                path: Path | None = None) -> Digest:
    """Hash a stream to its end (raises _Stopped when ``stop`` is set first)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := fh.read(CHUNK):
        if stop is not None and stop.is_set():
            raise _Stopped()
        digest.update(chunk)
        size += len(chunk)
    return Digest(digest.hexdigest(), size, origin, path)


class _HashingReader(io.RawIOBase):
    """Passes a stream's bytes through, hashing them; reports the digest when the end is reached.

    Only a read from the first byte to the last, in order, gives a digest (the stream cannot
    seek), so a reader that stops early simply reports nothing.
    """

    def __init__(self, inner: BinaryIO, origin: str, on_end: Callable[[Digest], None]) -> None:
        self._inner = inner
        self._origin = origin
        self._on_end: Callable[[Digest], None] | None = on_end
        self._digest = hashlib.sha256()
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        n = len(data)
        if n:
            buffer[:n] = data
            self._digest.update(data)
            self._size += n
        elif len(buffer) and self._on_end is not None:
            self._on_end(Digest(self._digest.hexdigest(), self._size, self._origin))
            self._on_end = None
        return n

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class ObjectCheck:
    """What one raw object should be (sha256 and size) and what reading it found.

    A stream from a store is hashed as the reader consumes it (:meth:`wrap`); a local file,
    which a connector may hand to native code by path, is hashed by a background worker
    while it is read (:meth:`watch`). :meth:`finish` settles the verdict: it waits for the
    worker, hashes the object now if no read covered all of it, and raises
    :class:`CorruptObject` naming the object when any complete read differs.
    """

    def __init__(self, key: str, sha256: str, size: int, what: str,
                 reopen: Callable[[], BinaryIO], pool: IntegrityChecks) -> None:
        self.key = key
        self.sha256 = sha256
        self.size = size
        self.what = what
        self._reopen = reopen
        self._pool = pool
        self._digests: list[Digest] = []
        self._pending: list[tuple[futures.Future, Path, bool]] = []
        self._lock = threading.Lock()
        self._settled = False
        self.error: CorruptObject | None = None

    def _found(self, digest: Digest) -> None:
        with self._lock:
            self._digests.append(digest)

    def wrap(self, stream: BinaryIO) -> BinaryIO:
        """The stream, hashed as it is read."""
        return io.BufferedReader(_HashingReader(stream, "the bytes read", self._found),
                                 CHUNK)

    def watch(self, path: Path, *, cached: bool = False) -> None:
        """Hash a local file in the background; ``cached`` marks a disposable local copy."""
        origin = f"the bytes of its local copy {path}" if cached else "the bytes read"
        self._pending.append((self._pool.submit(path, origin), Path(path), cached))

    def problem(self) -> tuple[str, Digest] | None:
        """Why the object does not match and the read that showed it, or None.

        Waits for the background hashing, or hashes the object now if no read covered it all.
        """
        for future, _path, _cached in self._pending:
            digest = future.result()
            if digest is not None:
                self._found(digest)
        if not self._digests:
            with self._reopen() as fh:
                self._found(hash_stream(fh, "the bytes read"))
        for digest in self._digests:
            if digest.size != self.size:
                return f"{digest.origin} are {digest.size} bytes long, not {self.size} as landed", digest
            if digest.sha256 != self.sha256:
                return (f"{digest.origin} hash to sha256 {digest.sha256[:16]}…, "
                        f"not {self.sha256[:16]}… as landed"), digest
        return None

    def settle_watched(self) -> None:
        """Settle the verdict when a background hash covers the object (see :meth:`watch`),
        without hashing anything now; a damaged object is then :attr:`error`."""
        if self._settled or not self._pending:
            return
        if any(future.result() is None for future, _path, _cached in self._pending):
            return  # stopped before the end: no verdict without hashing again
        try:
            self.finish()
        except CorruptObject:
            pass

    def finish(self) -> None:
        """Raise CorruptObject if the bytes read differ from the landed ones (again on every call)."""
        if self._settled:
            if self.error is not None:
                raise self.error
            return
        found = self.problem()
        self._settled = True
        if found is None:
            return
        reason, digest = found
        for _future, path, cached in self._pending:
            if cached and digest.path == path:
                # a damaged local copy is not the store's object: drop it so the next read fetches it
                path.unlink(missing_ok=True)
                reason += " (that copy was removed; the next read fetches the object again)"
        self._pending = []
        self.error = CorruptObject(self.key, self.what, reason)
        raise self.error


class IntegrityChecks:
    """The checks of one read (a build or a stream read) and the one worker hashing local files.

    One worker is enough: hashing runs faster than parsing, and it keeps a read of many
    files from hashing all of them at once.
    """

    def __init__(self) -> None:
        self._checks: list[ObjectCheck] = []
        self._executor: futures.ThreadPoolExecutor | None = None
        self._stop = threading.Event()

    def __enter__(self) -> IntegrityChecks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check(self, key: str, sha256: str, size: int, what: str,
              reopen: Callable[[], BinaryIO]) -> ObjectCheck:
        found = ObjectCheck(key, sha256, size, what, reopen, self)
        self._checks.append(found)
        return found

    def submit(self, path: Path, origin: str) -> futures.Future:
        if self._executor is None:
            self._executor = futures.ThreadPoolExecutor(1, thread_name_prefix="lithotse-hash")

        def run() -> Digest | None:
            try:
                with open(path, "rb") as fh:
                    return hash_stream(fh, origin, self._stop, Path(path))
            except _Stopped:
                return None

        return self._executor.submit(run)

    def finish(self) -> None:
        """Settle every check; raises CorruptObject for the first damaged object."""
        for item in self._checks:
            item.finish()

    def raise_found(self) -> None:
        """Raise the CorruptObject a read found, if any, when something else failed (damage is
        the better explanation): hashes already running in the background are waited for (a file
        DuckDB reads itself may fail it before its hash is done), nothing else is hashed."""
        for item in self._checks:
            item.settle_watched()
            if item.error is not None:
                raise item.error

    def close(self) -> None:
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


# --- lithotse raw verify -----------------------------------------------------------------

PROBLEMS = ("corrupted", "missing", "unreferenced", "bad-manifest")


@dataclass
class VerifyReport:
    """Counts over every raw object and manifest read, and one entry per problem found."""

    stores: list[str] = field(default_factory=list)
    objects: int = 0
    ok: int = 0
    bytes: int = 0
    manifests: int = 0
    problems: list[dict] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def count(self, problem: str) -> int:
        return sum(1 for p in self.problems if p["problem"] == problem)

    def to_json(self) -> dict:
        summary = {"stores": list(self.stores), "objects": self.objects, "ok": self.ok,
                   "bytes": self.bytes, "manifests": self.manifests,
                   **{name.replace("-", "_"): self.count(name) for name in PROBLEMS}}
        return {"summary": summary, "problems": list(self.problems)}


def _landings(manifests: list[Manifest]) -> list[dict]:
    return [{"id": m.id, "source": m.source, "stream": m.stream, "original_name": m.original_name}
            for m in manifests]


def _verify_store(name: str, store: Store, source: str | None, report: VerifyReport,
                  progress: Progress) -> None:
    part = f"{safe_part(source)}/" if source else ""
    by_object: dict[str, list[Manifest]] = {}
    for info in store.list(f"manifests/{part}"):
        if not info.key.endswith(".json"):
            continue
        progress.check()
        try:
            manifest = Manifest.loads(store.get_bytes(info.key))
        except (ValueError, TypeError) as exc:
            report.problems.append({"store": name, "key": info.key, "problem": "bad-manifest",
                                    "detail": f"not a readable manifest: {exc}", "landings": []})
            continue
        if source and manifest.source != source:
            continue
        report.manifests += 1
        by_object.setdefault(manifest.object_key, []).append(manifest)
    objects = [info for info in store.list(f"raw/{part}")]
    total = len(objects)
    listed = set()
    for n, info in enumerate(objects):
        progress.update(f"verifying raw objects in store {name}", done=n, total=total)
        listed.add(info.key)
        report.objects += 1
        report.bytes += info.size
        named = info.key.rsplit("/", 1)[-1]
        manifests = by_object.get(info.key, [])
        with store.open_read(info.key) as fh:
            digest = hash_stream(fh, info.key)
        reasons = []
        if digest.sha256 != named:
            reasons.append(f"its bytes hash to sha256 {digest.sha256}, not the {named} it is named by")
        for m in manifests:
            if m.sha256 != digest.sha256 and m.sha256 != named:
                reasons.append(f"landing {m.id} recorded sha256 {m.sha256}, the bytes hash to {digest.sha256}")
            if m.bytes != digest.size:
                reasons.append(f"landing {m.id} recorded {m.bytes} bytes, the object has {digest.size}")
        if reasons:
            report.problems.append({"store": name, "key": info.key, "problem": "corrupted",
                                    "detail": "; ".join(dict.fromkeys(reasons)),
                                    "landings": _landings(manifests)})
        if not manifests:
            report.problems.append({"store": name, "key": info.key, "problem": "unreferenced",
                                    "detail": "no manifest in this store names it",
                                    "landings": []})
        if not reasons and manifests:
            report.ok += 1
    for key, manifests in sorted(by_object.items()):
        if key not in listed:
            report.problems.append({"store": name, "key": key, "problem": "missing",
                                    "detail": f"{len(manifests)} manifest(s) name it, the store has no such object",
                                    "landings": _landings(manifests)})
    progress.update(f"verified {total} raw objects in store {name}", done=total, total=total)


def verify_raw(ws: Workspace, source: str | None = None, *,
               progress: Progress | None = None) -> VerifyReport:
    """Re-hash every raw object (of ``source``, or all) in every raw store the workspace reads."""
    progress = progress or Progress()
    report = VerifyReport()
    for name, store in ws.raw_stores():
        report.stores.append(name)
        try:
            _verify_store(name, store, source, report, progress)
        except LithotseError:
            raise
        except OSError as exc:
            raise LithotseError(f"raw store {name}: cannot be read: {exc}") from None
    if source and not (report.objects or report.manifests or report.problems):
        known = [s.name for s in ws.sources()]
        if source not in known:
            raise NotFound(f"no source {source!r} here and no raw objects of it; "
                           f"sources: {', '.join(known) or 'none'}")
    return report
