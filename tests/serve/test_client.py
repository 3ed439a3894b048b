"""The port comes from ``[serve] port`` everywhere, and the add-in's client reads the real server."""

from __future__ import annotations

import datetime as dt

import pytest

from lithotse_desktop.errors import NotFound
from lithotse_desktop.serve.client import ApiClient, ApiError, NotServing
from lithotse_desktop.serve.links import power_query_m, serve_port, table_url, value_url
from lithotse_desktop.serve.token import workspace_token
from lithotse_desktop.workspace import Workspace
from tests.cache.helpers import build_sample, free_port
from tests.conftest import run_lithotse
from tests.support.serving import lithotse_serve


def _set_port(ws: Workspace, port) -> Workspace:
    ws.config["serve"] = {"port": port}
    ws.save()
    return Workspace.open(ws.root)


def test_serve_listens_on_the_configured_port_and_the_client_finds_it(workspace, lines):
    build_sample(workspace, lines)
    port = free_port()
    ws = _set_port(workspace, port)
    with lithotse_serve(ws.root, port):
        client = ApiClient.for_workspace(ws)
        assert client.port == port
        assert [d["name"] for d in client.derivatives()] == ["visits"]
        cell = client.value("visits", "n", "2024-02-01", "2024-03-31", {"grp": "a"})
        assert (cell["value"], cell["suppressed"]) == (30, False)


def test_the_port_option_still_wins_over_the_config(workspace, lines):
    build_sample(workspace, lines)
    configured, given = free_port(), free_port()
    ws = _set_port(workspace, configured)
    with lithotse_serve(ws.root, given, "--port", str(given)):
        assert ApiClient(given, workspace_token(ws)).value("visits", "n")["value"] == 81
        with pytest.raises(NotServing, match=f"not serving on 127.0.0.1:{configured} — open the desktop app"):
            ApiClient.for_workspace(ws).value("visits", "n")


@pytest.mark.parametrize("value", ["http", -1, 70000, True, 80.5])
def test_a_port_that_is_not_one_is_refused_with_the_file_named(workspace, value):
    ws = _set_port(workspace, value)
    with pytest.raises(Exception, match=r"lithotse.toml: \[serve\] port = .* is not a port number"):
        serve_port(ws)
    proc = run_lithotse("serve", env={"LITHOTSE_WORKSPACE": str(ws.root)}, timeout=60)
    assert proc.returncode == 1 and "is not a port number" in proc.stderr and "Traceback" not in proc.stderr


def test_default_port_and_the_addresses_built_from_it(workspace):
    assert serve_port(workspace) == 8765
    ws = _set_port(workspace, "9001")
    assert serve_port(ws) == 9001
    assert table_url(9001, "visits", "2024-01-01") == \
        "http://127.0.0.1:9001/api/v1/derivatives/visits/table?format=csv&from=2024-01-01"
    assert value_url(9001, "visits", "n", "", "2024-03-31", {"grp": "a b"}) == \
        "http://127.0.0.1:9001/api/v1/derivatives/visits/value?measure=n&to=2024-03-31&grp=a+b"
    assert 'Web.Contents("http://127.0.0.1:9001/api/v1/derivatives/visits/table"' in power_query_m(9001, "visits")


def test_the_client_reads_tables_with_dates_and_errors_by_name(workspace, lines, served):
    build_sample(workspace, lines)
    client = served()
    answer = client.table("visits", "2024-03-01", None, ["period", "grp", "n"])
    assert answer.names == ["period", "grp", "n"] and answer.measures == ["n"]
    assert answer.rows == [{"period": dt.date(2024, 3, 1), "grp": "a", "n": 15},
                           {"period": dt.date(2024, 3, 1), "grp": "b", "n": 12}]
    assert client.values([{"derivative": "visits", "measure": "n", "dims": {"grp": "b"}},
                          {"derivative": "ghost", "measure": "n"}])[0]["value"] == 36
    with pytest.raises(NotFound, match="no derivative named 'ghost'; defined: visits"):
        client.value("ghost", "n")
    with pytest.raises(ApiError, match="no dimension 'ward'") as caught:
        client.value("visits", "n", dims={"ward": "3"})
    assert caught.value.status == 400
    with pytest.raises(ApiError, match="missing or wrong token") as caught:
        ApiClient(client.port, "not-the-token").derivatives()
    assert caught.value.status == 401
