"""Every DuckDB connection the product opens, under the workspace's ``[limits]``.

DuckDB by default may take 80% of the machine's memory and spills to a folder beside the
process's working directory. A health system's Bulk Data file is larger than memory, so each
connection gets a share of the workspace's ``[limits] memory`` as its ``memory_limit`` (the
setting bounds the whole process, which also holds Python and Arrow batches) and spills into
``.lithotse/tmp/<pid>`` inside the workspace (a folder per process, so a crashed run's files can
be told apart and removed by the next run). Plugins read the same settings through
:func:`lithotse_desktop.plugin.duckdb_settings`, set by :func:`activate` when the core hands
them work.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .errors import ConfigError
from .interrupts import interruptible

DEFAULT_MEMORY = "1GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_MIN_DUCKDB = 128 * 10**6
"""The least DuckDB is given, whatever the setting leaves it."""
_MIN_MEMORY = 512 * 10**6
"""The least ``[limits] memory`` accepted: what the process holds besides DuckDB
(:func:`process_reserve`, about 400 MB) and DuckDB's least share."""
LIBRARIES = 170 * 10**6
"""The process's libraries (Python, DuckDB, pyarrow, numpy, Lithotse's modules) before any data,
where the OS cannot say what is resident (measured on Linux: 130 to 175 MB; more with Qt)."""
IN_FLIGHT = 160 * 10**6
"""What a build holds beyond DuckDB's accounted memory and the libraries: Arrow batches handed
over by DuckDB, pyarrow's Parquet writers and DuckDB's own result buffers. Measured with a 512MB
setting: a full view build over 5M Encounters, its parts written on two threads while DuckDB
re-read what it had spilled, peaked 100 to 120 MB above the libraries and DuckDB's share (185 MB
while pyarrow allocated with mimalloc, see the package's ``__init__``); an aggregate about 60 MB."""
_reserve: int | None = None


def _resident_bytes() -> int | None:
    """This process's resident memory now, where the OS says it cheaply (Linux); else None."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def process_reserve() -> int:
    """The part of the setting DuckDB may not hold: the libraries already resident (else
    :data:`LIBRARIES`) plus :data:`IN_FLIGHT`; measured once per process, so every connection
    and every size derived from DuckDB's share (batch and line sizes) agree. Memory freed by
    earlier work is handed back first: it is not the libraries'."""
    global _reserve
    if _reserve is None:
        release_freed_memory()
        _reserve = max(_resident_bytes() or 0, LIBRARIES) + IN_FLIGHT
    return _reserve


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has none)
        return None


