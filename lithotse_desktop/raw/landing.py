"""Landing: fetch payloads from a connector, stage and check them, then commit data and manifests.

Order of an import, each step atomic:
1. each payload is checked by its connector, which both validates it and counts its records
   inside and outside the requested date range (``Connector.survey`` when it can do that
   without producing the rows, else ``read``), while a thread copies it into a private staging
   folder, computes the copy's sha256 by reading it back and flushes it to disk. The
   connector reads the source file itself, so the copy costs no time of its own; the source's
   identity (device, inode, size, modification and change times) must be the same before and
   after both reads, else the import is refused, so the bytes staged are the bytes checked. A
   source changed too recently for its timestamps to show a further change (see
   :data:`RACY_SECONDS`) is copied first and its staged copy checked instead. One bad payload
   fails the whole import and nothing is committed;
2. objects are committed (content-addressed, create-only), then a manifest per landing.
A crash before 2 leaves only staging files, removed on the next import; a crash inside 2
leaves complete objects and complete manifests for a prefix of the payloads, and since the
incremental state is read from committed manifests, the next run resumes without gaps or
duplicates.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import io
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from .. import engine
from ..connectors import Connector, FetchRequest, Payload, RawObject, StreamInfo
from ..dates import DateRange, range_mask, to_local_dates
from ..deferred import pyarrow_compute as pc
from ..errors import ConfigError, InputError, LithotseError, connector_guard, guarded
from ..progress import Progress
from ..storage import PreconditionFailed
from ..workspace import Workspace
from .index import RawIndex, open_index
from .manifest import Manifest, new_landing_id, object_key
from .sources import make_connector


@dataclass
class LandingResult:
    manifest: Manifest

    def summary(self) -> str:
        m = self.manifest
        stored = "already stored, not written again" if m.already_stored else "stored"
        return (f"{m.source}/{m.stream} {m.original_name}: {m.records} records "
                f"({m.records_in_range} in range, {m.records_out_of_range} outside)"
                f"{left_out_text(m.meta)}, {m.bytes} bytes, sha256 {m.sha256[:12]}, {stored} [{m.id}]")


def left_out_text(meta: Any) -> str:
    """``, 3 rows left out (1 total, 2 blank)`` from a payload's ``meta["left_out"]``, else ``""``."""
    counts = meta.get("left_out") if isinstance(meta, dict) else None
    if not isinstance(counts, dict):
        return ""
    parts = [(str(reason), n) for reason, n in counts.items()
             if isinstance(n, int) and not isinstance(n, bool) and n > 0]
    if not parts:
        return ""
    total = sum(n for _, n in parts)
    return (f", {total} row{'s' if total != 1 else ''} left out "
            f"({', '.join(f'{n} {reason}' for reason, n in parts)})")


@dataclass
class SkippedStream:
    """A stream the connector passed over in an import, and why (see FetchRequest.skip)."""

    stream: str
    reason: str

    def to_json(self) -> dict:
        return {"stream": self.stream, "reason": self.reason}


@dataclass
class ImportResult:
    source: str
    import_id: str
    date_range: DateRange
    landings: list[LandingResult] = field(default_factory=list)
    skipped: list[SkippedStream] = field(default_factory=list)

    @property
    def streams(self) -> set[str]:
        return {item.manifest.stream for item in self.landings}

    def skipped_lines(self) -> list[str]:
        return [f"{self.source}/{item.stream}: skipped: {item.reason}" for item in self.skipped]

    def to_json(self) -> dict:
        return {"source": self.source, "import_id": self.import_id,
                "range": self.date_range.to_json(),
                "landings": [item.manifest.to_json() for item in self.landings],
                "skipped": [item.to_json() for item in self.skipped]}


@dataclass
class _Staged:
    payload: Payload
    path: Path
    sha256: str
    size: int
    stats: dict[str, Any]


