"""Push and pull a workspace's stores against a shared remote store (normally S3).

Keys are copied unchanged, so a remote filled by ``push`` can also be used directly as a tier
store by another workspace. Every key falls in one of two kinds:

* **immutable** — everything by default: content-addressed objects (``raw/…``, Parquet parts),
  manifests, version records. Copied only when missing on the other side, with a create-only
  write (``If-None-Match: *`` on S3); never overwritten. A key present on both sides with a
  different size is reported as a mismatch and left alone.
* **mutable** — pointers that move: keys ending in ``/CURRENT`` and derivative specs
  (``specs/…``). Published with compare-and-swap (``If-Match`` on the etag last seen), re-read
  and retried when another writer got there first. A machine-local record of what each
  pointer held at the last sync (``.lithotse/sync/``) tells "changed here" from "changed
  there"; when both changed, the one with the later ``published_at`` wins if both bodies have
  one, otherwise the key is reported as a conflict and nothing is overwritten.

Order keeps readers safe when a sync stops half-way: data objects first, then manifests and
version records, then pointers. A re-run finishes the job (large uploads resume their parts).
Nothing is ever deleted by a sync. A no-op sync compares the two listings (and the small local
pointer files) and reads no object body from the remote.

A push to a store managers read (this workspace's derived or cache tier store, when that is not
also where raw data live) carries the derived tier only: raw objects, manifests, row-level
derivatives (``restricted/``) and audit records are withheld and listed as such.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from .. import audit
from ..atomic import atomic_write_text
from ..errors import Cancelled, ConfigError, LithotseError, NotFound
from ..plugins import open_store
from ..progress import Progress
from ..storage import ObjectInfo, PreconditionFailed, Store, check_key
from ..workspace import ALL_TIERS, Workspace

if TYPE_CHECKING:
    from ..storage.s3 import S3Store

_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
# top-level folder -> tier whose store receives it on pull; anything else goes to the raw tier
TIER_OF_FOLDER = {"raw": "raw", "manifests": "raw", "derived": "derived", "specs": "derived",
                  "cache": "cache", "restricted": "restricted", "audit": "audit"}
PUBLISHED_TIERS = ("derived", "cache")
ROW_TIERS = ("raw", "restricted")
"""Tiers holding raw objects and row-level results."""
# published after the data they describe
_RECORD_FOLDERS = ("manifests/",)
_RECORD_PARTS = ("/versions/",)
AUDIT_FOLDER = "audit/"
POINTER_RETRIES = 8


def tier_of(key: str) -> str:
    """The tier a key belongs to, by its top-level folder (anything unknown counts as raw)."""
    return TIER_OF_FOLDER.get(key.split("/", 1)[0], "raw")


def is_mutable(key: str) -> bool:
    """Pointer-like keys that are rewritten in place (and so need compare-and-swap)."""
    return key == "CURRENT" or key.endswith("/CURRENT") or key.startswith("specs/")


def _phase(key: str) -> int:
    if is_mutable(key):
        return 2
    if key.startswith(_RECORD_FOLDERS) or any(part in key for part in _RECORD_PARTS):
        return 1
    return 0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- results --------------------------------------------------------------------
@dataclass
class SyncResult:
    direction: str
    remote: str
    copied: int = 0
    bytes: int = 0
    already_there: int = 0
    pointers_updated: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.mismatched

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verb = "pushed to" if self.direction == "push" else "pulled from"
        text = (f"{verb} {self.remote}: {self.copied} object(s), {self.bytes / 1e6:.1f} MB, "
                f"{len(self.pointers_updated)} pointer(s) moved in {self.seconds:.1f} s")
        if self.already_there:
            text += f"; {self.already_there} already there"
        for key in self.conflicts:
            text += f"\nconflict: {key} changed here and on the remote; nothing was overwritten"
        for key in self.mismatched:
            text += f"\nmismatch: {key} differs in size here and on the remote; left alone"
        for key in self.ignored:
            text += f"\nignored remote object with an unusable name: {key}"
        if self.withheld:
            text += (f"\nwithheld {len(self.withheld)} object(s) of the raw, restricted and audit tiers: "
                     f"{self.remote} is a store managers read (this workspace's derived tier); rule: "
                     "row-level data stays restricted")
        return text


@dataclass
class SyncStatus:
    remote: str
    to_push: list[str] = field(default_factory=list)
    to_pull: list[str] = field(default_factory=list)
    bytes_to_push: int = 0
    bytes_to_pull: int = 0
    pointers_to_push: list[str] = field(default_factory=list)
    pointers_to_pull: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not (self.to_push or self.to_pull or self.pointers_to_push or self.pointers_to_pull
                    or self.conflicts or self.mismatched)

    def to_json(self) -> dict:
        return {**asdict(self), "in_sync": self.in_sync}

    def summary(self) -> str:
        if self.in_sync:
            return f"in sync with {self.remote}"
        lines = [f"{self.remote}:",
                 f"  to push: {len(self.to_push)} object(s), {self.bytes_to_push / 1e6:.1f} MB; "
                 f"{len(self.pointers_to_push)} pointer(s)",
                 f"  to pull: {len(self.to_pull)} object(s), {self.bytes_to_pull / 1e6:.1f} MB; "
                 f"{len(self.pointers_to_pull)} pointer(s)"]
        lines += [f"  conflict: {key}" for key in self.conflicts]
        lines += [f"  mismatch: {key}" for key in self.mismatched]
        return "\n".join(lines)


# --- the two sides ------------------------------------------------------------------
def open_remote(ws: Workspace, remote: str | None = None) -> Store:
    """The remote store: a store name from ``[stores]``, or a URL (default ``[sync] remote``).

    A URL that some ``[stores]`` entry also uses gets that entry's options; otherwise the
    options in ``[sync]`` (endpoint_url, region, profile, credentials, …) apply.
    """
    options = dict(ws.config.get("sync") or {})
    configured = options.pop("remote", None)
    remote = remote or configured
    if not remote:
        raise ConfigError("no sync remote: pass --remote s3://bucket/prefix, or set remote in the "
                          "[sync] table of lithotse.toml")
    stores = ws.config.get("stores", {})
    if remote in stores:
        return ws.named_store(remote)
    for name, spec in stores.items():
        if spec.get("url") == remote:
            return ws.named_store(name)
    if _bare_name(remote):
        raise NotFound(f"no store named {remote!r} in [stores]; known: {', '.join(sorted(stores)) or 'none'} "
                       f"(a folder is a path such as ./{remote} or a file:// URL; a bucket s3://bucket/prefix)")
    options.pop("workers", None)
    return open_store(remote, base=ws.root, options=options)


def _bare_name(remote: str) -> bool:
    """A word with no scheme and no path in it: meant as a store name, not as a folder."""
    return "://" not in remote and not any(c in remote for c in "/\\~.:")


class _Sides:
    """The workspace's stores that are not the remote, and where each remote key belongs."""

    def __init__(self, ws: Workspace, remote: Store) -> None:
        self.ws = ws
        self.remote = remote
        self.by_tier: dict[str, Store | None] = {}
        self.stores: list[Store] = []
        served: set[str] = set()
        for tier in ALL_TIERS:
            store = ws.store(tier)
            if store is remote or store.identity == remote.identity:
                self.by_tier[tier] = None
                served.add(tier)
                continue
            self.by_tier[tier] = store
            if all(store is not s for s in self.stores):
                self.stores.append(store)
        if not self.stores:
            raise ConfigError(f"every tier is stored at {remote.url} already; there is nothing to sync")
        self.published_only = bool(served & set(PUBLISHED_TIERS)) and not served & set(ROW_TIERS)
        """The remote is a store managers read (it serves the derived or cache tier, and neither
        raw data nor row-level results live there): only the derived and cache tiers go there.
        The audit tier beside the derived one (managers append to it) keeps it one."""

    def may_send(self, key: str) -> bool:
        return not self.published_only or tier_of(key) in PUBLISHED_TIERS

    def home(self, key: str) -> Store | None:
        """The local store a remote key is pulled into (None when that tier is the remote)."""
        return self.by_tier[tier_of(key)]

    def local_listing(self) -> dict[str, tuple[Store, ObjectInfo]]:
        out: dict[str, tuple[Store, ObjectInfo]] = {}
        for store in self.stores:
            for info in store.list(""):
                if info.key not in out or self.home(info.key) is store:
                    out[info.key] = (store, info)
        return out


