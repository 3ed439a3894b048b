"""What the three FHIR connectors share: one stream per resource type and one reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from lithotse_desktop.plugin import Connector, DateRange, NativeColumn, NativeRead, Progress, RawObject, StreamInfo

from .reader import payload_format, read_ndjson_stream, read_payload, survey_ndjson
from .types import R4_TYPES, date_columns, date_field, has_person, parse_type_list, patient_references

VERSION = "0.2.0"


def stream_info(resource_type: str) -> StreamInfo:
    """A resource type as a stream: its range column and every date column it offers."""
    dates = [name for name, _ in date_columns(resource_type)]
    alternatives = tuple(["date", "date_time", *dates[1:], "lastUpdated"])
    primary = date_field(resource_type)
    desc = (f"FHIR {resource_type} resources; ranges filter on "
            + {"date": "the clinical date (see date rules)", "lastUpdated": "meta.lastUpdated",
               None: "nothing: every resource is kept"}[primary])
    return StreamInfo(resource_type, date_field=primary, date_fields=alternatives, key=("id",),
                      description=desc, person_key=("patient_id",) if has_person(resource_type) else None)


class FhirConnector(Connector):
    """Base: streams come from the ``resource_types`` setting (empty: every R4 type)."""

    reads_streams = True  # NDJSON streams from S3; Bundles are fetched to a local file

    version = VERSION
    all_types_when_empty = True

    def resource_types(self) -> list[str]:
        chosen = parse_type_list(self.settings.get("resource_types"))
        if not chosen and self.all_types_when_empty:
            return sorted(R4_TYPES)
        return chosen

    def streams(self) -> list[StreamInfo]:
        return [stream_info(name) for name in self.resource_types()]

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        meta = dict(obj.meta or {})
        if obj.path is None and meta.get("format") == "ndjson" and obj.stream in R4_TYPES:
            return read_ndjson_stream(obj.open_stream(), obj.name, obj.stream, bool(meta.get("mixed")))
        return read_payload(obj.local_file(), obj.name, obj.stream, meta)

    def survey(self, obj: RawObject, info: StreamInfo, date_range: DateRange, timezone: str,
               progress: Progress) -> dict[str, Any] | None:
        """An NDJSON file checked and counted in one DuckDB pass (Bundles are read back whole)."""
        meta = dict(obj.meta or {})
        if obj.path is None or obj.stream not in R4_TYPES or payload_format(obj.name, meta) != "ndjson":
            return None
        return survey_ndjson(obj.path, obj.name, obj.stream, bool(meta.get("mixed")), info.date_field,
                             date_range, timezone, progress)

    def native_read(self, obj: RawObject) -> NativeRead | None:
        """Plain (not gzipped) NDJSON landings; Bundles and single resources are read here."""
        meta = dict(obj.meta or {})
        if meta.get("format") != "ndjson" or obj.stream not in R4_TYPES or "gzip" in obj.media_type:
            return None
        with obj.open_stream() as head:
            if head.read(2) == b"\x1f\x8b":
                return None
        return native_ndjson(obj.stream)


def native_ndjson(resource_type: str) -> NativeRead:
    """The columns :func:`.reader.extract_sql` gives an NDJSON line, as a native read: the same
    paths, date rules and patient id, the line itself as ``resource``, other types' lines left out."""
    dates = date_columns(resource_type)
    if resource_type == "Patient":
        patient = NativeColumn("patient_id", ("id",), "text")
    else:
        patient = NativeColumn("patient_id", tuple(f"{e}.reference" for e in patient_references(resource_type)),
                               "patient_reference")
    columns = (NativeColumn("id", ("id",), "text"), NativeColumn("resourceType", ("resourceType",), "text"),
               NativeColumn("versionId", ("meta.versionId",), "text"),
               NativeColumn("lastUpdated", ("meta.lastUpdated",), "timestamptz"),
               NativeColumn(dates[0][0], tuple(dates[0][1]), "day"),
               NativeColumn("date_time", tuple(dates[0][1]), "instant"),
               *(NativeColumn(name, tuple(paths), "day") for name, paths in dates[1:]),
               patient, NativeColumn("resource", (), "record"))
    return NativeRead("ndjson", columns, keep=("resourceType", resource_type))


def range_since(cursor: Any, rng: DateRange, key: str = "since") -> str | None:
    """The newest watermark of earlier successful runs whose range covers ``rng``.

    Cursors are ``{"ranges": [{"from", "to", key}, ...]}``: a watermark is only valid for
    the range it was fetched with, so a wider or different range starts from scratch.
    """
    best = None
    for entry in (cursor or {}).get("ranges", []) if isinstance(cursor, dict) else []:
        try:
            covered = DateRange.from_json(entry).covers(rng)
        except Exception:
            continue
        value = entry.get(key)
        if covered and isinstance(value, str) and (best is None or value > best):
            best = value
    return best


def with_since(cursor: Any, rng: DateRange, since: str, key: str = "since", **extra: Any) -> dict:
    """A new cursor recording ``since`` for exactly ``rng`` (older entries kept, at most 20)."""
    span = rng.to_json()
    old = [e for e in ((cursor or {}).get("ranges", []) if isinstance(cursor, dict) else [])
           if isinstance(e, dict) and (e.get("from"), e.get("to")) != (span["from"], span["to"])]
    return {"ranges": (old + [{**span, key: since, **extra}])[-20:]}
