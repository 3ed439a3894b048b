"""FHIR files on disk: bulk-export NDJSON (gzip allowed), Bundles and single resources."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lithotse_desktop.plugin import (
    ConfigField,
    FetchRequest,
    FieldType,
    FileTracker,
    InputError,
    Payload,
    files_to_fetch,
    list_files,
)

from .base import FhirConnector
from .reader import document_types, is_gzip, locate_ndjson, ndjson_types
from .types import R4_TYPES, TYPE_NAME

PATTERNS = ("*.ndjson", "*.ndjson.gz", "*.jsonl", "*.jsonl.gz", "*.json", "*.json.gz")
_NAMED = re.compile(r"([A-Z][A-Za-z]+)(?:[._-]|$)")


def _base_name(path: Path) -> str:
    return path.name[:-3] if path.name.endswith(".gz") else path.name


def named_type(path: Path) -> str | None:
    """The resource type an NDJSON file is named for (``Encounter.000.ndjson``), if any."""
    stem = _base_name(path).rsplit(".", 1)[0]
    match = _NAMED.match(stem)
    return match.group(1) if match and match.group(1) in R4_TYPES else None


@dataclass(frozen=True)
class _FileStream:
    """A file and one resource type it holds, with what reading its bytes told (or a cursor recalled)."""

    stream: str
    path: Path
    name: str
    format: str
    types: list[str]
    mixed: bool
    media_type: str


def is_export_log(counts: dict) -> bool:
    """A bulk-export ``log.ndjson`` (SMART bulk-data client log): JSON events, no resources."""
    return set(counts) == {None}


class FhirFilesConnector(FhirConnector):
    name = "fhir-files"
    title = "FHIR files (NDJSON, Bundles)"
    description = ("FHIR R4 resources from a file or folder: bulk-export NDJSON (.ndjson, "
                   ".ndjson.gz), Bundles (collection, transaction, searchset) and single "
                   "resources (.json). Each resource type is a stream.")
    fields = (
        ConfigField("path", FieldType.PATH, "File or folder", required=True,
                    help="A FHIR file or a folder searched recursively for *.ndjson, *.ndjson.gz, "
                         "*.jsonl, *.json and *.json.gz."),
        ConfigField("resource_types", FieldType.TEXT, "Resource types", default="",
                    help="Comma-separated types to import, e.g. Patient, Encounter. "
                         "Empty: every type found."),
    )

    def _classify(self, path: Path, name: str) -> tuple[str, set[str], bool]:
        """(format, types, mixed) of one file; reads it only when its name does not say."""
        base = _base_name(path)
        if base.endswith((".ndjson", ".jsonl")):
            named = named_type(path)
            if named:
                return "ndjson", {named}, False
            counts = ndjson_types(path, name)
            if base.split(".")[0] == "log" and is_export_log(counts):
                return "skip", set(), False
            if any(kind is None or not TYPE_NAME.fullmatch(kind) for kind in counts):
                raise locate_ndjson(path, name, "Resource", True)
            types = {kind for kind in counts if kind is not None}
            return "ndjson", types, len(types) > 1
        return "document", document_types(path, name), True

    @staticmethod
    def _known(trackers: list[FileTracker], path: Path) -> tuple[str, set[str], bool] | None:
        """What an earlier run learned of an unchanged file, so it need not be parsed again."""
        for tracker in trackers:
            entry = tracker.unchanged(path)
            if entry is not None and isinstance(entry.get("types"), list):
                return entry.get("format", "ndjson"), set(entry["types"]), bool(entry.get("mixed"))
        return None

    def _entries(self, request: FetchRequest, root: Path) -> Iterator[_FileStream]:
        """Each file once per stream it feeds, classified (or recalled) as the core asks for it."""
        earlier = [] if request.full else [FileTracker.from_cursor(request.state.get(s)) for s in request.streams]
        files = list_files(root, PATTERNS)
        request.progress.update(f"{len(files)} FHIR file(s) under {root}", done=0, total=len(files))
        for path in files:
            request.progress.check()
            name = str(path.relative_to(root)) if root.is_dir() else path.name
            known = self._known(earlier, path)
            fmt, types, mixed = known or self._classify(path, name)
            unknown = sorted(t for t in types if t not in R4_TYPES)
            if unknown:
                raise InputError(name, f"holds {', '.join(unknown)}, not a FHIR R4 resource type")
            media = "application/fhir+ndjson" if fmt == "ndjson" else "application/fhir+json"
            if is_gzip(path):
                media += "; gzip"
            for stream in sorted(types & set(request.streams)):
                yield _FileStream(stream, path, name, fmt, sorted(types), mixed, media)
            request.progress.update(advance=1)

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        root = Path(self.settings["path"]).expanduser()
        for entry, _prior, tracker in files_to_fetch(request, self._entries(request, root)):
            cursor = tracker.mark(entry.path, request.date_range)
            cursor["files"][str(entry.path)].update(types=entry.types, format=entry.format, mixed=entry.mixed)
            yield Payload(entry.stream, entry.name, entry.path, entry.media_type, cursor=cursor,
                          meta={"format": entry.format, "mixed": entry.mixed})
