"""Manifest records: immutable JSON objects, one per landing, written after the data."""

from __future__ import annotations

import builtins
import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from ..dates import DateRange
from ..errors import ConfigError
from ..storage import safe_part

# 2: the landing's range is stored once, as ``range`` (``DateRange.to_json``); file cursors name
#    their file only and the index adds the landing's range (``connectors.fold_cursor``).
# 1: ``range_from`` / ``range_to``, and file cursors repeat ``ranges`` as [from, to] pairs.
MANIFEST_VERSION = 2


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
    date_range: DateRange
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
    def range_from(self) -> str | None:
        return self.date_range.to_json()["from"]

    @property
    def range_to(self) -> str | None:
        return self.date_range.to_json()["to"]

    @property
    def key(self) -> str:
        return manifest_key(self.source, self.stream, self.id)

    def to_json(self) -> dict:
        """The public form (``raw ls --json``, ``raw show --json``): the range as ``range_from``
        and ``range_to``, whichever version stored it."""
        data = asdict(self)
        del data["date_range"]
        span = self.date_range.to_json()
        return {**data, "range_from": span["from"], "range_to": span["to"]}

    def dumps(self) -> builtins.bytes:  # the field `bytes` hides the type in this class
        """The stored form of the manifest's version (a version 1 manifest read back and
        indexed keeps its own layout)."""
        data = self.to_json()
        if self.manifest_version >= 2:
            data["range"] = self.date_range.to_json()
            del data["range_from"], data["range_to"]
        return json.dumps(data, sort_keys=True, indent=1).encode("utf-8")

    @classmethod
    def loads(cls, data: builtins.bytes | str) -> Manifest:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("a manifest is a JSON object")
        version = obj.get("manifest_version", 1)
        try:
            if "range" in obj:
                rng = DateRange.from_json(obj["range"])
            else:
                rng = DateRange.parse(obj.get("range_from"), obj.get("range_to"))
        except ConfigError as exc:
            raise ValueError(f"range: {exc}") from None
        known = {f for f in cls.__dataclass_fields__} - {"date_range", "manifest_version"}
        return cls(**{k: v for k, v in obj.items() if k in known}, date_range=rng, manifest_version=version)
