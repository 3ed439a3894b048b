"""Audit trail: one immutable JSON object per action (import, build, publish, export, sync, …).

Records live under ``audit/`` in the audit tier's store (``[tiers] audit``; by default the raw
tier's store, which suits a single user). Every identity appends to it with create-only writes
(``If-None-Match: *``), so a manager's exports, workbook refreshes and API reads are recorded
without that identity being able to write raw or derived data, and two machines never overwrite
each other's records. The bucket's policy is what forbids deleting and overwriting (see
docs/privacy.md, "Roles and audit"); the record's name carries a digest of its content, so a
record changed after it was written is reported by :func:`entries` instead of being trusted.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import re
import socket
import uuid
from typing import Any

from .errors import LithotseError
from .workspace import Workspace

ACTIONS = ("import", "build", "publish", "export", "sync", "excel-refresh", "api-read", "plugin")

_RECORD_KEY = re.compile(r"^audit/[0-9]{8}T[0-9]{12}Z-([0-9a-f]{8}|[0-9a-f]{16})\.json$")
_DIGEST_LENGTH = 16


def _digest(entry: dict) -> str:
    """The first hex digits of the sha256 of a record's content (everything but its id)."""
    body = {k: v for k, v in entry.items() if k != "id"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:_DIGEST_LENGTH]


def record(ws: Workspace, action: str, *, objects: list[str] | None = None, **details: Any) -> dict:
    """Append one record to the audit tier; it is never overwritten (create-only)."""
    now = dt.datetime.now(dt.UTC)
    entry: dict[str, Any] = {
        "at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "who": getpass.getuser(), "host": socket.gethostname(), "action": action,
        "objects": sorted(objects or []), "details": details, "nonce": uuid.uuid4().hex[:12]}
    entry = json.loads(json.dumps(entry, default=str))
    entry = {"id": now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + _digest(entry), **entry}
    ws.store("audit").put_bytes(entry_key(entry), json.dumps(entry, sort_keys=True).encode(),
                                if_none_match=True)
    return entry


def entry_key(entry: dict) -> str:
    return f"audit/{entry['id']}.json"


def is_record_key(key: str) -> bool:
    return bool(_RECORD_KEY.match(key))


def _checked(key: str, data: bytes) -> dict:
    """A record read back: JSON, with the digest its name carries (records written before names
    carried one have eight random hex digits instead, and are taken as they are)."""
    try:
        entry = json.loads(data)
        entry["action"]
    except (ValueError, TypeError, KeyError):
        raise LithotseError(f"audit record {key} is damaged (not a JSON record)") from None
    named = key[len("audit/"):-len(".json")]
    if entry.get("id") != named:
        raise LithotseError(f"audit record {key} was changed after it was written: it names itself "
                            f"{entry.get('id')!r}")
    suffix = named.rsplit("-", 1)[-1]
    if len(suffix) == _DIGEST_LENGTH and _digest(entry) != suffix:
        raise LithotseError(f"audit record {key} was changed after it was written: its content no longer "
                            "matches the digest in its name (a bucket with object lock keeps the original "
                            "as an older version)")
    return entry


def entries(ws: Workspace, *, action: str | None = None, limit: int | None = None) -> list[dict]:
    """Records oldest first; objects under ``audit/`` that are not records of ours are ignored."""
    store = ws.store("audit")
    keys = sorted(info.key for info in store.list("audit/") if is_record_key(info.key))
    out = []
    for key in reversed(keys):
        entry = _checked(key, store.get_bytes(key))
        if action and entry["action"] != action:
            continue
        out.append(entry)
        if limit and len(out) >= limit:
            break
    return list(reversed(out))