def _remote_listing(remote: Store, ignored: list[str]) -> dict[str, ObjectInfo]:
    out = {}
    for info in remote.list(""):
        try:
            check_key(info.key)
        except ConfigError:
            ignored.append(info.key)
            continue
        out[info.key] = info
    return out


# --- pointer state ----------------------------------------------------------------------
class _PointerState:
    """What each pointer held at the last sync with one remote: remote etag and content hash."""

    def __init__(self, ws: Workspace, remote: Store) -> None:
        digest = hashlib.sha256(remote.url.encode()).hexdigest()[:16]
        self.path = ws.local_dir / "sync" / f"{digest}.json"
        self.url = remote.url
        self._lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text("utf-8"))
            self.entries: dict[str, dict[str, str]] = dict(data.get("pointers", {}))
        except (FileNotFoundError, ValueError):
            self.entries = {}

    def get(self, key: str) -> dict[str, str] | None:
        return self.entries.get(key)

    def set(self, key: str, etag: str, sha256: str) -> None:
        with self._lock:
            self.entries[key] = {"etag": etag, "sha256": sha256}

    def save(self) -> None:
        with self._lock:
            atomic_write_text(self.path, json.dumps({"remote": self.url, "pointers": self.entries},
                                                    indent=1, sort_keys=True))


