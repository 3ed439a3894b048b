"""Reading a stream's landings back as Arrow: each object once, checked against its sha256.

A record's identity, when its connector declares no key, is its object and its position in
the object. So a stream is read object by object (by sha256), never landing by landing: an
object landed several times — for overlapping ranges, again by a ``--full`` import, or in two
raw stores — is read once, keeping each row that lies inside the range of any of its landings
(a prefiltered payload, already restricted by its source, is kept whole). With provenance,
each row names the earliest of those landings whose range covers it (``_landing_id``,
``_landed_at``) and its position in the object (``_row``), so an incremental build sees
exactly the rows that a new landing added.

The bytes are hashed as they are read and compared with the sha256 and size the object was
landed with (see :mod:`.verify`); a difference raises :class:`~lithotse_desktop.errors.CorruptObject`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .. import engine
from ..connectors import Connector, RawObject
from ..dates import DateRange, range_mask, to_local_dates
from ..deferred import pyarrow_compute as pc
from ..errors import Cancelled, CorruptObject, LithotseError
from ..names import CORE_COLUMNS
from ..storage import Store
from ..workspace import Workspace
from .index import landing_store, open_index
from .manifest import Manifest
from .sources import make_connector
from .verify import IntegrityChecks, ObjectCheck

PROVENANCE = CORE_COLUMNS


def landing_object_store(ws: Workspace, manifest: Manifest) -> Store:
    """The raw store a landing's object is read from: the one its manifest was indexed from."""
    name = landing_store(manifest)
    return ws.named_store(name) if name is not None else ws.store("raw")


def local_object(ws: Workspace, manifest: Manifest) -> tuple[Path, bool]:
    """A local path for a landed object (remote objects are fetched once into
    ``.lithotse/object-cache``) and whether it is such a disposable copy."""
    store = landing_object_store(ws, manifest)
    path = store.local_path(manifest.object_key)
    if path is not None:
        if not path.exists():
            raise LithotseError(f"raw object {manifest.object_key} of landing {manifest.id} is missing")
        return path, False
    cached = ws.local_dir / "object-cache" / manifest.sha256
    if not cached.exists():
        store.fetch_to(manifest.object_key, cached)
    return cached, True


@dataclass
class StoredObject:
    """One raw object of a stream and every landing of it, oldest first."""

    sha256: str
    landings: list[Manifest]
    reader: Manifest
    """The landing whose store and metadata the object is read with."""

    def spans(self, date_range: DateRange | None = None) -> list[tuple[DateRange, Manifest]]:
        """The landings' ranges (within ``date_range``), oldest first, without those an earlier
        one already covers: a row belongs to the first span whose range holds its date."""
        kept: list[tuple[DateRange, Manifest]] = []
        for landing in self.landings:
            own = DateRange() if landing.prefiltered else landing.date_range
            rng = own.intersect(date_range)
            if rng is None:
                continue
            if any(r.covers(rng) and m.date_field == landing.date_field for r, m in kept):
                continue
            kept.append((rng, landing))
        return kept


def stored_objects(ws: Workspace, manifests: Sequence[Manifest]) -> list[StoredObject]:
    """Landings (oldest first) grouped by object, in the order each object first landed.

    The same bytes in two raw stores are one object; they are read from the first store in
    the workspace's order (its own raw store, then ``raw_read``), from its newest landing there.
    """
    order = {name: i for i, name in enumerate(ws.raw_store_names())}
    default = ws.raw_store_names()[0]
    groups: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        groups.setdefault(manifest.sha256, []).append(manifest)
    objects = []
    for sha, landings in groups.items():
        rank = [(order.get(landing_store(m) or default, len(order)), -i) for i, m in enumerate(landings)]
        reader = landings[rank.index(min(rank))]
        objects.append(StoredObject(sha, landings, reader))
    return objects


def _owners(batch: pa.RecordBatch, spans: list[tuple[DateRange, Manifest]],
            timezone: str) -> pa.Array | None:
    """For each row, the index of the first span holding it (null: none); None when the
    first span holds every row."""
    dates: dict[str, pa.Array] = {}
    owner: pa.Array | None = None
    for i, (rng, landing) in enumerate(spans):
        field_name = landing.date_field
        if not field_name or not rng.bounded:
            return None if owner is None else pc.coalesce(owner, pa.scalar(i, pa.int32()))
        if field_name not in dates:
            dates[field_name] = to_local_dates(batch.column(field_name), timezone)
        mask = range_mask(dates[field_name], rng)
        mine = pc.if_else(mask, pa.scalar(i, pa.int32()), pa.scalar(None, pa.int32()))
        owner = mine if owner is None else pc.coalesce(owner, mine)
    return owner


