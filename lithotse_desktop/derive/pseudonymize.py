"""Patient keys that leave L1 as HMAC-SHA256 under a workspace secret kept in the secrets store."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..atomic import atomic_write_text
from ..deferred import pyarrow_compute as pc
from ..errors import LithotseError
from ..secrets import SecretMissing, current_store, load_secret, secret_ref, store_secret
from ..workspace import Workspace
from .spec import SpecError

KEY_ID_FILE = "hmac-key.id"


def key_id(key: bytes) -> str:
    """A short, non-secret name of a key (an HMAC of a fixed text under it), so a workspace can
    tell its own key from a new one without storing the key."""
    return hmac.new(key, b"lithotse workspace key id", hashlib.sha256).hexdigest()[:16]


def workspace_key(ws: Workspace) -> bytes:
    """The workspace's HMAC key, made on first use; only a store that answers "absent" makes a new one.

    The key's id is kept in the workspace's machine-local folder: when the key goes missing later
    (the OS keyring became unusable and secrets moved to the file store, or the keyring was
    reset), a new key would silently give every patient a new pseudonym, breaking joins with what
    was published before, so that is refused with what to do instead."""
    ref = secret_ref(ws.id, "hmac-key")
    recorded = ws.local_dir / KEY_ID_FILE
    expected = recorded.read_text().strip() if recorded.exists() else None
    try:
        key = bytes.fromhex(load_secret(ref))
    except SecretMissing:
        if expected:
            raise LithotseError(
                f"this workspace's pseudonym key (key id {expected}) is not in the secrets store "
                f"({current_store().label}); a new key would give every patient a new pseudonym. Make "
                f"the store that holds it usable again (see `lithotse doctor`; [secrets] store or "
                f"LITHOTSE_SECRETS_STORE choose it), or, to start new pseudonyms on purpose, delete "
                f"{recorded}") from None
        value = secrets.token_hex(32)
        store_secret(ref, value)
        key = bytes.fromhex(value)
    found = key_id(key)
    if expected is None:
        atomic_write_text(recorded, found + "\n")
    elif expected != found:
        raise LithotseError(
            f"the pseudonym key in the secrets store ({current_store().label}) has id {found}, but this "
            f"workspace's pseudonyms were made with key id {expected}; use the store that holds that key "
            f"(see `lithotse doctor`), or delete {recorded} to start new pseudonyms on purpose")
    return key


def pseudonymize(ws: Workspace, table: pa.Table, columns: list[str]) -> pa.Table:
    key = workspace_key(ws)
    for i, name in enumerate(columns):
        idx = table.schema.get_field_index(name)
        if idx < 0:
            raise SpecError(f"pseudonymize[{i}]", f"no output column {name!r}")
        column = pc.cast(table.column(idx), pa.string())
        uniques = pc.unique(column)
        digests = pa.array([None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
                            for v in uniques.to_pylist()], pa.string())
        mapped = pc.take(digests, pc.index_in(column, value_set=uniques))
        table = table.set_column(idx, name, mapped)
    return table


_PATIENT_REFERENCE = re.compile(r"getReferenceKey\(\s*Patient\s*\)|\b(subject|patient)\.reference\b")
_OWN_KEY = re.compile(r"^\s*(getResourceKey\(\s*\)|id)\s*$")


def _columns(selects: list[Any]) -> Iterator[dict]:
    for select in selects or []:
        yield from select.get("column", []) or []
        yield from _columns(select.get("select", []))
        yield from _columns(select.get("unionAll", []))


def view_person_columns(spec: dict) -> list[str]:
    """A view's output columns holding a patient's id (before the HMAC): references to a Patient
    and, on Patient itself, the resource's own id; the person key of what reads the view."""
    if spec.get("kind") != "view":
        return []
    view = spec.get("view", {})
    found = []
    for column in _columns(view.get("select", [])):
        path = str(column.get("path", ""))
        if _PATIENT_REFERENCE.search(path) or (view.get("resource") == "Patient" and _OWN_KEY.match(path)):
            found.append(column.get("name"))
    return list(dict.fromkeys(n for n in found if n))


def patient_key_columns(spec: dict) -> list[str]:
    """Columns that carry a patient identifier: always HMAC'd, whether or not the spec says so.

    For a ViewDefinition: references to a Patient (``subject.getReferenceKey(Patient)``,
    ``patient.reference``) and, on Patient itself, the resource's own id. Other kinds name
    them in ``pseudonymize``.
    """
    return list(dict.fromkeys([*spec.get("pseudonymize", []), *view_person_columns(spec)]))