COPY_BLOCK = 64 << 20
"""Bytes copied per step (the kernel copies them, so the file's bytes never pass through Python)."""
HASH_BLOCK = 4 << 20
"""Bytes hashed per update: large enough that hashlib works without the GIL most of the time."""
T = TypeVar("T")
RACY_SECONDS = 2.0
"""A source whose modification or change time is this recent is staged before it is checked:
a second change within the same timestamp tick would leave its times as they were (FAT and
some network shares count in 2 s steps), so its identity would not prove it unchanged."""


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a file's bytes change: a rewrite moves the times (the change time even
    when the writer resets the modification time), a replacement the inode, an append the size."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _racy(st: os.stat_result) -> bool:
    """True when the file changed too recently (or in the future) to trust its timestamps."""
    return max(st.st_mtime_ns, st.st_ctime_ns) > time.time_ns() - int(RACY_SECONDS * 1e9)


def _read_error(name: str, exc: OSError) -> InputError:
    return InputError(name, f"cannot read: {exc.strerror or exc}")


def _stage_copy(fin: io.FileIO, name: str, dest: Path, check: Callable[[], None]) -> int:
    """Copy an open payload into staging; its size. ``check`` runs between steps and raises to
    stop. The caller makes the copy durable (fsync) while the connector reads."""
    size = 0
    try:
        with open(dest, "wb") as fout:
            try:
                while step := os.copy_file_range(fin.fileno(), fout.fileno(), COPY_BLOCK):
                    size += step
                    check()
            except OSError:  # file systems (or kernels) that cannot copy between these two files
                fin.seek(size)
                fout.seek(size)
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
                    size += len(chunk)
                    check()
    except OSError as exc:
        raise _read_error(name, exc) from None
    return size


def _sha256(path: Path, stop: threading.Event, flush: bool = True) -> str | None:
    """The sha256 of a staged file, which is then flushed to disk unless ``flush`` is false
    (None when stopped early). Runs in a thread beside the connector's read of the same file,
    which it finds in the page cache; the object is committed only after both, so it is durable
    before it lands."""
    digest = hashlib.sha256()
    with open(path, "r+b") as fh:  # writable: some systems flush only files open for writing
        while block := fh.read(HASH_BLOCK):
            if stop.is_set():
                return None
            digest.update(block)
        if flush:
            os.fsync(fh.fileno())
    return digest.hexdigest()


def _flush(path: Path) -> None:
    """Flush a complete staged file to disk (its data and size)."""
    with open(path, "r+b") as fh:  # writable: some systems flush only files open for writing
        os.fsync(fh.fileno())


class _Stopped(Exception):
    """The check beside a copy failed: the copy stops where it is."""


def _copy_hashing(fin: io.FileIO, name: str, dest: Path, stop: threading.Event) -> tuple[int, str] | None:
    """(size, sha256) of a payload copied from its open file into staging, hashed by reading the
    copy back, so the hash is the staged bytes'; None when stopped early. The kernel copies (a
    copy through Python's buffers took several times the CPU), the hash reads the fresh copy
    from the page cache, and a second thread flushes the copy to disk meanwhile, so the wait
    for the disk does not come after the hash."""

    def check() -> None:
        if stop.is_set():
            raise _Stopped

    try:
        size = _stage_copy(fin, name, dest, check)
    except _Stopped:
        return None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lithotse-flush") as pool:
        flushed = pool.submit(_flush, dest)
        sha = _sha256(dest, stop, flush=False)
        flushed.result()
    return None if sha is None else (size, sha)


def _check_staged(connector: Connector, obj: RawObject, info: StreamInfo, rng: DateRange, timezone: str,
                  progress: Progress) -> tuple[str, dict[str, Any]]:
    """(sha256, landing stats) of a staged object: hashed in a thread while the connector reads it."""
    path = Path(obj.path or "")
    sha, stats = _checked_beside(connector, obj, info, rng, timezone, progress, "lithotse-hash",
                                 lambda stop: _sha256(path, stop))
    assert sha is not None
    return sha, stats