def _raw_object(ws: Workspace, stored: StoredObject, connector: Connector, check: ObjectCheck) -> RawObject:
    """The object as the connector reads it, every way of reading it hashed by ``check``."""
    manifest = stored.reader
    store = landing_object_store(ws, manifest)
    key = manifest.object_key

    def fetch() -> Path:
        path, cached = local_object(ws, manifest)
        check.watch(path, cached=cached)
        return path

    if connector.reads_streams and store.local_path(key) is None:
        return RawObject(None, manifest.stream, manifest.original_name, manifest.media_type,
                         manifest.meta, validated=True, open=lambda: check.wrap(store.open_read(key)),
                         fetch=fetch)
    return RawObject(fetch(), manifest.stream, manifest.original_name, manifest.media_type,
                     manifest.meta, validated=True)


def read_object(ws: Workspace, stored: StoredObject, connector: Connector, checks: IntegrityChecks, *,
                date_range: DateRange | None = None,
                provenance: bool = False) -> Iterator[pa.RecordBatch]:
    """Batches of one object's rows that lie inside its landings' ranges (and ``date_range``).

    The bytes are checked once the connector has read them all: a damaged object raises
    CorruptObject, also when the damage made the connector fail first. A reader that stops
    early leaves the verdict to ``checks.finish()``. An object with no row in range yields
    one empty batch, so its columns are still known.
    """
    spans = stored.spans(date_range)
    if not spans:
        return
    engine.activate(ws.limits)
    manifest = stored.reader
    store = landing_object_store(ws, manifest)
    check = checks.check(manifest.object_key, stored.sha256, manifest.bytes,
                         f"{manifest.source}/{manifest.stream}, {manifest.original_name}",
                         lambda: store.open_read(manifest.object_key))
    ids = pa.array([m.id for _r, m in spans], pa.string())
    times = pa.array([m.landed_at for _r, m in spans], pa.string())
    position = 0
    yielded, empty = False, None
    try:
        for batch in connector.read(_raw_object(ws, stored, connector, check)):
            rows = batch.num_rows
            owner = _owners(batch, spans, ws.timezone)
            numbers = _positions(position, rows) if provenance else None
            position += rows
            if owner is not None:
                keep = pc.is_valid(owner)
                batch, owner = batch.filter(keep), owner.filter(keep)
                numbers = numbers.filter(keep) if numbers is not None else None
            if numbers is not None:
                if owner is None:
                    landing_id = pa.repeat(ids[0], batch.num_rows)
                    landed_at = pa.repeat(times[0], batch.num_rows)
                else:
                    landing_id, landed_at = ids.take(owner), times.take(owner)
                batch = (batch.append_column("_landing_id", landing_id)
                         .append_column("_landed_at", landed_at).append_column("_row", numbers))
            if batch.num_rows:
                yielded = True
                yield batch
            elif empty is None:
                empty = batch
    except Cancelled:
        raise
    except Exception as exc:
        try:
            check.finish()
        except CorruptObject as corrupt:  # damage explains the failure better than a parse error
            raise corrupt from exc
        except Exception:
            pass
        raise
    check.finish()
    if not yielded and empty is not None:
        yield empty  # no row in range, but its columns still tell a build what the input is


def _positions(start: int, count: int) -> pa.Array:
    """Row numbers ``start .. start + count - 1``."""
    if not count:
        return pa.array([], pa.int64())
    return pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count)), start - 1)


def read_stream(ws: Workspace, source: str, stream: str, *, date_range: DateRange | None = None,
                provenance: bool = False) -> Iterator[pa.RecordBatch]:
    """Every record of a stream once per object (see the module notes), objects oldest first."""
    connector = make_connector(ws, source)
    index = open_index(ws)
    try:
        manifests = index.landings(source, stream)
    finally:
        index.close()
    with IntegrityChecks() as checks:
        for stored in stored_objects(ws, manifests):
            yield from read_object(ws, stored, connector, checks, date_range=date_range,
                                   provenance=provenance)
