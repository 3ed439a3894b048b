"""Patient keys that leave L1 as HMAC-SHA256 under a workspace secret kept in the keyring."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from ..secrets import load_secret, secret_ref, store_secret
from ..workspace import Workspace
from .spec import SpecError


def workspace_key(ws: Workspace) -> bytes:
    ref = secret_ref(ws.id, "hmac-key")
    try:
        return bytes.fromhex(load_secret(ref))
    except ConfigError:
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
