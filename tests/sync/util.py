"""Small helpers shared by the sync tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from lithotse_desktop.storage import Store
from lithotse_desktop.workspace import Workspace


def land(ws: Workspace, folder: Path, files: dict[str, str], source: str = "vals") -> list:
    """Import ``files`` (name -> "date,value" lines) through the lines connector."""
    from lithotse_desktop.raw import run_import

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    if source not in ws.config.get("sources", {}):
        ws.add_source(source, "lines", {"path": str(folder)}, {})
    return run_import(ws, source).landings


def rows(ws: Workspace, source: str = "vals") -> list[int]:
    from lithotse_desktop.raw import read_stream

    return sorted(r["value"] for b in read_stream(ws, source, "values") for r in b.to_pylist())


def pointer(version: str, when: dt.datetime | None = None) -> bytes:
    when = when or dt.datetime.now(dt.timezone.utc)
    return json.dumps({"version": version, "published_at": when.isoformat()}).encode()


def snapshot(store: Store) -> dict[str, str]:
    """Every key with the sha256 of its bytes."""
    return {info.key: hashlib.sha256(store.get_bytes(info.key)).hexdigest()
            for info in store.list("")}
