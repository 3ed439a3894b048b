from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time

import requests
from click.testing import CliRunner

from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.raw import run_import
from lithotse_desktop.serve import workspace_token
from tests.cache.helpers import TOTALS, VISITS, free_port, write_rows
from tests.serve.cli_main import main_with_cells


def test_every_request_needs_the_token(api, workspace):
    url = api.base + "/derivatives"
    assert requests.get(url).status_code == 401
    bad = requests.get(url, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "token" in bad.json()["error"]
    assert requests.get(url, params={"token": "nope"}).status_code == 401
    assert requests.get(url, params={"token": workspace_token(workspace)}).status_code == 200
    assert api.get(url).status_code == 200
    assert requests.post(api.base + "/values", json={"lookups": []}).status_code == 401


def test_list_derivatives(api, workspace):
    add_spec(workspace, TOTALS)
    data = api.get(api.base + "/derivatives").json()["derivatives"]
    by_name = {d["name"]: d for d in data}
    visits = by_name["visits"]
    assert visits["kind"] == "aggregate"
    assert visits["version"] == Catalog(workspace).current("visits").version
    assert visits["dimensions"] == ["grp"]
    assert {"name": "avg", "fn": "mean"} in visits["measures"]
    assert [c["name"] for c in visits["columns"]] == ["period", "grp", "n", "total", "avg", "ids", "suppressed"]
    assert by_name["totals"]["version"] is None


def test_table_as_json_and_csv_with_etag(api, workspace):
    url = api.base + "/derivatives/visits/table"
    res = api.get(url, params={"from": "2024-02-01", "to": "2024-02-29"})
    assert res.status_code == 200
    version = Catalog(workspace).current("visits").version
    assert res.headers["X-Lithotse-Version"] == version
    assert res.headers["ETag"].startswith(f'"{version}-')
    body = res.json()
    assert body["version"] == version
    assert [(r["period"], r["grp"], r["n"]) for r in body["rows"]] == [("2024-02-01", "a", 15), ("2024-02-01", "b", 12)]
    again = api.get(url, params={"from": "2024-02-01", "to": "2024-02-29"},
                    headers={"If-None-Match": res.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    other = api.get(url, params={"from": "2024-01-01", "to": "2024-02-29"},
                    headers={"If-None-Match": res.headers["ETag"]})
    assert other.status_code == 200 and other.headers["ETag"] != res.headers["ETag"]
    text = api.get(url, params={"format": "csv", "grp": "a", "columns": "period,n"})
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    assert rows == [{"period": f"2024-0{m}-01", "n": "15"} for m in (1, 2, 3)]


def test_value_with_dimensions_etag_and_rebuild(api, workspace, lines):
    url = api.base + "/derivatives/visits/value"
    res = api.get(url, params={"measure": "n", "grp": "a", "from": "2024-01-01", "to": "2024-02-29"})
    assert res.status_code == 200
    assert res.json()["value"] == 30 and res.json()["suppressed"] is False
    etag = res.headers["ETag"]
    assert api.get(url, params={"measure": "n", "grp": "a", "from": "2024-01-01", "to": "2024-02-29"},
                   headers={"If-None-Match": etag}).status_code == 304
    write_rows(lines, "b.txt", [("2024-01-20", 1, "a", "new")])
    run_import(workspace, "vals")
    build(workspace, "visits")
    fresh = api.get(url, params={"measure": "n", "grp": "a", "from": "2024-01-01", "to": "2024-02-29"},
                    headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.json()["value"] == 31
    assert fresh.headers["X-Lithotse-Version"] == Catalog(workspace).current("visits").version


def test_suppressed_value_is_null_and_flagged(workspace, lines):
    from lithotse_desktop.serve import start_server_thread
    from tests.cache.helpers import build_sample, sample_rows

    add_spec(workspace, {**VISITS, "suppress_below": 13})
    build_sample(workspace, lines, rows=sample_rows(per_group={"a": 15, "b": 12, "c": 20}))
    server = start_server_thread(workspace, 0)
    try:
        res = requests.get(server.url + "/api/v1/derivatives/visits/value",
                           params={"measure": "total", "token": workspace_token(workspace)})
        assert res.json()["value"] is None and res.json()["suppressed"] is True
    finally:
        server.stop()


def test_a_server_that_cannot_start_says_why_at_once(workspace, tmp_path, monkeypatch):
    import pytest

    from lithotse_desktop.errors import LithotseError
    from lithotse_desktop.serve import start_server_thread

    secrets = tmp_path / "secrets"
    monkeypatch.setenv("LITHOTSE_SECRETS_DIR", str(secrets))
    (secrets / "tls").mkdir(parents=True, mode=0o700)
    secrets.chmod(0o700)
    (secrets / "tls" / "lithotse-ca.key").write_text("not a key")
    (secrets / "tls" / "lithotse-ca.pem").write_text("not a certificate")
    started = time.monotonic()
    with pytest.raises(LithotseError, match="could not start on 127.0.0.1:") as failure:
        start_server_thread(workspace, 0, https_port=0, timeout=30)
    assert time.monotonic() - started < 10
    assert "within" not in str(failure.value), str(failure.value)


def test_errors_are_json_with_clear_messages(api):
    missing = api.get(api.base + "/derivatives/ghost/table")
    assert missing.status_code == 404 and "no derivative named 'ghost'" in missing.json()["error"]
    measure = api.get(api.base + "/derivatives/visits/value", params={"measure": "nope"})
    assert measure.status_code == 404 and "no measure 'nope'" in measure.json()["error"]
    mean = api.get(api.base + "/derivatives/visits/value", params={"measure": "avg"})
    assert mean.status_code == 422 and "cannot be added up" in mean.json()["error"]
    date = api.get(api.base + "/derivatives/visits/value", params={"measure": "n", "from": "soon"})
    assert date.status_code == 400 and "not an ISO date" in date.json()["error"]
    dim = api.get(api.base + "/derivatives/visits/value", params={"measure": "n", "dept": "x"})
    assert dim.status_code == 400 and "no dimension 'dept'" in dim.json()["error"]
    fmt = api.get(api.base + "/derivatives/visits/table", params={"format": "xml"})
    assert fmt.status_code == 400
    assert api.get(api.base + "/nothing").status_code == 404


def test_batch_values(api):
    lookups = [{"derivative": "visits", "measure": "n", "dims": {"grp": "a"}},
               {"derivative": "visits", "measure": "avg", "from": "2024-01-01", "to": "2024-01-01",
                "dims": {"grp": "b"}},
               {"derivative": "visits", "measure": "nope"}]
    res = api.post(api.base + "/values", json={"lookups": lookups})
    assert res.status_code == 200
    first, second, third = res.json()["results"]
    assert first["value"] == 45 and second["value"] == 6.5
    assert "no measure 'nope'" in third["error"]
    assert api.post(api.base + "/values", data=b"nonsense").status_code == 400


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_listens_on_loopback_only(api):
    port = api.server.port
    bound = {sock.getsockname()[0] for srv in api.server.server.servers for sock in srv.sockets}
    assert bound == {"127.0.0.1"}
    address = _outward_address()
    if address is not None:
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex((address, port)) != 0
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_token_command_and_serve_command(workspace, lines):
    from tests.cache.helpers import build_sample

    build_sample(workspace, lines)
    runner = CliRunner()
    group = main_with_cells()
    printed = runner.invoke(group, ["token"], catch_exceptions=False).output.strip()
    assert printed == workspace_token(workspace)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.serve.cli_main", "serve", "--port", str(port)],
                            env={**os.environ, "LITHOTSE_WORKSPACE": str(workspace.root)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                res = requests.get(f"http://127.0.0.1:{port}/api/v1/derivatives/visits/value",
                                   params={"measure": "n"}, headers={"Authorization": f"Bearer {printed}"})
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
        assert res.json()["value"] == 81
        rotated = runner.invoke(group, ["token", "--rotate"], catch_exceptions=False).output.strip()
        assert rotated != printed
    finally:
        proc.terminate()
        proc.wait(10)
    # stopped by SIGTERM, as a service manager stops it: the read is in the audit trail (the
    # thirty-fourth review found it lost; uvicorn ended the process before it was written)
    from lithotse_desktop import audit

    [record] = audit.entries(workspace, action="api-read")
    assert record["details"]["reads"] == [{"derivative": "visits", "version": res.json()["version"], "value": 1}]
