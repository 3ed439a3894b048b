"""Audit trail: one immutable JSON object per action (import, build, publish, export, sync).

Records live under ``audit/`` in the raw tier's store, so they travel with the workspace when
it syncs and, like raw data, stay out of a manager's reach. Each is written create-only, so
two machines never overwrite each other's records.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
import socket
import uuid
from typing import Any

from .errors import LithotseError
from .workspace import Workspace

ACTIONS = ("import", "build", "publish", "export", "sync", "excel-refresh", "plugin")


def record(ws: Workspace, action: str, *, objects: list[str] | None = None, **details: Any) -> dict:
    now = dt.datetime.now(dt.UTC)
    entry = {"id": now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8],
             "at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
             "who": getpass.getuser(), "host": socket.gethostname(), "action": action,
             "objects": sorted(objects or []), "details": details}
    ws.store("raw").put_bytes(entry_key(entry),
                              json.dumps(entry, sort_keys=True, default=str).encode(), if_none_match=True)
    return entry


def entry_key(entry: dict) -> str:
    return f"audit/{entry['id']}.json"


_RECORD_KEY = re.compile(r"^audit/[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}\.json$")


def entries(ws: Workspace, *, action: str | None = None, limit: int | None = None) -> list[dict]:
    """Records oldest first; objects under ``audit/`` that are not records of ours are ignored."""
    store = ws.store("raw")
    keys = sorted(info.key for info in store.list("audit/") if _RECORD_KEY.match(info.key))
    out = []
    for key in reversed(keys):
        try:
            entry = json.loads(store.get_bytes(key))
            entry["action"]
        except (ValueError, TypeError, KeyError):
            raise LithotseError(f"audit record {key} is damaged (not a JSON record)") from None
        if action and entry["action"] != action:
            continue
        out.append(entry)
        if limit and len(out) >= limit:
            break
    return list(reversed(out))
