"""FHIR Bulk Data ``$export``: kick off, poll the status URL, download each NDJSON output.

Each output file is one payload, landed unchanged. Bulk export cannot filter on clinical
dates, so the range is applied when reading back; ``_since`` is the ``transactionTime`` of
the last successful export made for a range covering this one with the same types.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

from lithotse_desktop.plugin import ConfigError, ConfigField, DateRange, FetchRequest, FieldType, InputError, Payload

from .base import FhirConnector, with_since
from .http import FhirHttp, remover, retry_after_seconds, utc_text
from .types import R4_TYPES

LEVELS = ("system", "patient", "group")


def export_since(states: dict[str, Any], rng: DateRange, types: str) -> str | None:
    """Newest transactionTime of an earlier export covering ``rng`` for the same ``types``."""
    best = None
    for cursor in states.values():
        for entry in (cursor or {}).get("ranges", []) if isinstance(cursor, dict) else []:
            try:
                covered = DateRange.from_json(entry).covers(rng)
            except Exception:
                continue
            stamp = entry.get("transactionTime")
            if covered and entry.get("types") == types and isinstance(stamp, str):
                best = stamp if best is None or stamp > best else best
    return best


class FhirBulkConnector(FhirConnector):
    name = "fhir-bulk"
    title = "FHIR Bulk Data export"
    description = ("Runs a FHIR Bulk Data $export (system, all patients or one group), waits for "
                   "it, and stores each NDJSON output file as received.")
    fields = (
        ConfigField("base_url", FieldType.URL, "Server base URL", required=True),
        ConfigField("token", FieldType.SECRET, "Access token",
                    help="Bearer token, kept in the system keyring."),
        ConfigField("export_level", FieldType.CHOICE, "Export", default="patient", choices=LEVELS,
                    help="system: [base]/$export; patient: Patient/$export; group: Group/[id]/$export."),
        ConfigField("group_id", FieldType.TEXT, "Group id", default="",
                    help="Needed when Export is group."),
        ConfigField("resource_types", FieldType.TEXT, "Resource types", default="",
                    help="Comma-separated types (_type). Empty: everything the server exports."),
        ConfigField("poll_timeout", FieldType.INTEGER, "Wait at most (minutes)", default=60),
    )

    def __init__(self, settings: dict) -> None:
        super().__init__(settings)
        if not str(self.settings.get("base_url") or "").startswith(("http://", "https://")):
            raise ConfigError(f"setting base_url: {self.settings.get('base_url')!r} is not an http(s) URL")
        if self.settings.get("export_level") == "group" and not self.settings.get("group_id"):
            raise ConfigError("setting group_id is required when export_level is group")

    def export_path(self) -> str:
        level = self.settings.get("export_level") or "patient"
        if level == "system":
            return "$export"
        if level == "group":
            return f"Group/{self.settings['group_id']}/$export"
        return "Patient/$export"

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        http = FhirHttp(self.settings["base_url"], self.settings.get("token"), request.progress)
        everything = not self.settings.get("resource_types") and set(request.streams) == R4_TYPES
        types = "*" if everything else ",".join(sorted(request.streams))
        old = {} if request.full else {s: request.state.get(s) for s in request.streams}
        since = export_since(old, request.date_range, types)
        params = {"_outputFormat": "application/fhir+ndjson"}
        if not everything:
            params["_type"] = types
        if since:
            params["_since"] = since
        kickoff = http.url(self.export_path())
        request.progress.update(f"starting export at {kickoff}")
        response = http.request("GET", kickoff, params=params, headers={"Prefer": "respond-async"})
        if response.status_code != 202 or not response.headers.get("Content-Location"):
            raise InputError(response.url, f"expected 202 Accepted with a Content-Location to poll, "
                                           f"got HTTP {response.status_code}")
        status_url = urljoin(response.url, response.headers["Content-Location"])
        manifest = self._wait(http, status_url)
        yield from self._download(http, status_url, manifest, request, old, types)
        try:
            http.request("DELETE", status_url, ok=lambda status: status < 500)
        except InputError:
            pass

    def _wait(self, http: FhirHttp, status_url: str) -> dict:
        deadline = time.monotonic() + 60 * int(self.settings.get("poll_timeout") or 60)
        while True:
            response = http.request("GET", status_url, ok=lambda status: status in (200, 202))
            if response.status_code == 200:
                try:
                    manifest = response.json()
                except ValueError:
                    raise InputError(status_url, "the export manifest is not JSON") from None
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise InputError(status_url, "the export manifest has no output list")
                return manifest
            progress = response.headers.get("X-Progress", "in progress")
            http.progress.update(f"export {progress}")
            if time.monotonic() > deadline:
                raise InputError(status_url, f"the export did not finish within "
                                             f"{self.settings.get('poll_timeout')} minutes")
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            http._sleep(min(http.max_wait, 2.0 if wait is None else wait))

    def _download(self, http: FhirHttp, status_url: str, manifest: dict, request: FetchRequest,
                  old: dict, types: str) -> Iterator[Payload]:
        errors = manifest.get("error") or []
        if errors:
            raise InputError(status_url, f"the export reported {len(errors)} error file(s)"
                             + self._error_detail(http, errors, manifest))
        outputs = []
        for item in manifest["output"]:
            kind = item.get("type") if isinstance(item, dict) else None
            if not isinstance(kind, str) or not isinstance(item.get("url"), str):
                raise InputError(status_url, f"manifest output {item!r} has no type and url")
            if kind not in R4_TYPES:
                raise InputError(item["url"], f"{kind} is not a FHIR R4 resource type")
            if kind in request.streams:
                outputs.append(item)
        stamp = utc_text(when) if isinstance(when := manifest.get("transactionTime"), str) else None
        if stamp is None:
            raise InputError(status_url, "the export manifest has no valid transactionTime")
        last = {item["type"]: n for n, item in enumerate(outputs)}
        seq: dict[str, int] = {}
        auth = "always" if manifest.get("requiresAccessToken") else False
        for n, item in enumerate(outputs):
            kind = item["type"]
            seq[kind] = seq.get(kind, 0) + 1
            request.progress.update(f"downloading {kind} file {seq[kind]}")
            path = http.download(urljoin(status_url, item["url"]), auth=auth)
            cursor = (with_since(old.get(kind), request.date_range, stamp, key="transactionTime",
                                 types=types) if last[kind] == n else old.get(kind))
            yield Payload(kind, f"{kind}.{seq[kind]:03d}.ndjson", path, "application/fhir+ndjson",
                          cursor=cursor, meta={"format": "ndjson", "mixed": False, "url": item["url"]},
                          cleanup=remover(path))

    @staticmethod
    def _error_detail(http: FhirHttp, errors: list, manifest: dict) -> str:
        first = errors[0] if isinstance(errors[0], dict) else {}
        if not isinstance(first.get("url"), str):
            return ""
        try:
            response = http.request("GET", first["url"],
                                    auth="always" if manifest.get("requiresAccessToken") else False)
        except InputError:
            return ""
        line = response.text.strip().splitlines()[0] if response.text.strip() else ""
        try:
            issues = json.loads(line).get("issue") or []
            notes = [i.get("diagnostics") or i.get("code") for i in issues if isinstance(i, dict)]
            return ": " + "; ".join(str(n) for n in notes if n) if notes else ""
        except (ValueError, AttributeError):
            return ""