def release_freed_memory() -> None:
    """Hand the memory finished work freed back to the OS, where the C library keeps it for
    reuse (glibc's arenas: after importing a 223 MB CSV the process stayed at 800 MB resident,
    of which it used 144 MB; a build in the same process, as the app runs them, then measured
    the rest as its own and left DuckDB its least share, and a keyed 5M-row build ran out of
    memory). Called when an import or a build ends."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def parse_size(text: object, where: str) -> int:
    """Bytes in ``"512MB"``, ``"2GB"``, ``"1.5 GiB"``; a ConfigError naming ``where`` otherwise."""
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(f"{where}: {text!r} is not a size; write it like \"512MB\" or \"2GB\"")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < _MIN_MEMORY:
        raise ConfigError(f"{where}: {text!r} is too small; a Lithotse process holds about 400MB "
                          f"besides what DuckDB may hold (its libraries, and batches in flight): "
                          f"give it at least 512MB")
    return size


@dataclass(frozen=True)
class Limits:
    """What bounds a process's DuckDB work: memory in bytes and the folder it spills to."""

    memory_bytes: int
    temp_root: Path

    @property
    def temp_dir(self) -> Path:
        """This process's spill folder (DuckDB makes it when it first spills)."""
        return self.temp_root / str(os.getpid())

    @property
    def duckdb_bytes(self) -> int:
        """DuckDB's share of the process's memory: the setting less what the process holds
        besides (:func:`process_reserve`), so the setting bounds the whole process, not DuckDB
        alone (with 70% of it, a 384MB setting saw 430MB: the libraries are a fixed ~170MB)."""
        return max(_MIN_DUCKDB, self.memory_bytes - process_reserve())

    def settings(self) -> dict[str, str]:
        """DuckDB's settings; its allocator hands memory freed by a finished task back to the OS
        above 16MB (not 128MB), so a build running many small queries does not keep it all; a
        ``PARTITION_BY`` write flushes each thread's rows at :meth:`partition_flush_rows`."""
        return {"memory_limit": f"{self.duckdb_bytes}B", "temp_directory": str(self.temp_dir),
                "allocator_flush_threshold": "16MB",
                "partitioned_write_flush_threshold": str(self.partition_flush_rows)}

    @property
    def partition_flush_rows(self) -> int:
        """Rows a thread of a ``PARTITION_BY`` write holds before writing them: DuckDB's 524,288
        cannot spill, and two threads' worth of a kept FHIR input's rows did not fit a 160MB share
        (a 5M-Encounter build failed with a 512MB setting); about 2 KB of share per row held."""
        return max(16_384, min(524_288, self.duckdb_bytes // 2048))


_cleaned: set[Path] = set()
_cleaned_lock = threading.Lock()
_active: Limits | None = None
_connected: Limits | None = None
"""The limits of the last connection made, for :func:`out_of_memory`."""


def clean_stale(temp_root: Path) -> None:
    """Remove spill folders of processes that are gone (once per folder and process)."""
    with _cleaned_lock:
        if temp_root in _cleaned:
            return
        _cleaned.add(temp_root)
    if not temp_root.is_dir():
        return
    for entry in temp_root.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                os.kill(int(entry.name), 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        elif entry.name == str(os.getpid()):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def prepare(limits: Limits) -> None:
    """Clear spill files of dead processes; make the folder DuckDB spills into (it makes only the last level)."""
    clean_stale(limits.temp_root)
    limits.temp_root.mkdir(parents=True, exist_ok=True)


def connect(limits: Limits, *, ordered: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB under ``limits``; ``ordered=False`` where row order does not matter,
    which lets DuckDB stream results it would otherwise buffer. A cancel of the job opening it
    interrupts its queries (:mod:`.interrupts`)."""
    global _connected
    prepare(limits)
    _connected = limits
    config: dict[str, str | bool | int | float | list[str]] = {**limits.settings(), "preserve_insertion_order": ordered}
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_progress_bar = false")  # a bar on the terminal would mix with --json output
    return interruptible(con)


def out_of_memory(exc: BaseException, limits: Limits | None = None) -> str | None:
    """The sentence for a user whose work ran out of DuckDB's share of ``[limits] memory`` (a
    DuckDB error, or one of ours quoting it); None for any other error. DuckDB's own advice
    (``SET memory_limit``) is not a user's to follow: the setting is."""
    text = str(exc)
    if not isinstance(exc, duckdb.OutOfMemoryException) and "Out of Memory Error" not in text:
        return None
    limits = limits or _connected or _active
    share = f" ({limits.duckdb_bytes // 10**6}MB of {limits.memory_bytes // 10**6}MB)" if limits else ""
    first = text.split("\n")[0].strip()
    return (f"{first}: the work needs more memory than [limits] memory leaves DuckDB{share}; "
            "raise [limits] memory in the workspace's lithotse.toml")


def apply(con: duckdb.DuckDBPyConnection, settings: dict[str, str]) -> None:
    """Put ``settings`` (from :meth:`Limits.settings`) on an open connection's database."""
    for name, value in settings.items():
        quoted = value.replace("'", "''")
        con.execute(f"SET {name} = '{quoted}'")


def activate(limits: Limits) -> None:
    """Make ``limits`` the ones plugins use from now on in this process."""
    global _active
    prepare(limits)
    _active = limits


def active_settings() -> dict[str, str]:
    """DuckDB settings for a plugin's connection: the active workspace's, else empty."""
    return _active.settings() if _active is not None else {}
