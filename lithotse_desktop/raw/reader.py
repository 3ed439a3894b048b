"""Reading landings back as Arrow: through the connector that landed them, restricted to the range."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa

from ..connectors import Connector, RawObject
from ..dates import DateRange, range_mask, to_local_dates
from ..errors import LithotseError
from ..storage import Store
from ..workspace import Workspace
from .index import landing_store
from .manifest import Manifest


def landing_object_store(ws: Workspace, manifest: Manifest) -> Store:
    """The raw store a landing's object is read from: the one its manifest was indexed from."""
    name = landing_store(manifest)
    return ws.named_store(name) if name is not None else ws.store("raw")


def local_object(ws: Workspace, manifest: Manifest) -> Path:
    """A local path for a landed object; remote stores are fetched once into a local cache."""
    store = landing_object_store(ws, manifest)
    path = store.local_path(manifest.object_key)
    if path is not None:
        if not path.exists():
            raise LithotseError(f"raw object {manifest.object_key} of landing {manifest.id} is missing")
        return path
    cached = ws.local_dir / "object-cache" / manifest.sha256
    if not cached.exists():
        store.fetch_to(manifest.object_key, cached)
    return cached


def read_landing(ws: Workspace, manifest: Manifest, connector: Connector, *,
                 date_range: DateRange | None = None,
                 provenance: bool = False) -> Iterator[pa.RecordBatch]:
    """Batches of one landing holding only the records inside its range (and ``date_range``).

    A connector that reads streams gets a remote object as a stream from its store; others
    get a local copy, fetched once into ``.lithotse/object-cache``.
    """
    store = landing_object_store(ws, manifest)
    key = manifest.object_key
    if connector.reads_streams and store.local_path(key) is None:
        obj = RawObject(None, manifest.stream, manifest.original_name, manifest.media_type,
                        manifest.meta, validated=True, open=lambda: store.open_read(key),
                        fetch=lambda: local_object(ws, manifest))
    else:
        obj = RawObject(local_object(ws, manifest), manifest.stream, manifest.original_name,
                        manifest.media_type, manifest.meta, validated=True)
    own = manifest.date_range if not manifest.prefiltered else DateRange()
    rng = own.intersect(date_range)
    if rng is None:
        return
    for batch in connector.read(obj):
        if manifest.date_field and rng.bounded:
            dates = to_local_dates(batch.column(manifest.date_field), ws.timezone)
            batch = batch.filter(range_mask(dates, rng))
        if provenance:
            n = batch.num_rows
            batch = batch.append_column("_landing_id", pa.repeat(pa.scalar(manifest.id), n))
            batch = batch.append_column("_landed_at", pa.repeat(pa.scalar(manifest.landed_at), n))
        if batch.num_rows:
            yield batch


def read_stream(ws: Workspace, source: str, stream: str, *, date_range: DateRange | None = None,
                provenance: bool = False) -> Iterator[pa.RecordBatch]:
    """Every landing of a stream, oldest first; the same object landed twice is read once per range."""
    from .landing import make_connector, open_index

    connector = make_connector(ws, source)
    index = open_index(ws)
    try:
        manifests = index.landings(source, stream)
    finally:
        index.close()
    seen: set[tuple[str, str | None, str | None]] = set()
    for manifest in manifests:
        ident = (manifest.sha256, manifest.range_from, manifest.range_to)
        if ident in seen:
            continue
        seen.add(ident)
        yield from read_landing(ws, manifest, connector, date_range=date_range, provenance=provenance)