def _published_at(data: bytes | None) -> dt.datetime | None:
    try:
        value = json.loads(data or b"").get("published_at")
        when = dt.datetime.fromisoformat(value)
    except (ValueError, AttributeError, TypeError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _later(a: bytes, b: bytes) -> bool | None:
    """True when ``a`` was published after ``b``; None when their bodies cannot tell."""
    ta, tb = _published_at(a), _published_at(b)
    if ta is None or tb is None or ta == tb:
        return None
    return ta > tb


def _read_local(store: Store, key: str) -> tuple[bytes | None, str | None]:
    info = store.stat(key)
    if info is None:
        return None, None
    try:
        return store.get_bytes(key), info.etag
    except FileNotFoundError:
        return None, None


# --- transfers ---------------------------------------------------------------------------
class _Transfers:
    """Runs copies on a thread pool; progress is reported and cancellation checked on the caller's thread."""

    def __init__(self, progress: Progress, label: str, workers: int,
                 items: list[tuple[str, int]]) -> None:
        self.progress = progress
        self.label = label
        self.workers = workers
        self.total = len(items)
        self.total_bytes = sum(size for _, size in items)
        self.done = 0
        self.moved = 0
        self.audit_copied = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def on_bytes(self, n: int) -> None:
        if self._stop.is_set():
            raise Cancelled()
        with self._lock:
            self.moved += n

    def run(self, items: list[tuple[str, int]], copy: Callable[[str], bool],
            result: SyncResult) -> None:
        """Copy one phase completely before the caller starts the next."""
        if not items:
            return
        with cf.ThreadPoolExecutor(self.workers) as pool:
            jobs = {pool.submit(copy, key): (key, size) for key, size in items}
            pending = set(jobs)
            try:
                while pending:
                    finished, pending = cf.wait(pending, timeout=0.25,
                                                return_when=cf.FIRST_COMPLETED)
                    for job in finished:
                        key, size = jobs[job]
                        if job.result():
                            result.copied += 1
                            result.bytes += size
                            self.audit_copied += key.startswith(AUDIT_FOLDER)
                        else:
                            result.already_there += 1
                        self.done += 1
                    self.progress.update(
                        f"{self.label} {self.done}/{self.total} object(s), "
                        f"{self.moved / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB",
                        done=self.done, total=self.total)
            except BaseException:
                self._stop.set()
                for job in pending:
                    job.cancel()
                raise


def _workers(ws: Workspace, remote: Store) -> int:
    configured = (ws.config.get("sync") or {}).get("workers")
    return max(1, int(configured if configured else getattr(remote, "max_workers", 8)))


def _is_s3(store: Store) -> TypeGuard[S3Store]:
    from ..storage.s3 import S3Store

    return isinstance(store, S3Store)


def _put(store: Store, key: str, path: Path, on_bytes: Callable[[int], None], *,
         move: bool) -> bool:
    if _is_s3(store):  # byte progress and resumable parts
        return store.put_file(key, path, if_none_match=True, move=move,
                              on_bytes=on_bytes)
    size = path.stat().st_size
    written = store.put_file(key, path, if_none_match=True, move=move)
    on_bytes(size)
    return written


def _fetch(store: Store, key: str, dest: Path, on_bytes: Callable[[int], None],
           info: ObjectInfo | None = None) -> Path:
    """A scratch copy; not fsynced, since the store it is moved into syncs it."""
    if _is_s3(store):
        return store.fetch_to(key, dest, on_bytes=on_bytes, info=info,
                              durable=False)
    store.fetch_to(key, dest)
    on_bytes(dest.stat().st_size)
    return dest


def _scratch(ws: Workspace) -> Path:
    """A private temp folder for this run; folders of dead runs are removed first."""
    root = ws.local_dir / "sync-tmp"
    if root.exists():
        for entry in root.iterdir():
            pid = entry.name.split("-", 1)[0]
            alive = False
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), 0)
                    alive = True
                except (ProcessLookupError, PermissionError):
                    alive = False
            if not alive:
                shutil.rmtree(entry, ignore_errors=True)
    path = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def _by_phase(keys: Iterable[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    phases: list[list[tuple[str, int]]] = [[], []]
    for key, size in sorted(keys):
        phases[_phase(key)].append((key, size))
    return phases


# --- one sync, either way -----------------------------------------------------------------
@dataclass
class _Listings:
    """Both sides of a sync, listed once: what push, pull and status compare."""

    remote: Store
    sides: _Sides
    remote_keys: dict[str, ObjectInfo]
    local_keys: dict[str, tuple[Store, ObjectInfo]]

    @classmethod
    def take(cls, remote: Store, sides: _Sides, ignored: list[str]) -> _Listings:
        return cls(remote, sides, _remote_listing(remote, ignored), sides.local_listing())


class _Direction:
    """What push and pull do differently; :func:`_sync` runs the steps they share."""

    name = ""
    copying = ""
    moving_pointers = ""

    def plan(self, both: _Listings, result: SyncResult) -> list[tuple[str, int]]:
        """The immutable keys to copy, with their sizes; size mismatches go to ``result``."""
        raise NotImplementedError

    def copy(self, both: _Listings, key: str, scratch: Path, on_bytes: Callable[[int], None]) -> bool:
        """Copy one key create-only; False when the other side had it already."""
        raise NotImplementedError

    def pointers(self, both: _Listings) -> list[str]:
        raise NotImplementedError

    def move_pointer(self, both: _Listings, key: str, state: _PointerState, result: SyncResult) -> None:
        raise NotImplementedError


def _sync(ws: Workspace, direction: _Direction, remote_url: str | None,
          progress: Progress | None) -> SyncResult:
    """List both sides, copy the planned keys phase by phase through a private scratch folder,
    then move the pointers and record the run in the audit log."""
    started = time.monotonic()
    progress = progress or Progress()
    remote = open_remote(ws, remote_url)
    sides = _Sides(ws, remote)
    result = SyncResult(direction.name, remote.url)
    progress.update(f"listing {remote.url}")
    both = _Listings.take(remote, sides, result.ignored)
    todo = direction.plan(both, result)
    scratch = _scratch(ws)
    try:
        transfers = _Transfers(progress, direction.copying, _workers(ws, remote), todo)
        for phase in _by_phase(todo):
            transfers.run(phase, lambda key: direction.copy(both, key, scratch, transfers.on_bytes), result)
        state = _PointerState(ws, remote)
        pointers = direction.pointers(both)
        with progress.shielded():  # the commit: a cancel waits until every pointer moved and the state is saved
            for n, key in enumerate(pointers):
                progress.update(f"{direction.moving_pointers} {n + 1}/{len(pointers)}")
                direction.move_pointer(both, key, state, result)
            if pointers:
                state.save()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.monotonic() - started
    _audit(ws, remote, result, transfers.audit_copied, sides.published_only)
    return result


def _audit(ws: Workspace, remote: Store, result: SyncResult, audit_copied: int, published_only: bool) -> None:
    """Record a sync that moved anything besides audit records (a no-op sync leaves no trace).

    Copying only other syncs' records is not recorded: otherwise each pull's record, pushed
    later, would make a new record for the other side to pull, and two machines would never
    agree. A push also sends its own record, so pushing twice in a row moves nothing the
    second time. A store managers read does not get the record (audit records stay with raw data)."""
    if not (result.copied - audit_copied or result.pointers_updated):
        return
    entry = audit.record(ws, "sync", objects=list(result.pointers_updated), direction=result.direction,
                         remote=result.remote, copied=result.copied, bytes=result.bytes,
                         conflicts=len(result.conflicts), withheld=len(result.withheld))
    if result.direction == "push" and not published_only:
        key = audit.entry_key(entry)
        try:
            remote.put_bytes(key, ws.store("audit").get_bytes(key), if_none_match=True)
        except PreconditionFailed:
            pass


# --- push ------------------------------------------------------------------------------
class _Push(_Direction):
    name, copying, moving_pointers = "push", "pushing", "publishing pointers"

    def plan(self, both: _Listings, result: SyncResult) -> list[tuple[str, int]]:
        todo = []
        for key, (_store, info) in both.local_keys.items():
            if not both.sides.may_send(key):
                result.withheld.append(key)
                continue
            if is_mutable(key):
                continue
            there = both.remote_keys.get(key)
            if there is None:
                todo.append((key, info.size))
            elif there.size != info.size:
                result.mismatched.append(key)
        return todo

    def copy(self, both: _Listings, key: str, scratch: Path, on_bytes: Callable[[int], None]) -> bool:
        store = both.local_keys[key][0]
        path = store.local_path(key)
        if path is not None:
            return _put(both.remote, key, path, on_bytes, move=False)
        copied = _fetch(store, key, scratch / uuid.uuid4().hex, lambda n: None)
        try:
            return _put(both.remote, key, copied, on_bytes, move=True)
        finally:
            copied.unlink(missing_ok=True)

    def pointers(self, both: _Listings) -> list[str]:
        return sorted(k for k in both.local_keys if is_mutable(k) and both.sides.may_send(k))

    def move_pointer(self, both: _Listings, key: str, state: _PointerState, result: SyncResult) -> None:
        _push_pointer(both.local_keys[key][0], both.remote, key, both.remote_keys.get(key), state, result)


def push(ws: Workspace, remote_url: str | None = None, progress: Progress | None = None) -> SyncResult:
    """Copy what the remote lacks, then move remote pointers that changed here."""
    return _sync(ws, _Push(), remote_url, progress)



def _push_pointer(local: Store, remote: Store, key: str, seen: ObjectInfo | None,
                  state: _PointerState, result: SyncResult) -> None:
    data, _ = _read_local(local, key)
    if data is None:
        return
    mine = _sha(data)
    base = state.get(key)
    for attempt in range(POINTER_RETRIES):
        if attempt:
            seen = remote.stat(key)
        try:
            if seen is None:
                state.set(key, remote.put_bytes(key, data, if_none_match=True), mine)
                result.pointers_updated.append(key)
                return
            if base is not None and seen.etag == base["etag"]:
                if mine != base["sha256"]:
                    state.set(key, remote.put_bytes(key, data, if_match=seen.etag), mine)
                    result.pointers_updated.append(key)
                return
            theirs = remote.get_bytes(key)
            if theirs == data:
                state.set(key, seen.etag, mine)
                return
            if base is not None and mine == base["sha256"]:
                return  # only the remote moved: pull brings it here
            newer = _later(data, theirs)
            if newer:
                state.set(key, remote.put_bytes(key, data, if_match=seen.etag), mine)
                result.pointers_updated.append(key)
                return
            if newer is None:
                result.conflicts.append(key)
            return  # the remote holds the newer value
        except (PreconditionFailed, FileNotFoundError):
            continue
    raise LithotseError(f"{remote.url}: {key} kept changing while it was published; sync again")


# --- pull --------------------------------------------------------------------------------
class _Pull(_Direction):
    name, copying, moving_pointers = "pull", "pulling", "updating pointers"

    def __init__(self, take_remote: bool) -> None:
        self.take_remote = take_remote

    def plan(self, both: _Listings, result: SyncResult) -> list[tuple[str, int]]:
        todo = []
        for key, info in both.remote_keys.items():
            home = both.sides.home(key)
            if is_mutable(key) or home is None:
                continue
            here = both.local_keys.get(key)
            if here is None or here[0] is not home:
                todo.append((key, info.size))
            elif here[1].size != info.size:
                result.mismatched.append(key)
        return todo

    def copy(self, both: _Listings, key: str, scratch: Path, on_bytes: Callable[[int], None]) -> bool:
        dest = both.sides.home(key)
        assert dest is not None
        tmp = _fetch(both.remote, key, scratch / uuid.uuid4().hex, on_bytes, both.remote_keys[key])
        try:
            _verify_content(key, tmp, both.remote.url)
            return dest.put_file(key, tmp, if_none_match=True, move=True)
        finally:
            tmp.unlink(missing_ok=True)

    def pointers(self, both: _Listings) -> list[str]:
        return sorted(k for k in both.remote_keys if is_mutable(k) and both.sides.home(k) is not None)

    def move_pointer(self, both: _Listings, key: str, state: _PointerState, result: SyncResult) -> None:
        home = both.sides.home(key)
        assert home is not None, key  # pointers() lists only keys with a local home
        _pull_pointer(home, both.remote, key, both.remote_keys[key], state, result, self.take_remote)


def pull(ws: Workspace, remote_url: str | None = None, progress: Progress | None = None, *,
         take_remote: bool = False) -> SyncResult:
    """Copy what this workspace lacks, then move local pointers that changed on the remote.

    ``take_remote`` resolves pointer conflicts in the remote's favour.
    """
    return _sync(ws, _Pull(take_remote), remote_url, progress)



def _verify_content(key: str, path: Path, url: str) -> None:
    """Objects named by their sha256 must hash to it; a damaged copy never lands."""
    name = key.rsplit("/", 1)[-1].split(".", 1)[0]
    if not _SHA256_NAME.match(name):
        return
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != name:
        raise LithotseError(f"{url}: {key} does not match its sha256 (damaged on the remote); "
                            "it was not copied")


def _pull_pointer(local: Store, remote: Store, key: str, seen: ObjectInfo,
                  state: _PointerState, result: SyncResult, take_remote: bool) -> None:
    base = state.get(key)
    data, local_etag = _read_local(local, key)
    mine = _sha(data) if data is not None else None
    if base is not None and seen.etag == base["etag"] and mine == base["sha256"]:
        return
    try:
        theirs = remote.get_bytes(key)
    except FileNotFoundError:
        return
    if theirs == data:
        state.set(key, seen.etag, _sha(theirs))
        return
    if base is not None and seen.etag == base["etag"] and data is not None:
        return  # only this side moved: push publishes it
    unchanged_here = data is None or (base is not None and mine == base["sha256"])
    newer = _later(theirs, data or b"")
    if not (unchanged_here or take_remote or newer):
        if newer is None:
            result.conflicts.append(key)
        return  # both moved and this side is newer: push publishes it
    try:
        if data is None:
            local.put_bytes(key, theirs, if_none_match=True)
        else:
            local.put_bytes(key, theirs, if_match=local_etag)
    except PreconditionFailed:
        result.conflicts.append(key)  # changed here while we were deciding; next sync decides
        return
    state.set(key, seen.etag, _sha(theirs))
    result.pointers_updated.append(key)


# --- status ------------------------------------------------------------------------------
def status(ws: Workspace, remote_url: str | None = None) -> SyncStatus:
    """What push and pull would do, from the two listings (pointer bodies read only if they moved)."""
    remote = open_remote(ws, remote_url)
    sides = _Sides(ws, remote)
    out = SyncStatus(remote.url)
    both = _Listings.take(remote, sides, [])
    remote_keys, local_keys = both.remote_keys, both.local_keys
    state = _PointerState(ws, remote)
    for key, (_store, info) in sorted(local_keys.items()):
        if is_mutable(key) or not sides.may_send(key):
            continue
        there = remote_keys.get(key)
        if there is None:
            out.to_push.append(key)
            out.bytes_to_push += info.size
        elif there.size != info.size:
            out.mismatched.append(key)
    for key, info in sorted(remote_keys.items()):
        if is_mutable(key) or key in local_keys or sides.home(key) is None:
            continue
        out.to_pull.append(key)
        out.bytes_to_pull += info.size
    pointer_keys = {k for k in local_keys if is_mutable(k) and sides.may_send(k)} | {
        k for k in remote_keys if is_mutable(k) and sides.home(k) is not None}
    for key in sorted(pointer_keys):
        here = local_keys.get(key)
        data = _read_local(here[0], key)[0] if here else None
        _pointer_status(key, data, remote, remote_keys.get(key), state.get(key), out)
    return out


def _pointer_status(key: str, data: bytes | None, remote: Store, seen: ObjectInfo | None,
                    base: dict[str, str] | None, out: SyncStatus) -> None:
    mine = _sha(data) if data is not None else None
    if seen is None:
        if data is not None:
            out.pointers_to_push.append(key)
        return
    if data is None:
        out.pointers_to_pull.append(key)
        return
    remote_moved = base is None or seen.etag != base["etag"]
    local_moved = base is None or mine != base["sha256"]
    if not remote_moved and not local_moved:
        return
    if not remote_moved:
        out.pointers_to_push.append(key)
        return
    theirs = remote.get_bytes(key)
    if theirs == data:
        return
    if not local_moved:
        out.pointers_to_pull.append(key)
    elif _later(data, theirs):
        out.pointers_to_push.append(key)
    elif _later(data, theirs) is False:
        out.pointers_to_pull.append(key)
    else:
        out.conflicts.append(key)
