"""Workbook operations on a workspace: what the CLI and the desktop app call.

Every one reads published derivatives only: bindings through the L3 cache, exports through
:func:`~lithotse_desktop.derive.service.read_published`; both refuse row-level derivatives.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..cache import cache_for, table_of
from ..dates import DateRange
from ..workspace import Workspace
from .export import export_batches
from .workbook import Binding, Placed, bind, default_table_name, refresh


def fetcher(ws: Workspace):
    """Answer a binding's query from the L3 cache: ``(version, table)``."""
    def fetch(binding: Binding) -> tuple[str, pa.Table]:
        entry, table = table_of(ws, binding.derivative, binding.from_, binding.to, columns=binding.columns)
        return entry.version, table
    return fetch


def _audit(ws: Workspace, path: Path, placed: list[Placed]) -> None:
    from .. import audit

    for item in placed:
        audit.record(ws, "excel-refresh", derivative=item.binding.derivative, version=item.version,
                     path=str(Path(path).resolve()), table=item.binding.table, rows=item.rows)


def bind_workbook(ws: Workspace, path: Path, derivative: str, *, sheet: str = "Lithotse", cell: str = "A1",
                  from_: str | None = None, to: str | None = None, columns: list[str] | str | None = None,
                  table: str | None = None) -> Placed:
    """Bind ``derivative`` into a workbook; ``columns`` may be one comma-separated text, read
    against the derivative's columns (a comma inside a column's name stays in it)."""
    if isinstance(columns, str):
        columns = cache_for(ws).entry(derivative).column_list(columns)
    binding = Binding(table or default_table_name(derivative), derivative, sheet, cell.upper(),
                      from_ or None, to or None, list(columns) if columns else None)
    placed = bind(Path(path), binding, fetcher(ws))
    _audit(ws, path, [placed])
    return placed


def refresh_workbook(ws: Workspace, path: Path) -> list[Placed]:
    placed = refresh(Path(path), fetcher(ws))
    _audit(ws, path, placed)
    return placed


def export_derivative(ws: Workspace, name: str, fmt: str, path: Path, *, rng: DateRange | None = None
                      ) -> tuple[Path, int]:
    """Write a published derivative's table to ``path`` (csv, parquet or xlsx) and audit it."""
    from .. import audit
    from ..derive.service import published_batches

    version, schema, batches = published_batches(ws, name, "exports", rng=rng)
    rows = export_batches(schema, batches, fmt, path, name=name)
    audit.record(ws, "export", derivative=name, version=version.version, format=fmt,
                 path=str(Path(path).resolve()), rows=rows)
    return Path(path), rows
