"""Manifest records: immutable JSON objects, one per landing, written after the data."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from ..dates import DateRange
from ..storage import safe_part

MANIFEST_VERSION = 1


def object_key(source: str, sha256: str) -> str:
    """Objects are addressed by source and content only: a workbook or HL7 batch that feeds
    several streams is stored once; the manifests say which streams read it."""
    return f"raw/{safe_part(source)}/{sha256}"


def manifest_key(source: str, stream: str, landing_id: str) -> str:
    return f"manifests/{safe_part(source)}/{safe_part(stream)}/{landing_id}.json"


def new_landing_id(now: dt.datetime) -> str:
    """Sortable by time, unique across machines."""
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:10]


@dataclass
class Manifest:
    id: str
    source: str
    stream: str
    connector: str
    connector_version: str
    object_key: str
    sha256: str
    bytes: int
    original_name: str
    media_type: str
    records: int
    records_in_range: int
    records_out_of_range: int
    range_from: str | None
    range_to: str | None
    date_min: str | None
    date_max: str | None
    date_field: str | None
    prefiltered: bool
    already_stored: bool
    user: str
    host: str
    landed_at: str
    import_id: str
    seq: int
    cursor: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    @property
    def date_range(self) -> DateRange:
        return DateRange.parse(self.range_from, self.range_to)

    @property
    def key(self) -> str:
        return manifest_key(self.source, self.stream, self.id)

    def to_json(self) -> dict:
        return asdict(self)

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, indent=1).encode("utf-8")

    @classmethod
    def loads(cls, data: bytes | str) -> "Manifest":
        obj = json.loads(data)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})
