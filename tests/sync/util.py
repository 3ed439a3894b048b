"""Small helpers shared by the sync tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from lithotse_desktop.storage import Store
from lithotse_desktop.sync import SyncStatus
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
    when = when or dt.datetime.now(dt.UTC)
    return json.dumps({"version": version, "published_at": when.isoformat()}).encode()


def snapshot(store: Store) -> dict[str, str]:
    """Every key with the sha256 of its bytes."""
    return {info.key: hashlib.sha256(store.get_bytes(info.key)).hexdigest()
            for info in store.list("")}


def is_audit(key: str) -> bool:
    return key.startswith("audit/")


def split(snap: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(everything else, audit records): data, manifests and pointers are compared exactly on
    their own, since every sync that moves something adds an audit record of its own."""
    return ({k: v for k, v in snap.items() if not is_audit(k)},
            {k: v for k, v in snap.items() if is_audit(k)})


def data_of(store: Store) -> dict[str, str]:
    return split(snapshot(store))[0]


def audit_of(store: Store) -> dict[str, str]:
    """Every audit record with its hash; each must be a complete, readable JSON record."""
    out = split(snapshot(store))[1]
    for key in out:
        entry = json.loads(store.get_bytes(key))
        assert key == f"audit/{entry['id']}.json" and entry["action"] and entry["at"], key
    return out


def new_sync_record(ws: Workspace, before: dict[str, str] | set[str], *,
                    arrived: frozenset[str] | set[str] = frozenset(), **details) -> str:
    """The one sync record ``ws`` wrote since ``before``; ``arrived`` are records it pulled.

    Checks that the record's details hold ``details`` (direction, remote, copied, ...)."""
    gained = set(audit_of(ws.store("raw"))) - set(before)
    assert arrived <= gained, (arrived, gained)
    [key] = gained - arrived
    entry = json.loads(ws.store("raw").get_bytes(key))
    assert entry["action"] == "sync"
    assert {k: entry["details"].get(k) for k in details} == details, entry
    return key


def audit_pending(st: SyncStatus) -> tuple[set[str], set[str]]:
    """Audit records a status would push and pull, asserting nothing else is out of sync."""
    assert [k for k in st.to_push + st.to_pull if not is_audit(k)] == [], st
    assert not (st.pointers_to_push or st.pointers_to_pull or st.conflicts or st.mismatched), st
    return set(st.to_push), set(st.to_pull)
