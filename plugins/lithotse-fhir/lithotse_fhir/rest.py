"""A FHIR REST server searched type by type; each searchset page is landed unchanged.

Range: the type's date search parameter with ``ge``/``le`` (both inclusive), or
``_lastUpdated`` for types filtered on it; types without a date are fetched whole. The
server is asked for a window two days wider on each side than the range (see
``server_window``); the exact calendar-day rule is applied locally when the landing is
read back, so records at the edges of the range are neither lost nor let through.
Incremental: per type and per range, the newest ``meta.lastUpdated`` seen becomes the
watermark, and the next run asks for ``_lastUpdated=gt<watermark − overlap>``. The overlap
(``lastupdated_overlap`` minutes, default 10) catches writes a server commits late: a
transaction that began before the last run stamps its resources with a time before the
watermark but becomes visible only after that run read its pages. So those are not fetched
twice, the cursor keeps which versions (type, id, lastUpdated) it saw inside the overlap
window, and a page holding only those is not landed again. Only the last landed page of a type
carries the new watermark, so a run that stops half-way starts over from the old one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from lithotse_desktop.plugin import ConfigError, ConfigField, DateRange, FetchRequest, FieldType, InputError, Payload

from .base import FhirConnector, range_since, with_since
from .http import FhirHttp, remover, utc_text, write_temp
from .types import R4_TYPES, date_field, date_spec

DEFAULT_OVERLAP_MINUTES = 10
MAX_SEEN = 5000
"""Versions remembered inside the overlap window; past that (a bulk load stamped in one
instant) pages holding others are landed again, which costs a landing but loses nothing: a
page is skipped only when every version on it is remembered."""
DEFAULT_TYPES = ("Patient, Encounter, Observation, Condition, Procedure, MedicationRequest, "
                 "Immunization, AllergyIntolerance, DiagnosticReport")


def parse_date_params(text: str | None) -> dict[str, str]:
    """``Condition=recorded-date, Observation=date`` → {type: search parameter}."""
    out: dict[str, str] = {}
    for part in re.split(r"[,\s]+", text or ""):
        if not part:
            continue
        kind, sep, param = part.partition("=")
        if not sep or kind not in R4_TYPES or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]*", param):
            raise ConfigError(f"setting date_params: {part!r} is not TYPE=search-parameter")
        out[kind] = param
    return out


SERVER_DAY_MARGIN = dt.timedelta(days=2)


def _shift(day: dt.date | None, delta: dt.timedelta) -> dt.date | None:
    """``day + delta``, or None (an open end) past the first or last representable day."""
    if day is None:
        return None
    try:
        return day + delta
    except OverflowError:
        return None


def server_window(rng: DateRange) -> DateRange:
    """The days to ask a server for so that it returns every record of ``rng``, and some more.

    Lithotse keeps a record by the calendar day written in it (or, for ``lastUpdated``, its
    day in the workspace zone), while a server compares instants and reads a date without
    a zone in its own zone. Offsets run from -12:00 to +14:00 on both sides, so the two
    readings of one day can be 26 hours apart: two days of margin cover that. Open ends
    stay open; the surplus is trimmed on read-back, as payloads are not prefiltered.
    """
    return DateRange(_shift(rng.start, -SERVER_DAY_MARGIN), _shift(rng.end, SERVER_DAY_MARGIN))


def next_link(bundle: dict) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def page_resources(bundle: dict, resource_type: str) -> list[dict]:
    return [entry["resource"] for entry in bundle.get("entry") or []
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
            and entry["resource"].get("resourceType") == resource_type]


def newest_update(resources: list[dict]) -> str | None:
    stamps = [utc_text(updated) for res in resources
              if isinstance(meta := res.get("meta"), dict) and isinstance(updated := meta.get("lastUpdated"), str)]
    known = [s for s in stamps if s]
    return max(known) if known else None


class FhirRestConnector(FhirConnector):
    name = "fhir-rest"
    title = "FHIR server (REST search)"
    description = ("Searches a FHIR R4 server type by type, following the search pages; each "
                   "page (a searchset Bundle) is stored as received.")
    all_types_when_empty = False
    fields = (
        ConfigField("base_url", FieldType.URL, "Server base URL", required=True,
                    help="The FHIR base, e.g. https://fhir.example.org/r4"),
        ConfigField("token", FieldType.SECRET, "Access token",
                    help="Bearer token, kept in the system keyring. Leave empty for open servers."),
        ConfigField("resource_types", FieldType.TEXT, "Resource types", required=True,
                    default=DEFAULT_TYPES, help="Comma-separated types to search."),
        ConfigField("page_size", FieldType.INTEGER, "Page size", default=100,
                    help="_count asked of the server per page."),
        ConfigField("date_params", FieldType.TEXT, "Date search parameters", default="",
                    help="Overrides such as Condition=recorded-date; defaults follow the R4 spec."),
        ConfigField("lastupdated_overlap", FieldType.INTEGER, "Overlap for late writes (minutes)",
                    default=DEFAULT_OVERLAP_MINUTES,
                    help="Each incremental run looks this far back before the last run's newest "
                         "lastUpdated, for resources the server committed late."),
    )

    def __init__(self, settings: dict) -> None:
        super().__init__(settings)
        if not str(self.settings.get("base_url") or "").startswith(("http://", "https://")):
            raise ConfigError(f"setting base_url: {self.settings.get('base_url')!r} is not an http(s) URL")
        if int(self.settings.get("page_size") or 100) < 1:
            raise ConfigError("setting page_size: must be at least 1")
        self.date_params = parse_date_params(self.settings.get("date_params"))
        overlap = self.settings.get("lastupdated_overlap")
        try:
            minutes = DEFAULT_OVERLAP_MINUTES if overlap in (None, "") else int(overlap)
        except (TypeError, ValueError):
            minutes = -1
        if minutes < 0:
            raise ConfigError(f"setting lastupdated_overlap: {overlap!r} is not a whole number of minutes (0 or more)")
        self.overlap = dt.timedelta(minutes=minutes)

    def search_params(self, resource_type: str, request: FetchRequest, since: str | None) -> list:
        params: list[tuple[str, Any]] = [("_count", int(self.settings.get("page_size") or 100))]
        rng = server_window(request.date_range)
        field = date_field(resource_type)
        param = None
        if field == "date":
            param = self.date_params.get(resource_type) or date_spec(resource_type).search
        elif field == "lastUpdated":
            param = "_lastUpdated"
        if param and rng.start:
            params.append((param, f"ge{rng.start.isoformat()}"))
        if param and rng.end:
            params.append((param, f"le{rng.end.isoformat()}"))
        if since:
            params.append(("_lastUpdated", f"gt{looked_back(since, self.overlap)}"))
        return params

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        http = FhirHttp(self.settings["base_url"], self.settings.get("token"), request.progress)
        for resource_type in request.streams:
            yield from self._fetch_type(http, resource_type, request)

    def _fetch_type(self, http: FhirHttp, resource_type: str, request: FetchRequest) -> Iterator[Payload]:
        old = None if request.full else request.state.get(resource_type)
        since = range_since(old, request.date_range)
        known = seen_versions(old, request.date_range, since)
        url: str | None = http.url(resource_type)
        params: Any = self.search_params(resource_type, request, since)
        newest = since
        stamps: list[tuple[str, str]] = []
        pending: Payload | None = None
        visited: set[str] = set()
        try:
            while url:
                request.progress.update(f"{resource_type}: page {len(visited) + 1}")
                body, bundle, final = http.get_json(url, params)
                if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                    got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
                    raise InputError(final, f"expected a FHIR searchset Bundle, got {got!r}")
                visited.add(final)
                resources = page_resources(bundle, resource_type)
                versions = [(version_key(res), utc_text(upd) or "") for res in resources
                            if isinstance(upd := (res.get("meta") or {}).get("lastUpdated"), str)]
                stamps.extend(versions)
                if len(stamps) > 4 * MAX_SEEN and newest:
                    # the watermark only grows: what is outside its window now stays outside
                    window = looked_back(newest, self.overlap)
                    stamps = [(v, stamp) for v, stamp in stamps if stamp > window]
                if resources and not (len(versions) == len(resources) and all(v in known for v, _ in versions)):
                    stamp = newest_update(resources)
                    newest = max(filter(None, [newest, stamp]), default=None)
                    if pending is not None:
                        yield pending
                    path = write_temp(body)
                    pending = Payload(resource_type, f"{resource_type}.page{len(visited):04d}.json", path,
                                      "application/fhir+json", cursor=old,
                                      meta={"format": "document", "mixed": True, "url": final},
                                      cleanup=remover(path))
                url, params = next_link(bundle), None
                if url in visited:
                    raise InputError(url, "the server's next link points back to a page already read")
            if pending is not None:
                if newest:
                    window = looked_back(newest, self.overlap)
                    recent = sorted({v for v, stamp in stamps if stamp > window})
                    pending.cursor = with_since(old, request.date_range, newest, seen=recent[:MAX_SEEN])
                last, pending = pending, None
                yield last
        finally:
            if pending is not None and pending.cleanup:
                pending.cleanup()


def version_key(resource: dict) -> str:
    """One version of one resource, as the cursor remembers it (type/id/lastUpdated)."""
    meta = resource.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    return f"{resource.get('resourceType')}/{resource.get('id')}/{utc_text(str(meta.get('lastUpdated')))}"


def looked_back(since: str, overlap: dt.timedelta) -> str:
    """The watermark moved back by the overlap, in the same sortable UTC spelling."""
    when = dt.datetime.strptime(since, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return (when - overlap).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seen_versions(cursor: Any, rng: DateRange, since: str | None) -> set[str]:
    """The versions the run that set ``since`` saw inside its overlap window."""
    if not since or not isinstance(cursor, dict):
        return set()
    for entry in cursor.get("ranges", []):
        if isinstance(entry, dict) and entry.get("since") == since and isinstance(entry.get("seen"), list):
            try:
                if DateRange.from_json(entry).covers(rng):
                    return {v for v in entry["seen"] if isinstance(v, str)}
            except Exception:
                continue
    return set()
