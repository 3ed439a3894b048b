"""Patient keys that leave L1 as HMAC-SHA256 under a workspace secret kept in the secrets store."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..secrets import SecretMissing, load_secret, secret_ref, store_secret
from ..workspace import Workspace
from .spec import SpecError


def workspace_key(ws: Workspace) -> bytes:
    """The workspace's HMAC key, made on first use; only a store that answers "absent" makes a new one."""
    ref = secret_ref(ws.id, "hmac-key")
    try:
        return bytes.fromhex(load_secret(ref))
    except SecretMissing:
        value = secrets.token_hex(32)
        store_secret(ref, value)
        return bytes.fromhex(value)


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
