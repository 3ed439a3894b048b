"""A small real FHIR server for tests: search with paging, date and _lastUpdated filters,
bearer tokens, injectable 429/5xx faults and an asynchronous Bulk Data $export.

It runs ``http.server.ThreadingHTTPServer`` on 127.0.0.1 with a free port in a thread, so
connectors talk real HTTP to it. Its search semantics are deliberately simple and
independent of the connector: a date parameter compares the calendar date written in the
resource (first 10 characters, partial dates padded with -01) with the ``ge``/``le`` value.

    with FhirTestServer.from_folders([folder], token="secret") as server:
        server.base_url  # http://127.0.0.1:PORT/fhir
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DATE_PATHS = {
    "Encounter": {"date": ["period.start"]},
    "Observation": {"date": ["effectiveDateTime", "effectivePeriod.start", "effectiveInstant"]},
    "Condition": {"onset-date": ["onsetDateTime", "onsetPeriod.start"], "recorded-date": ["recordedDate"]},
    "Procedure": {"date": ["performedDateTime", "performedPeriod.start"]},
    "MedicationRequest": {"authoredon": ["authoredOn"]},
    "Immunization": {"date": ["occurrenceDateTime"]},
    "AllergyIntolerance": {"date": ["recordedDate"]},
    "DiagnosticReport": {"date": ["effectiveDateTime", "effectivePeriod.start"]},
}
BASE_UPDATED = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


def _get(obj, path: str):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _instant(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _compare(prefix: str, left, right) -> bool:
    return {"ge": left >= right, "le": left <= right, "gt": left > right, "lt": left < right,
            "eq": left == right}[prefix]


def _split(value: str) -> tuple[str, str]:
    if value[:2] in ("ge", "le", "gt", "lt", "eq"):
        return value[:2], value[2:]
    return "eq", value


@dataclass
class Fault:
    status: int
    retry_after: str | None
    path_prefix: str


class FhirTestServer:
    """Resources in memory by type; each keeps a ``meta.lastUpdated`` the tests can move."""

    def __init__(self, resources: dict[str, list[dict]], token: str | None = None,
                 export_polls: int = 2, file_chunk: int = 500) -> None:
        self.resources = resources
        self.token = token
        self.export_polls = export_polls
        self.file_chunk = file_chunk
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.pages: dict[str, tuple[list[dict], int, int, str]] = {}
        self.exports: dict[str, dict] = {}
        self.export_error: str | None = None
        self.looping_pages = False  # every next link points back to the page it is on
        self.clock = BASE_UPDATED
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    @classmethod
    def from_folders(cls, folders: list[Path], **kwargs) -> FhirTestServer:
        """Load every NDJSON line that is a resource; give each a stable lastUpdated."""
        found: dict[str, list[dict]] = {}
        for folder in folders:
            for path in sorted(Path(folder).glob("*.ndjson")):
                for line in path.read_text("utf-8").splitlines():
                    res = json.loads(line) if line.strip() else None
                    if isinstance(res, dict) and "resourceType" in res:
                        meta = res.setdefault("meta", {})
                        meta.setdefault("lastUpdated", BASE_UPDATED.isoformat().replace("+00:00", "Z"))
                        meta.setdefault("versionId", "1")
                        found.setdefault(res["resourceType"], []).append(res)
        return cls(found, **kwargs)

    # --- control from tests -------------------------------------------------------
    def upsert(self, resource: dict) -> dict:
        """Add or replace a resource, stamping a lastUpdated later than any before."""
        with self.lock:
            self.clock += dt.timedelta(seconds=1)
            res = copy.deepcopy(resource)
            old = [r for r in self.resources.get(res["resourceType"], []) if r.get("id") == res.get("id")]
            version = int(old[0].get("meta", {}).get("versionId", "1")) + 1 if old else 1
            res["meta"] = {**res.get("meta", {}), "versionId": str(version),
                           "lastUpdated": self.clock.isoformat().replace("+00:00", "Z")}
            bucket = [r for r in self.resources.get(res["resourceType"], []) if r.get("id") != res.get("id")]
            self.resources[res["resourceType"]] = bucket + [res]
            return res

    def inject(self, status: int, times: int = 1, retry_after: str | None = "0", path_prefix: str = "") -> None:
        self.faults.extend(Fault(status, retry_after, path_prefix) for _ in range(times))

    # --- lifecycle ----------------------------------------------------------------
    def __enter__(self) -> FhirTestServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/fhir"

    # --- search -------------------------------------------------------------------
    def matches(self, resource_type: str, query: dict[str, list[str]]) -> list[dict]:
        out = []
        params = DATE_PATHS.get(resource_type, {})
        for res in self.resources.get(resource_type, []):
            ok = True
            for name, values in query.items():
                for value in values:
                    prefix, operand = _split(value)
                    if name == "_lastUpdated":
                        ok &= _compare(prefix, _instant(res["meta"]["lastUpdated"]), _instant(operand))
                    elif name in params:
                        found = next((v for p in params[name] if (v := _get(res, p))), None)
                        if found is None:
                            ok = False
                        else:
                            day = found[:10] + "-01-01"[len(found[:10]) - 4:] if len(found) < 10 else found[:10]
                            ok &= _compare(prefix, day, operand[:10])
            if ok:
                out.append(res)
        return out


class _Handler(BaseHTTPRequestHandler):
    server_state: FhirTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        return

    def _send(self, status: int, body: bytes | dict | None = None, headers: dict | None = None,
              content_type: str = "application/fhir+json") -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _outcome(self, status: int, text: str, headers: dict | None = None) -> None:
        self._send(status, {"resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]},
                   headers)

    def do_DELETE(self) -> None:
        self._send(202)

    def do_GET(self) -> None:
        state = self.server_state
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        state.requests.append(("GET", parts.path, copy.deepcopy(query), dict(self.headers)))
        with state.lock:
            fault = next((f for f in state.faults if parts.path.startswith(f.path_prefix)), None)
            if fault:
                state.faults.remove(fault)
        if fault:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return self._outcome(fault.status, "injected fault", headers)
        if parts.path.startswith("/html"):
            return self._send(200, b"<html>not FHIR</html>", content_type="text/html")
        if not parts.path.startswith("/fhir/"):
            return self._outcome(404, "unknown path")
        if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
            return self._outcome(401, "invalid or missing bearer token")
        path = parts.path[len("/fhir/"):]
        if path.startswith("_page/"):
            return self._page(path.split("/", 1)[1])
        if path.endswith("$export"):
            return self._kickoff(path, query)
        if path.startswith("_export/"):
            return self._export(path.split("/")[1:])
        if "/" in path or not path:
            return self._outcome(404, f"unknown path {path}")
        count = int(query.pop("_count", ["20"])[0])
        found = state.matches(path, query)
        token = uuid.uuid4().hex
        with state.lock:
            state.pages[token] = (found, 0, count, path)
        return self._page(token)

    def _page(self, token: str) -> None:
        state = self.server_state
        if token not in state.pages:
            return self._outcome(410, "page expired")
        found, offset, count, kind = state.pages[token]
        chunk = found[offset:offset + count]
        links = [{"relation": "self", "url": f"{state.base_url}/_page/{token}"}]
        if state.looping_pages and offset + count < len(found):
            links.append({"relation": "next", "url": f"{state.base_url}/_page/{token}"})
        elif offset + count < len(found):
            nxt = uuid.uuid4().hex
            state.pages[nxt] = (found, offset + count, count, kind)
            links.append({"relation": "next", "url": f"{state.base_url}/_page/{nxt}"})
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "link": links,
                  "entry": [{"fullUrl": f"{state.base_url}/{kind}/{r['id']}", "resource": r,
                             "search": {"mode": "match"}} for r in chunk]}
        self._send(200, bundle)

    def _kickoff(self, path: str, query: dict) -> None:
        state = self.server_state
        if self.headers.get("Prefer") != "respond-async":
            return self._outcome(400, "Prefer: respond-async is required")
        types = query.get("_type", [",".join(sorted(state.resources))])[0].split(",")
        since = query.get("_since", [None])[0]
        job = uuid.uuid4().hex
        state.exports[job] = {"types": types, "since": since, "polls": 0, "path": path,
                              "time": state.clock.isoformat().replace("+00:00", "Z")}
        self._send(202, None, {"Content-Location": f"{state.base_url}/_export/{job}"})

    def _export(self, parts: list[str]) -> None:
        state = self.server_state
        job = state.exports.get(parts[0])
        if job is None:
            return self._outcome(404, "no such export")
        if len(parts) == 2:
            return self._send(200, job["files"][parts[1]].encode(), content_type="application/fhir+ndjson")
        if job["polls"] < state.export_polls:
            job["polls"] += 1
            return self._send(202, None, {"Retry-After": "0", "X-Progress": f"{job['polls']} of {state.export_polls}"})
        if state.export_error:
            job["files"] = {"err.ndjson": json.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "exception", "diagnostics": state.export_error}]})}
            return self._send(200, {"transactionTime": job["time"], "request": job["path"],
                                    "requiresAccessToken": True, "output": [],
                                    "error": [{"type": "OperationOutcome",
                                               "url": f"{state.base_url}/_export/{parts[0]}/err.ndjson"}]})
        files, output = {}, []
        query = {"_lastUpdated": [f"gt{job['since']}"]} if job["since"] else {}
        for kind in job["types"]:
            found = state.matches(kind, query)
            for n in range(0, len(found), state.file_chunk):
                name = f"{kind}-{n // state.file_chunk}.ndjson"
                files[name] = "".join(json.dumps(r) + "\n" for r in found[n:n + state.file_chunk])
                output.append({"type": kind, "url": f"{state.base_url}/_export/{parts[0]}/{name}",
                               "count": len(found[n:n + state.file_chunk])})
        job["files"] = files
        self._send(200, {"transactionTime": job["time"], "request": job["path"],
                         "requiresAccessToken": True, "output": output, "error": []})
