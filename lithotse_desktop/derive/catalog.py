"""Where derivatives live: specs, immutable versions and the CURRENT pointer, by disclosure class.

Layout (keys inside the derived tier's store; row-level derivatives, see :mod:`.disclosure`,
keep the same layout under ``restricted/`` in the restricted tier's store instead)::

    specs/<name>.json                                   the spec, as added (every class)
    derived/<name>/parts/period=<p>/<sha256>.parquet    content-addressed partition files
    derived/<name>/versions/<version>.json              one manifest per published version
    derived/<name>/CURRENT                              {"version": ..., "published_at": ...}

A version manifest is written only after all its parts exist, and CURRENT moves to it with
a conditional write, so readers see complete versions only. Which area a derivative's data are
in follows from its spec's class; a version written there removes what an earlier class left in
the other area, so a view built before row-level data moved out of the derived store leaves
nothing behind there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import NotFound
from ..storage import AccessDenied, PreconditionFailed, Store
from ..workspace import Workspace
from .disclosure import Disclosure, Restricted, classify, unreadable
from .spec import SpecError, validate_spec

AREAS = ("derived", "restricted")


def spec_key(name: str) -> str:
    return f"specs/{name}.json"


def version_key(name: str, version: str, area: str = "derived") -> str:
    return f"{area}/{name}/versions/{version}.json"


def current_key(name: str, area: str = "derived") -> str:
    return f"{area}/{name}/CURRENT"


def part_key(name: str, area: str, label: str, sha256: str) -> str:
    return f"{area}/{name}/parts/period={label}/{sha256}.parquet"


def _index_keys(stats: dict) -> list[str]:
    """The record index files a version keeps in the restricted store (a view's, an aggregate's input)."""
    view = stats.get("record_index")
    keys = [k for k in view.values() if isinstance(k, str)] if isinstance(view, dict) else []
    if isinstance(view, dict) and isinstance(view.get("chunks"), list):
        keys += [c[kind] for c in view["chunks"] for kind in ("row_ids", "records") if isinstance(c.get(kind), str)]
    kept = stats.get("input_index")
    if isinstance(kept, str):
        return [*keys, kept]
    return keys + [f["key"] for f in kept if isinstance(f, dict) and isinstance(f.get("key"), str)] \
        if isinstance(kept, list) else keys


def index_key(name: str, label: str, sha256: str) -> str:
    """A file of a view version's record index, always in the restricted store (it holds record keys)."""
    return f"restricted/{name}/record-index/{label}/{sha256}.parquet"


def anchors_key(name: str, version: str) -> str:
    """A table of cells version's anchors (:func:`.complementary.anchors_table`), always in the
    restricted store: they hold the counts of hidden cells."""
    return f"restricted/{name}/anchors/{version}.parquet"


def remembered_key(name: str, version: str) -> str:
    """A pruned version's published cells with its manifest (:meth:`Catalog.prune`), in the
    restricted store: copies of it may still be out there, and the changes a new version
    publishes are audited against them."""
    return f"restricted/{name}/remembered/{version}.parquet"


REMEMBERED = b"lithotse.version"
"""Parquet metadata key of a remembered version's manifest."""


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
    privacy: dict[str, Any] = field(default_factory=dict)
    """Its disclosure class and the role of each column (see :func:`.disclosure.describe`)."""

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> Version:
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        values["privacy"] = values.get("privacy") or {}
        return cls(**values)

    @property
    def area(self) -> str:
        return "restricted" if self.privacy.get("class") == "row-level" else "derived"


