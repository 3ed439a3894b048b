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

import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .errors import ConfigError

DEFAULT_MEMORY = "1GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_MIN_MEMORY = 64 * 10**6
DUCKDB_SHARE = 0.7
"""How much of ``[limits] memory`` DuckDB may hold before it spills (measured: a view build over
5M Encounters peaked at 1.2 GB with DuckDB given all of 1 GB)."""


def parse_size(text: object, where: str) -> int:
    """Bytes in ``"512MB"``, ``"2GB"``, ``"1.5 GiB"``; a ConfigError naming ``where`` otherwise."""
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(f"{where}: {text!r} is not a size; write it like \"512MB\" or \"2GB\"")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < _MIN_MEMORY:
        raise ConfigError(f"{where}: {text!r} is too small; DuckDB needs at least 64MB")
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
        """DuckDB's share of the process's memory: the rest is for Python, the Arrow batches
        handed between DuckDB and the connectors, and the libraries themselves."""
        return max(_MIN_MEMORY, int(self.memory_bytes * DUCKDB_SHARE))

    def settings(self) -> dict[str, str]:
        """DuckDB's settings; its allocator hands memory freed by a finished task back to the OS
        above 16MB (not 128MB), so a build running many small queries does not keep it all."""
        return {"memory_limit": f"{self.duckdb_bytes}B", "temp_directory": str(self.temp_dir),
                "allocator_flush_threshold": "16MB"}


_cleaned: set[Path] = set()
_cleaned_lock = threading.Lock()
_active: Limits | None = None


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
    which lets DuckDB stream results it would otherwise buffer."""
    prepare(limits)
    config: dict[str, str | bool | int | float | list[str]] = {**limits.settings(), "preserve_insertion_order": ordered}
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_progress_bar = false")  # a bar on the terminal would mix with --json output
    return con


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
