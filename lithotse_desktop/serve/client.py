"""A small client of the local API for spreadsheet clients (the xlwings add-in), standard library only.

Every spreadsheet client reads through the same door, ``/api/v1`` on 127.0.0.1, so suppression,
versions and caching behave the same in a cell as in Power Query. The port and the token come
from the workspace (``[serve] port``; the keyring), as the server takes them.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from ..errors import LithotseError, NotFound
from ..workspace import Workspace
from .links import HOST, api_base, dimension_params, serve_port


class NotServing(LithotseError):
    """Nothing answers on the configured port."""

    def __init__(self, port: int) -> None:
        self.port = port
        super().__init__(f"Lithotse is not serving on {HOST}:{port} — open the desktop app or run "
                         "lithotse serve")


class ApiError(LithotseError):
    """The API answered with an error (its message, as the server wrote it)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class TableAnswer:
    derivative: str
    version: str
    columns: list[dict[str, str]]
    measures: list[str]
    rows: list[dict[str, Any]]

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]


def _typed(value: Any, arrow_type: str) -> Any:
    """JSON text back to the date or timestamp the column holds (the API writes them as ISO)."""
    if not isinstance(value, str):
        return value
    if arrow_type.startswith("date"):
        return dt.date.fromisoformat(value[:10])
    if arrow_type.startswith("timestamp"):
        return dt.datetime.fromisoformat(value)
    return value


class ApiClient:
    """Requests to one local API; raises :class:`NotServing`, :class:`NotFound` or :class:`ApiError`."""

    def __init__(self, port: int, token: str, *, timeout: float = 30) -> None:
        self.port = port
        self.base = api_base(port)
        self._token = token
        self.timeout = timeout

    @classmethod
    def for_workspace(cls, ws: Workspace, **kwargs: Any) -> ApiClient:
        from .token import workspace_token

        return cls(serve_port(ws), workspace_token(ws), **kwargs)

    def _request(self, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        url = self.base + path
        pairs = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        if pairs:
            url += "?" + urlencode(pairs)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            message = self._error_text(exc)
            if exc.code == 404:
                raise NotFound(message) from None
            raise ApiError(exc.code, message) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (ConnectionError, OSError)) and not isinstance(reason, TimeoutError):
                raise NotServing(self.port) from None
            raise ApiError(0, f"the local API on {HOST}:{self.port} did not answer: {reason}") from None

    @staticmethod
    def _error_text(exc: urllib.error.HTTPError) -> str:
        try:
            return str(json.loads(exc.read()).get("error") or exc.reason)
        except (ValueError, AttributeError):
            return f"HTTP {exc.code} {exc.reason}"

    def derivatives(self) -> list[dict[str, Any]]:
        return self._request("/derivatives")["derivatives"]

    def value(self, derivative: str, measure: str, from_: str | None = None, to: str | None = None,
              dims: dict[str, str] | None = None) -> dict[str, Any]:
        """``{"value", "suppressed", "version", …}`` for one cell."""
        query = {"measure": measure, "from": from_, "to": to, **dimension_params(dims)}
        return self._request(f"/derivatives/{quote(derivative, safe='')}/value", query)

    def table(self, derivative: str, from_: str | None = None, to: str | None = None,
              columns: list[str] | None = None, dims: dict[str, str] | None = None) -> TableAnswer:
        """The (suppressed) table, dates and timestamps as Python values again."""
        query = {"format": "json", "from": from_, "to": to,
                 "columns": ",".join(columns) if columns else None, **dimension_params(dims)}
        data = self._request(f"/derivatives/{quote(derivative, safe='')}/table", query)
        types = {c["name"]: c["type"] for c in data["columns"]}
        rows = [{k: _typed(v, types.get(k, "")) for k, v in row.items()} for row in data["rows"]]
        return TableAnswer(data["derivative"], data["version"], data["columns"],
                           list(data.get("measures") or []), rows)

    def values(self, lookups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Many cells in one request, answered in order (a failing one carries ``error``)."""
        return self._request("/values", body={"lookups": lookups})["results"]
