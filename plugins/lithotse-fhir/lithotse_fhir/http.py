"""HTTP for the REST and Bulk connectors: bearer token, retries with backoff, clear errors.

``requests`` is used because it is already installed and the calls are simple blocking
GETs; every error becomes an InputError naming the URL, never a raw exception. It is imported
where a request is made: every command loads the plugin, few talk to a server (the desktop app
imports it up front, see ``lithotse_desktop.gui.app``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lithotse_desktop.plugin import InputError, Progress

if TYPE_CHECKING:
    import requests

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _full_url(method: str, url: str, params: Any) -> str:
    """The URL with its query, as errors name it (the URL alone if it cannot be built)."""
    import requests

    try:
        return requests.Request(method, url, params=params).prepare().url or url
    except requests.RequestException:
        return url


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def outcome_text(response: requests.Response) -> str:
    """The diagnostics of an OperationOutcome body, if the server sent one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    notes = []
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            if text:
                notes.append(str(text))
    return "; ".join(notes)


class FhirHttp:
    """A session bound to one server; the token is only sent to that server's origin."""

    backoff_base = 1.0
    max_wait = 120.0

    def __init__(self, base_url: str, token: str | None, progress: Progress,
                 retries: int = 5, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self.progress = progress
        self.retries = retries
        self.timeout = timeout
        import requests  # here, not above: every command loads this plugin, few talk to a server

        self.session = requests.Session()
        self.session.headers["User-Agent"] = "lithotse-fhir"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.progress.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

    def request(self, method: str, url: str, *, params: Any = None, headers: dict | None = None,
                stream: bool = False, auth: bool | str = True, ok: Callable[[int], bool] | None = None
                ) -> requests.Response:
        """One call with retries on 429/5xx (Retry-After honoured) and connection errors."""
        import requests

        headers = {"Accept": "application/fhir+json", **(headers or {})}
        if auth and self.token and (auth == "always" or _origin(url) == _origin(self.base_url)):
            headers["Authorization"] = f"Bearer {self.token}"
        ok = ok or (lambda status: 200 <= status < 300)
        shown = _full_url(method, url, params)
        for attempt in range(self.retries + 1):
            self.progress.check()
            try:
                response = self.session.request(method, url, params=params, headers=headers,
                                                timeout=self.timeout, stream=stream)
            except requests.RequestException as exc:
                transient = isinstance(exc, (requests.ConnectionError, requests.Timeout))
                if transient and attempt < min(self.retries, 2):
                    self._sleep(self.backoff_base * 2 ** attempt)
                    continue
                reason = type(exc).__name__
                raise InputError(shown, f"cannot reach the server ({reason}: {exc})") from None
            shown = response.url or url
            if ok(response.status_code):
                return response
            if response.status_code in RETRY_STATUS and attempt < self.retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                wait = self.backoff_base * 2 ** attempt if wait is None else wait
                response.close()
                self.progress.update(f"server busy (HTTP {response.status_code}); retrying in {wait:.0f}s")
                self._sleep(min(wait, self.max_wait))
                continue
            raise self.error(response, attempts=attempt + 1)
        raise InputError(shown, f"no usable response after {self.retries + 1} attempts")

    def error(self, response: requests.Response, attempts: int = 1) -> InputError:
        status = response.status_code
        detail = outcome_text(response)
        if status in (401, 403):
            reason = (f"HTTP {status} {response.reason}: the server refused the access token; "
                      "check the source's token setting")
        elif status == 404:
            reason = "HTTP 404 Not Found: check the base URL"
        elif status in RETRY_STATUS and attempts > 1:
            reason = f"HTTP {status} {response.reason}, still failing after {attempts} attempts"
        else:
            reason = f"HTTP {status} {response.reason}"
        return InputError(response.url, reason + (f" ({detail})" if detail else ""))

    def get_json(self, url: str, params: Any = None, headers: dict | None = None) -> tuple[bytes, Any, str]:
        """GET a FHIR JSON body: (exact bytes, parsed JSON, final URL)."""
        response = self.request("GET", url, params=params, headers=headers)
        body = response.content
        try:
            data = json.loads(body)
        except ValueError:
            kind = response.headers.get("Content-Type", "no Content-Type")
            raise InputError(response.url, f"the response is not FHIR JSON ({kind})") from None
        return body, data, response.url

    def download(self, url: str, auth: bool | str) -> Path:
        """Stream a body to a temp file (the caller removes it)."""
        import requests

        response = self.request("GET", url, stream=True, auth=auth,
                                headers={"Accept": "application/fhir+ndjson"})
        fd, name = tempfile.mkstemp(prefix="lithotse-fhir-", suffix=".ndjson")
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in response.iter_content(1 << 20):
                    self.progress.check()
                    fh.write(chunk)
        except requests.RequestException as exc:
            os.unlink(name)
            raise InputError(url, f"download failed ({type(exc).__name__}: {exc})") from None
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)


def write_temp(data: bytes, suffix: str = ".json") -> Path:
    fd, name = tempfile.mkstemp(prefix="lithotse-fhir-", suffix=suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


def remover(path: Path) -> Callable[[], None]:
    return lambda: path.unlink(missing_ok=True)


def utc_text(value: str) -> str | None:
    """A FHIR instant as a sortable UTC string (microseconds, ``Z``), or None if unparseable."""
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
