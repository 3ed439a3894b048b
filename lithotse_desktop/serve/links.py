"""Where the local API listens and the addresses clients use: one source for every port shown.

``lithotse serve``, the desktop app's own server, the URLs and Power Query text the app
offers, and the add-in's client all take the port from here: ``[serve] port`` in
``lithotse.toml``, else 8765. The Office add-in is served over HTTPS on a second port,
``[serve] https_port`` (else 8766), at ``https://localhost:PORT/addin/``: the plain HTTP port stays
as it is for the xlwings add-in, Power Query and ``WEBSERVICE``, which need no certificate.
Standard library only (the Excel add-in imports it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from ..errors import ConfigError
from ..workspace import CONFIG_NAME, Workspace

HOST = "127.0.0.1"
ADDIN_HOST = "localhost"
DEFAULT_PORT = 8765
DEFAULT_HTTPS_PORT = 8766
PARAMETERS = ("measure", "from", "to", "token", "format", "columns")
"""Query parameters of the API's own; every other parameter names a dimension."""
DIMENSION_PREFIX = "dim."


def dimension_params(dims: dict[str, Any] | None) -> dict[str, Any]:
    """Dimension filters as query parameters: ``<dim>=<value>``, and ``dim.<dim>=<value>`` for a
    dimension whose name is one of :data:`PARAMETERS` or starts with ``dim.`` (a column
    named ``from`` or ``Format``, say), so no dimension name is ever mistaken for another."""
    out: dict[str, Any] = {}
    for name, value in (dims or {}).items():
        plain = name.casefold() not in PARAMETERS and not name.startswith(DIMENSION_PREFIX)
        out[name if plain else DIMENSION_PREFIX + name] = value
    return out


def dims_from_params(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The dimension filters of a request's query parameters (see :func:`dimension_params`)."""
    dims: dict[str, str] = {}
    for key, value in params:
        if key.startswith(DIMENSION_PREFIX):
            dims[key[len(DIMENSION_PREFIX):]] = value
        elif key not in PARAMETERS:
            dims[key] = value
    return dims


def _port_setting(ws: Workspace, key: str, default: int) -> int:
    value: Any = (ws.config.get("serve") or {}).get(key, default)
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if isinstance(value, bool) or not 0 <= port <= 65535 or str(port) != str(value).strip():
        raise ConfigError(f"{ws.root / CONFIG_NAME}: [serve] {key} = {value!r} is not a port number "
                          "(0-65535; 0 picks a free one)")
    return port


def serve_port(ws: Workspace) -> int:
    """``[serve] port`` of the workspace, else 8765; a value that is not a port is refused."""
    return _port_setting(ws, "port", DEFAULT_PORT)


def https_port(ws: Workspace) -> int:
    """``[serve] https_port`` (the Office add-in's HTTPS listener), else 8766."""
    return _port_setting(ws, "https_port", DEFAULT_HTTPS_PORT)


def https_enabled(ws: Workspace) -> bool:
    """``[serve] https = true``: serve HTTPS for the add-in without ``--https`` (the desktop app's setting)."""
    value = (ws.config.get("serve") or {}).get("https", False)
    if not isinstance(value, bool):
        raise ConfigError(f"{ws.root / CONFIG_NAME}: [serve] https = {value!r}: use true or false")
    return value


def addin_origin(port: int) -> str:
    """The origin the Office add-in's pages come from (and the only one CORS lets in)."""
    return f"https://{ADDIN_HOST}:{port}"


def addin_base(port: int) -> str:
    return f"{addin_origin(port)}/addin"


def api_base(port: int) -> str:
    return f"http://{HOST}:{port}/api/v1"


def _derivative_path(port: int, derivative: str, what: str) -> str:
    return f"{api_base(port)}/derivatives/{quote(derivative, safe='')}/{what}"


def table_url(port: int, derivative: str, start: str = "", end: str = "", fmt: str = "csv") -> str:
    """The table address Power Query's "From Web" reads (the token goes in a header)."""
    query = {"format": fmt}
    if start:
        query["from"] = start
    if end:
        query["to"] = end
    return f"{_derivative_path(port, derivative, 'table')}?{urlencode(query)}"


def value_url(port: int, derivative: str, measure: str, start: str = "", end: str = "",
              dims: dict[str, str] | None = None) -> str:
    """One cell's address: ``/value?measure=…&from=…&to=…&<dim>=<value>``."""
    query = {"measure": measure}
    if start:
        query["from"] = start
    if end:
        query["to"] = end
    query.update(dimension_params(dims))
    return f"{_derivative_path(port, derivative, 'value')}?{urlencode(query)}"


def power_query_m(port: int, derivative: str, start: str = "", end: str = "") -> str:
    """A Power Query (M) query for the table, sending the token as a header, not in the URL."""
    base = _derivative_path(port, derivative, "table")
    query = ", ".join(f'{k}="{v}"' for k, v in (("format", "csv"), ("from", start), ("to", end)) if v)
    return ("let\n"
            "    // LithotseToken: a text parameter holding the output of `lithotse token`\n"
            f'    Source = Csv.Document(Web.Contents("{base}", [Query=[{query}], '
            'Headers=[Authorization="Bearer " & LithotseToken]]), [Delimiter=",", Encoding=65001]),\n'
            "    Table = Table.PromoteHeaders(Source, [PromoteAllScalars=true])\n"
            "in\n"
            "    Table")