def _checked_beside(connector: Connector, obj: RawObject, info: StreamInfo, rng: DateRange, timezone: str,
                    progress: Progress, thread_name: str,
                    work: Callable[[threading.Event], T]) -> tuple[T, dict[str, Any]]:
    """(what ``work`` returned, landing stats of ``obj``): the connector checks the object while
    ``work`` runs in a thread over the same bytes; a failed check sets the event ``work`` polls,
    so it stops early instead of finishing for nothing."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name) as pool:
        beside = pool.submit(work, stop)
        try:
            stats = landing_stats(connector, obj, info, rng, timezone, progress)
        except BaseException:
            stop.set()
            raise
        return beside.result(), stats


def _stage(connector: Connector, payload: Payload, dest: Path, info: StreamInfo, rng: DateRange,
           timezone: str, progress: Progress) -> tuple[int, str, dict[str, Any]]:
    """(size, sha256, landing stats) of a payload staged at ``dest``, checked as described in the
    module docstring: the source read while it is copied, or the staged copy read once made."""
    src = Path(payload.path)
    try:
        fin = open(src, "rb", buffering=0)
    except OSError as exc:
        raise _read_error(str(src), exc) from None
    with fin:
        try:
            before = os.fstat(fin.fileno())
            steady = not _racy(before) and _identity(os.stat(src)) == _identity(before)
        except OSError as exc:
            raise _read_error(str(src), exc) from None
        if not steady:
            size = _stage_copy(fin, str(src), dest, progress.check)
            staged = RawObject(dest, payload.stream, payload.name, payload.media_type, payload.meta)
            progress.update(f"checking {payload.name}")
            sha, stats = _check_staged(connector, staged, info, rng, timezone, progress)
            return size, sha, stats
        obj = RawObject(src, payload.stream, payload.name, payload.media_type, payload.meta)
        progress.update(f"checking {payload.name}")
        done, stats = _checked_beside(connector, obj, info, rng, timezone, progress, "lithotse-copy",
                                      lambda stop: _copy_hashing(fin, str(src), dest, stop))
        assert done is not None
        size, sha = done
        try:
            unchanged = (_identity(os.fstat(fin.fileno())) == _identity(before) == _identity(os.stat(src))
                         and size == before.st_size)
        except OSError:  # removed or renamed meanwhile
            unchanged = False
    if not unchanged:
        raise InputError(payload.name, "changed while it was being imported (its size, times or inode "
                                       "differ from when the import began); nothing was imported. "
                                       "Import again once whatever writes it has finished.")
    return size, sha, stats


def landing_stats(connector: Connector, obj: RawObject, info: StreamInfo, rng: DateRange,
                  timezone: str, progress: Progress) -> dict[str, Any]:
    """Read a staged object through its connector: validates it and counts records by range."""
    records = inside = 0
    lo: dt.date | None = None
    hi: dt.date | None = None
    try:
        surveyed = connector.survey(obj, info, rng, timezone, progress)
        if surveyed is not None:
            progress.update(records=surveyed["records"])
            return {**surveyed, "records_out_of_range": surveyed["records"] - surveyed["records_in_range"]}
        for batch in connector.read(obj):
            progress.check()
            records += batch.num_rows
            if info.date_field is None:
                inside += batch.num_rows
                continue
            idx = batch.schema.get_field_index(info.date_field)
            if idx < 0:
                raise InputError(obj.name, f"date field {info.date_field!r} is missing from the data")
            dates = to_local_dates(batch.column(idx), timezone)
            inside += pc.sum(range_mask(dates, rng).cast(pa.int64())).as_py() or 0
            bmin, bmax = pc.min(dates).as_py(), pc.max(dates).as_py()
            if bmin is not None:
                lo = bmin if lo is None else min(lo, bmin)
                hi = bmax if hi is None else max(hi, bmax)
            progress.update(records=batch.num_rows)
    except LithotseError:
        raise
    except (UnicodeDecodeError, ValueError, pa.ArrowException, TypeError) as exc:
        raise InputError(obj.name, f"cannot be read as {info.name}: {exc}") from exc
    except Exception as exc:  # a connector bug must still end in a clear, located error
        raise InputError(obj.name, f"connector {connector.name} failed to read it "
                                   f"({type(exc).__name__}: {exc})") from exc
    return {"records": records, "records_in_range": inside, "records_out_of_range": records - inside,
            "date_min": lo.isoformat() if lo else None, "date_max": hi.isoformat() if hi else None}


def _clean_stale_staging(root: Path) -> None:
    if not root.exists():
        return
    for entry in root.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        alive = False
        if pid_text.isdigit():
            try:
                os.kill(int(pid_text), 0)
                alive = int(pid_text) != os.getpid()
            except (ProcessLookupError, PermissionError):
                alive = False
        if not alive:
            shutil.rmtree(entry, ignore_errors=True)


def run_import(ws: Workspace, source_name: str, date_range: DateRange | None = None, *,
               streams: list[str] | None = None, full: bool = False,
               progress: Progress | None = None) -> ImportResult:
    """Import one source for a date range; returns the committed landings."""
    progress = progress or Progress()
    date_range = date_range or DateRange()
    engine.activate(ws.limits)
    connector = make_connector(ws, source_name)
    with connector_guard(connector.name, f"to list the streams of source {source_name}"):
        offered = {s.name: s for s in connector.streams()}
    chosen = streams or list(offered)
    for name in chosen:
        if name not in offered:
            raise ConfigError(f"source {source_name}: no stream {name!r}; streams: "
                              f"{', '.join(offered) or 'none'}")
    index = open_index(ws)
    # cursors come from the landings of every raw store read, not only the one written to
    state = {} if full else {k: v for k, v in index.cursors(source_name).items() if k in chosen}
    import_id = uuid.uuid4().hex[:12]
    staging_root = ws.local_dir / "staging"
    _clean_stale_staging(staging_root)
    staging = staging_root / f"{os.getpid()}-{import_id}"
    staging.mkdir(parents=True)
    result = ImportResult(source_name, import_id, date_range)
    try:
        progress.update(f"fetching from {source_name}")
        request = FetchRequest(source_name, chosen, date_range, state, full, progress)
        staged: list[_Staged] = []
        for payload in guarded(connector.fetch(request), connector.name,
                               f"while fetching from source {source_name}"):
            try:
                if payload.stream not in offered:
                    raise ConfigError(f"connector {connector.name} produced unknown stream {payload.stream!r}")
                target = staging / f"{len(staged):06d}"
                size, sha, stats = _stage(connector, payload, target, offered[payload.stream], date_range,
                                          ws.timezone, progress)
            finally:
                if payload.cleanup:
                    payload.cleanup()
            staged.append(_Staged(payload, target, sha, size, stats))
        result.skipped = [SkippedStream(stream, reason) for stream, reason in request.skipped]
        passed_over = {item.stream for item in result.skipped}
        if result.skipped and passed_over >= set(chosen):
            raise InputError(f"source {source_name}", "nothing to import: "
                             + "; ".join(item.reason for item in result.skipped))
        progress.update(f"committing {len(staged)} object(s)", done=0, total=len(staged))
        with progress.shielded():
            result.landings = _commit(ws, index, source_name, connector, offered, staged, import_id,
                                      date_range, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        index.close()
        engine.release_freed_memory()
    return result


def _commit(ws: Workspace, index: RawIndex, source: str, connector: Connector,
            offered: dict[str, StreamInfo],
            staged: list[_Staged], import_id: str, rng: DateRange,
            progress: Progress) -> list[LandingResult]:
    store_name = ws.raw_store_names()[0]
    store = ws.named_store(store_name)
    user, host = getpass.getuser(), socket.gethostname()
    out = []
    for seq, item in enumerate(staged):
        key = object_key(source, item.sha256)
        written = store.put_file(key, item.path, if_none_match=True, move=True)
        now = dt.datetime.now(dt.UTC)
        manifest = Manifest(
            id=new_landing_id(now), source=source, stream=item.payload.stream,
            connector=connector.name, connector_version=connector.version, object_key=key,
            sha256=item.sha256, bytes=item.size, original_name=item.payload.name,
            media_type=item.payload.media_type, date_range=rng,
            date_field=offered[item.payload.stream].date_field,
            prefiltered=item.payload.prefiltered, already_stored=not written, user=user, host=host,
            landed_at=now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            import_id=import_id, seq=seq, cursor=item.payload.cursor, meta=item.payload.meta,
            **item.stats)
        try:
            store.put_bytes(manifest.key, manifest.dumps(), if_none_match=True)
        except PreconditionFailed:
            raise LithotseError(f"manifest {manifest.key} already exists (id collision)") from None
        index.add(manifest, store_name)
        out.append(LandingResult(manifest))
        progress.update(advance=1)
    return out