class Catalog:
    """Specs and versions of one workspace's derivatives."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.store: Store = ws.store("derived")
        self._restricted: Store | None = None
        self._specs: dict[str, dict] = {}

    def store_of(self, area: str) -> Store:
        """The derived tier's store, or the restricted tier's for ``restricted``."""
        if area == "derived":
            return self.store
        if self._restricted is None:
            self._restricted = self.ws.store("restricted")
        return self._restricted

    def _store_of_key(self, key: str) -> Store:
        return self.store_of("restricted" if key.startswith("restricted/") else "derived")

    # --- classes ----------------------------------------------------------------
    def disclosure(self, name: str) -> Disclosure:
        """The class of a derivative, from its spec (and those of the derivatives it reads)."""
        return classify(self.spec(name), self.find_spec)

    def find_spec(self, name: str) -> dict | None:
        """A derivative's spec, or None when there is none (or it cannot be read)."""
        try:
            return self.spec(name)
        except (NotFound, SpecError):
            return None

    def area(self, name: str) -> str:
        """Where a derivative's versions are kept; an unknown name answers ``derived``."""
        spec = self.find_spec(name)
        return classify(spec, self.find_spec).area if spec is not None else "derived"

    # --- specs ----------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(info.key[len("specs/"):-len(".json")] for info in self.store.list("specs/")
                      if info.key.endswith(".json"))

    def spec(self, name: str) -> dict:
        if name in self._specs:
            return self._specs[name]
        try:
            found = json.loads(self.store.get_bytes(spec_key(name)))
            self._specs[name] = found
            return found
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
        self._specs[spec["name"]] = spec

    def remove(self, name: str) -> None:
        self.spec(name)
        for area in AREAS:
            self._clear(name, area)
        self.store.delete(spec_key(name))
        self._specs.pop(name, None)

    def _clear(self, name: str, area: str) -> None:
        store = self.store_of(area)
        for info in list(store.list(f"{area}/{name}/")):
            store.delete(info.key)

    # --- versions ---------------------------------------------------------------
    def current(self, name: str) -> Version | None:
        pointer = self._pointer(name)
        if pointer is None:
            return None
        return self.version(name, pointer[0]["version"])

    def _pointer(self, name: str, area: str | None = None) -> tuple[dict, str] | None:
        area = area or self.area(name)
        store = self.store_of(area)
        try:
            info = store.stat(current_key(name, area))
            if info is None:
                return None
            return json.loads(store.get_bytes(current_key(name, area))), info.etag
        except AccessDenied:
            if area != "restricted":
                raise
            raise self._unreadable(name) from None

    def _unreadable(self, name: str) -> Restricted:
        return unreadable(name, self.disclosure(name), self.store_of("restricted").url)

    def version(self, name: str, version: str) -> Version:
        area = self.area(name)
        try:
            return Version.from_json(json.loads(self.store_of(area).get_bytes(version_key(name, version, area))))
        except (FileNotFoundError, KeyError):
            raise NotFound(f"{name}: version {version} is not kept") from None
        except AccessDenied:
            if area != "restricted":
                raise
            raise self._unreadable(name) from None

    def versions(self, name: str) -> list[Version]:
        return self._versions_in(name, self.area(name))

    def _versions_in(self, name: str, area: str) -> list[Version]:
        store = self.store_of(area)
        out = []
        try:
            for info in store.list(f"{area}/{name}/versions/"):
                if info.key.endswith(".json"):
                    out.append(Version.from_json(json.loads(store.get_bytes(info.key))))
        except AccessDenied:
            if area != "restricted":
                raise
            raise self._unreadable(name) from None
        return sorted(out, key=lambda v: v.published_at or "")

    def as_of(self, name: str, day: dt.date) -> Version:
        limit = (day + dt.timedelta(days=1)).isoformat()
        eligible = [v for v in self.versions(name) if v.published_at and v.published_at < limit]
        if not eligible:
            raise NotFound(f"{name}: no version was published on or before {day}")
        return eligible[-1]

    def publish(self, version: Version, *, remember: Callable[[Version], list[str] | None] | None = None) -> None:
        """Write the version manifest, then move CURRENT to it with a conditional write; then
        remove the versions the derivative left in the other area when its class was different
        (``remember``: as :meth:`prune`)."""
        version.published_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        area = version.area
        store = self.store_of(area)
        key = version_key(version.name, version.version, area)
        store.put_bytes(key, json.dumps(version.to_json(), sort_keys=True).encode())
        body = json.dumps({"version": version.version, "published_at": version.published_at}).encode()
        for _attempt in range(10):
            pointer = self._pointer(version.name, area)
            try:
                if pointer is None:
                    store.put_bytes(current_key(version.name, area), body, if_none_match=True)
                else:
                    store.put_bytes(current_key(version.name, area), body, if_match=pointer[1])
                break
            except PreconditionFailed:
                continue
        else:
            raise PreconditionFailed(f"{version.name}: CURRENT kept changing; publish again")
        other = "derived" if area == "restricted" else "restricted"
        if self.store_of(other).stat(current_key(version.name, other)) is not None:
            self._withdraw(version.name, other, remember)

    def _withdraw(self, name: str, area: str, remember: Callable[[Version], list[str] | None] | None) -> None:
        """Remove a derivative's versions, parts and CURRENT from ``area`` (its class changed),
        each version remembered first where ``remember`` says; what the restricted store keeps
        beside versions (anchors, remembered cells, record indexes) stays for the new class."""
        store = self.store_of(area)
        for old in self._versions_in(name, area):
            columns = remember(old) if remember is not None else None
            if columns is not None:
                self._remember(old, columns)
            store.delete(version_key(name, old.version, area))
        for info in list(store.list(f"{area}/{name}/parts/")):
            store.delete(info.key)
        store.delete(current_key(name, area))

    def prune(self, name: str, keep: int, *, question: str | None = None,
              remember: Callable[[Version], list[str] | None] | None = None) -> list[str]:
        """Drop versions beyond the newest ``keep`` (never CURRENT) and parts no kept version uses;
        with ``question``, also every version recorded with another (``privacy.question``, see
        :func:`.build.question`). ``remember`` names the columns of a dropped version to keep
        (None: none); they are written before the version goes, so a crash loses nothing."""
        area = self.area(name)
        store = self.store_of(area)
        versions = self.versions(name)
        current = self._pointer(name, area)
        current_id = current[0]["version"] if current else None
        if question is not None:
            same = [v for v in versions if (v.privacy or {}).get("question") == question]
            kept = same[-keep:] if keep > 0 else []
        else:
            kept = versions[-keep:] if keep > 0 else []
        kept_ids = {v.version for v in kept} | ({current_id} if current_id else set())
        dropped = [v for v in versions if v.version not in kept_ids]
        for old in dropped:
            columns = remember(old) if remember is not None else None
            if columns is not None:
                self._remember(old, columns)
            store.delete(version_key(name, old.version, area))
        used = {p["key"] for v in versions if v.version in kept_ids for p in v.partitions.values()}
        for info in list(store.list(f"{area}/{name}/parts/")):
            if info.key not in used:
                store.delete(info.key)
        indexed = {key for v in versions if v.version in kept_ids for key in _index_keys(v.stats or {})}
        restricted = self.store_of("restricted")
        for info in list(restricted.list(f"restricted/{name}/record-index/")):
            if info.key not in indexed:
                restricted.delete(info.key)
        remembered = {info.key.rsplit("/", 1)[-1].removesuffix(".parquet")
                      for info in restricted.list(f"restricted/{name}/remembered/")}
        anchored = {anchors_key(name, v) for v in kept_ids | remembered}  # a question may come back
        for info in list(restricted.list(f"restricted/{name}/anchors/")):
            if info.key not in anchored:
                restricted.delete(info.key)
        return [v.version for v in dropped]

    def _remember(self, version: Version, columns: list[str]) -> None:
        table = self.read(version, columns=[c for c in columns if c in version.columns])
        kept = {"name", "version", "spec_hash", "spec", "columns", "rows", "built_at", "published_at", "privacy"}
        manifest = json.dumps({k: v for k, v in version.to_json().items() if k in kept},
                              sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), REMEMBERED: manifest})
        out = io.BytesIO()
        pq.write_table(table, out, compression="zstd")
        self.store_of("restricted").put_bytes(remembered_key(version.name, version.version), out.getvalue())

    def remembered(self, name: str) -> list[tuple[Version, pa.Table]]:
        """The pruned versions :meth:`prune` remembered, oldest first, each with the columns it
        kept (the manifest's parts are gone); none where the store refuses these credentials."""
        store = self.store_of("restricted")
        found = []
        try:
            listed = list(store.list(f"restricted/{name}/remembered/"))
        except AccessDenied:
            return []
        for info in listed:
            try:
                table = self.read_part(info.key)
            except (NotFound, FileNotFoundError):  # removed meanwhile (derive rm)
                continue
            found.append((Version.from_json(json.loads(table.schema.metadata[REMEMBERED])), table))
        return sorted(found, key=lambda pair: pair[0].published_at or "")

    # --- anchors ----------------------------------------------------------------
    def put_anchors(self, name: str, version: str, table: pa.Table) -> None:
        out = io.BytesIO()
        pq.write_table(table, out, compression="zstd")
        self.store_of("restricted").put_bytes(anchors_key(name, version), out.getvalue())

    def anchors(self, version: Version) -> pa.Table | None:
        """The anchors stored with ``version``, or None (built before anchors were stored, or
        not readable with these credentials)."""
        try:
            return self.read_part(anchors_key(version.name, version.version))
        except (NotFound, AccessDenied, FileNotFoundError):
            return None

    # --- reading ----------------------------------------------------------------
    def read(self, version: Version, *, start: dt.date | None = None,
             end: dt.date | None = None, columns: list[str] | None = None) -> pa.Table:
        """A version's table; with a range, only periods that start inside it."""
        tables = [self.read_part(part["key"], columns) for part in self._parts(version, start, end)]
        if not tables:
            return self._empty(version, columns)
        return pa.concat_tables(tables, promote_options="permissive")

    def _parts(self, version: Version, start: dt.date | None, end: dt.date | None) -> list[dict]:
        """The version's parts in label order; with a range, those of periods starting inside it."""
        found = []
        for label in sorted(version.partitions):
            if not label.startswith("all") and (start or end):  # a view's parts are all, all-000001…
                period = dt.date.fromisoformat(label)
                if (start and period < start) or (end and period > end):
                    continue
            found.append(version.partitions[label])
        return found

    def batches(self, version: Version, *, start: dt.date | None = None, end: dt.date | None = None,
                batch_rows: int = 65_536) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """A version's rows as batches, part by part, in the schema :meth:`read` would give the
        parts together (from their footers), so a reader holds one batch at a time. Parts in a
        remote store are fetched to a temporary file first, one at a time."""
        parts = self._parts(version, start, end)
        if not parts:
            empty = self._empty(version, None)
            return empty.schema, iter(empty.to_batches())
        with self._local_part(parts[0]["key"]) as first:
            schemas = [pq.read_schema(first)]
        for part in parts[1:]:
            with self._local_part(part["key"]) as path:
                schemas.append(pq.read_schema(path))
        schema = pa.unify_schemas(schemas, promote_options="permissive")

        def batches() -> Iterator[pa.RecordBatch]:
            for part in parts:
                with self._local_part(part["key"]) as path:
                    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                        yield batch if batch.schema == schema else _conform(batch, schema)

        return schema, batches()

    @contextlib.contextmanager
    def _local_part(self, key: str) -> Iterator[Path]:
        """A local path of a part: its own in a local store, else a temporary copy."""
        store = self._store_of_key(key)
        local = store.local_path(key)
        if local is not None:
            yield local
            return
        self.ws.local_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="part-", dir=self.ws.local_dir) as folder:
            yield store.fetch_to(key, Path(folder) / "part.parquet")

    def read_part(self, key: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet part of a version, by its key (as one file: ``pq.read_table`` would set up a
        dataset for it, ten times the time of reading a small part, such as a month's cells)."""
        store = self._store_of_key(key)
        local = store.local_path(key)
        source = local if local is not None else io.BytesIO(store.get_bytes(key))
        with pq.ParquetFile(source) as part:
            return part.read(columns=columns)

    def _empty(self, version: Version, columns: list[str] | None) -> pa.Table:
        schema_json = version.stats.get("schema")
        if schema_json:
            schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(schema_json)))
            if columns:
                schema = pa.schema([schema.field(c) for c in columns])
            return pa.Table.from_batches([], schema)  # empty_table() imports pandas
        return pa.table({c: pa.array([], pa.null()) for c in (columns or version.columns)})


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch with the columns of ``schema``, in its order and types (missing ones null)."""
    columns = [batch.column(f.name).cast(f.type) if f.name in batch.schema.names else pa.nulls(batch.num_rows, f.type)
               for f in schema]
    return pa.RecordBatch.from_arrays(columns, schema=schema)
