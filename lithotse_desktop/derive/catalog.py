"""Where derivatives live in the L2 store: specs, immutable versions, and the CURRENT pointer.

Layout (keys inside the derived tier's store)::

    specs/<name>.json                                   the spec, as added
    derived/<name>/parts/period=<p>/<sha256>.parquet    content-addressed partition files
    derived/<name>/versions/<version>.json              one manifest per published version
    derived/<name>/CURRENT                              {"version": ..., "published_at": ...}

A version manifest is written only after all its parts exist, and CURRENT moves to it with
a conditional write, so readers see complete versions only.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import NotFound
from ..storage import PreconditionFailed, Store
from ..workspace import Workspace
from .spec import SpecError, validate_spec


def spec_key(name: str) -> str:
    return f"specs/{name}.json"


def version_key(name: str, version: str) -> str:
    return f"derived/{name}/versions/{version}.json"


def current_key(name: str) -> str:
    return f"derived/{name}/CURRENT"


@dataclass
class Version:
    name: str
    version: str
    spec_hash: str
    spec: dict
    inputs: dict[str, Any]
    partitions: dict[str, dict]
    columns: list[str]
    rows: int
    built_at: str
    published_at: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> Version:
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**values)


class Catalog:
    """Specs and versions of one workspace's derivatives."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.store: Store = ws.store("derived")

    # --- specs ----------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(info.key[len("specs/"):-len(".json")] for info in self.store.list("specs/")
                      if info.key.endswith(".json"))

    def spec(self, name: str) -> dict:
        try:
            return json.loads(self.store.get_bytes(spec_key(name)))
        except FileNotFoundError:
            raise NotFound(f"no derivative named {name!r}; defined: {', '.join(self.names()) or 'none'}") from None
        except Exception as exc:
            if self.store.stat(spec_key(name)) is None:
                raise NotFound(f"no derivative named {name!r}; defined: "
                               f"{', '.join(self.names()) or 'none'}") from None
            raise SpecError(name, f"stored spec cannot be read: {exc}") from None

    def specs(self) -> list[dict]:
        return [self.spec(n) for n in self.names()]

    def save_spec(self, spec: dict) -> None:
        validate_spec(spec)
        self.store.put_bytes(spec_key(spec["name"]),
                             json.dumps(spec, indent=2, sort_keys=True).encode())

    def remove(self, name: str) -> None:
        self.spec(name)
        for info in list(self.store.list(f"derived/{name}/")):
            self.store.delete(info.key)
        self.store.delete(spec_key(name))

    # --- versions ---------------------------------------------------------------
    def current(self, name: str) -> Version | None:
        pointer = self._pointer(name)
        if pointer is None:
            return None
        return self.version(name, pointer[0]["version"])

    def _pointer(self, name: str) -> tuple[dict, str] | None:
        info = self.store.stat(current_key(name))
        if info is None:
            return None
        return json.loads(self.store.get_bytes(current_key(name))), info.etag

    def version(self, name: str, version: str) -> Version:
        try:
            return Version.from_json(json.loads(self.store.get_bytes(version_key(name, version))))
        except (FileNotFoundError, KeyError):
            raise NotFound(f"{name}: version {version} is not kept") from None

    def versions(self, name: str) -> list[Version]:
        out = []
        for info in self.store.list(f"derived/{name}/versions/"):
            if info.key.endswith(".json"):
                out.append(Version.from_json(json.loads(self.store.get_bytes(info.key))))
        return sorted(out, key=lambda v: v.published_at or "")

    def as_of(self, name: str, day: dt.date) -> Version:
        limit = (day + dt.timedelta(days=1)).isoformat()
        eligible = [v for v in self.versions(name) if v.published_at and v.published_at < limit]
        if not eligible:
            raise NotFound(f"{name}: no version was published on or before {day}")
        return eligible[-1]

    def publish(self, version: Version) -> None:
        """Write the version manifest, then move CURRENT to it with a conditional write."""
        version.published_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        key = version_key(version.name, version.version)
        self.store.put_bytes(key, json.dumps(version.to_json(), sort_keys=True).encode())
        body = json.dumps({"version": version.version, "published_at": version.published_at}).encode()
        for _attempt in range(10):
            pointer = self._pointer(version.name)
            try:
                if pointer is None:
                    self.store.put_bytes(current_key(version.name), body, if_none_match=True)
                else:
                    self.store.put_bytes(current_key(version.name), body, if_match=pointer[1])
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"{version.name}: CURRENT kept changing; publish again")

    def prune(self, name: str, keep: int) -> list[str]:
        """Drop versions beyond the newest ``keep`` (never CURRENT) and parts no kept version uses."""
        versions = self.versions(name)
        current = self._pointer(name)
        current_id = current[0]["version"] if current else None
        kept = versions[-keep:] if keep > 0 else []
        kept_ids = {v.version for v in kept} | ({current_id} if current_id else set())
        dropped = [v.version for v in versions if v.version not in kept_ids]
        for version in dropped:
            self.store.delete(version_key(name, version))
        used = {p["key"] for v in versions if v.version in kept_ids for p in v.partitions.values()}
        for info in list(self.store.list(f"derived/{name}/parts/")):
            if info.key not in used:
                self.store.delete(info.key)
        return dropped

    # --- reading ----------------------------------------------------------------
    def read(self, version: Version, *, start: dt.date | None = None,
             end: dt.date | None = None, columns: list[str] | None = None) -> pa.Table:
        """A version's table; with a range, only periods that start inside it."""
        tables = []
        for label in sorted(version.partitions):
            if label not in ("all",) and (start or end):
                period = dt.date.fromisoformat(label)
                if (start and period < start) or (end and period > end):
                    continue
            part = version.partitions[label]
            tables.append(self.read_part(part["key"], columns))
        if not tables:
            return self._empty(version, columns)
        return pa.concat_tables(tables, promote_options="permissive")

    def read_part(self, key: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet part of a version, by its key."""
        local = self.store.local_path(key)
        if local is not None:
            return pq.read_table(local, columns=columns)
        return pq.read_table(io.BytesIO(self.store.get_bytes(key)), columns=columns)

    def _empty(self, version: Version, columns: list[str] | None) -> pa.Table:
        schema_json = version.stats.get("schema")
        if schema_json:
            schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(schema_json)))
            if columns:
                schema = pa.schema([schema.field(c) for c in columns])
            return schema.empty_table()
        return pa.table({c: pa.array([], pa.null()) for c in (columns or version.columns)})
