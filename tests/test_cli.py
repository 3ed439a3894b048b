"""The command line as a user types it: init, sources with secrets, import, raw listings, derive."""

from __future__ import annotations

import json

import pytest

from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.secrets import load_secret, secret_ref
from lithotse_desktop.workspace import CONFIG_NAME
from tests.support import lines_connector


@pytest.fixture(autouse=True)
def lines_plugin():
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    yield
    reset_plugin_manager()


def test_init_and_workspace_option(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("LITHOTSE_WORKSPACE", raising=False)
    target = tmp_path / "w1"
    cli("init", str(target))
    assert (target / CONFIG_NAME).exists()
    cli("source", "list", "--workspace", str(target))
    cli("--workspace", str(target), "source", "list")
    result = cli("source", "list", "--workspace", str(tmp_path / "nowhere"), expect=1)
    assert "not a Lithotse workspace" in result.output


def test_default_workspace_uses_platform_data_dir(monkeypatch, tmp_path):
    from lithotse_desktop.workspace import default_workspace_dir

    monkeypatch.delenv("LITHOTSE_WORKSPACE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_workspace_dir() == tmp_path / "xdg" / "lithotse" / "workspace"


def test_secret_from_stdin_goes_to_secrets_store_not_config(cli, workspace, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    result = cli("source", "add", "vals", "--connector", "lines", "--set", f"path={folder}",
                 "--set", "token=-", input="s3cr3t-value\n")
    assert "secrets in the secrets file" in result.stdout and "s3cr3t-value" not in result.output
    config = (workspace.root / CONFIG_NAME).read_text()
    assert "s3cr3t-value" not in config
    assert load_secret(secret_ref(workspace.id, "source/vals/token")) == "s3cr3t-value"
    listed = json.loads(cli("source", "list", "--json").output)
    assert listed == [{"name": "vals", "connector": "lines", "settings": {"path": str(folder)},
                       "secrets": ["token"]}]


def test_secret_on_command_line_is_refused(cli, workspace):
    result = cli("source", "add", "vals", "--connector", "lines", "--set", "path=/x", "--set", "token=abc",
                 expect=1)
    assert "not accepted on the command line" in result.output


def test_unknown_setting_and_connector(cli, workspace):
    assert "unknown setting(s) colour" in cli("source", "add", "v", "--connector", "lines", "--set", "path=/x",
                                              "--set", "colour=red", expect=1).output
    assert "no connector named 'nope'" in cli("source", "add", "v", "--connector", "nope", expect=1).output


def test_import_raw_ls_show_and_derive(cli, workspace, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1,x\n2024-01-05,2,x\n2024-03-01,3,y\n")
    cli("source", "add", "vals", "--connector", "lines", "--set", f"path={folder}")
    streams = json.loads(cli("source", "streams", "vals", "--json").output)
    assert streams[0]["name"] == "values" and streams[0]["date_field"] == "day"
    out = cli("import", "vals", "--from", "2024-01-01", "--to", "2024-01-31").output
    assert "3 records (2 in range, 1 outside)" in out
    again = cli("import", "vals", "--from", "2024-01-01", "--to", "2024-01-31").output
    assert "nothing new" in again
    listed = json.loads(cli("raw", "ls", "--json").output)
    assert len(listed) == 1 and listed[0]["records_in_range"] == 2
    shown = json.loads(cli("raw", "show", listed[0]["id"][:12], "--json").output)
    assert shown["sha256"] == listed[0]["sha256"]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "per_grp", "kind": "aggregate",
                                "input": {"source": "vals", "stream": "values"},
                                "group_by": ["grp"], "measures": [{"fn": "sum", "column": "value", "as": "total"}],
                                "suppress_below": 0}))
    cli("derive", "add", "--file", str(spec))
    assert "built version" in cli("derive", "build", "per_grp").output
    rows = json.loads(cli("derive", "show", "per_grp", "--json").output)["rows"]
    assert rows == [{"grp": "x", "total": 3, "suppressed": False}]
    (folder / "b.txt").write_text("2024-01-09,10,x\n")
    built = json.loads(cli("import", "vals", "--from", "2024-01-01", "--to", "2024-01-31", "--json").output)
    assert [b["name"] for b in built["builds"]] == ["per_grp"]
    assert json.loads(cli("derive", "show", "per_grp", "--json").output)["rows"][0]["total"] == 13
    for fmt in ("csv", "parquet", "xlsx"):
        out_file = tmp_path / f"out.{fmt}"
        cli("derive", "export", "per_grp", "--format", fmt, "-o", str(out_file))
        assert out_file.stat().st_size > 0
    assert "x,13" in (tmp_path / "out.csv").read_text().replace('"', "")
    lineage = json.loads(cli("derive", "lineage", "per_grp", "--json").output)
    assert len(lineage["inputs"]["input"]["objects"]) == 2
    listed = json.loads(cli("derive", "list", "--json").output)
    assert listed[0]["name"] == "per_grp" and listed[0]["rows"] == 1
    preview = json.loads(cli("derive", "preview", "per_grp", "--rows", "5", "--json").output)
    assert preview["total_rows"] == 1
    cli("derive", "rm", "per_grp")
    assert json.loads(cli("derive", "list", "--json").output) == []


def test_bad_input_exits_nonzero_with_location(cli, workspace, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1\n2024-13-01,2\n")
    cli("source", "add", "vals", "--connector", "lines", "--set", f"path={folder}")
    result = cli("import", "vals", expect=1)
    assert "a.txt, line 2" in result.output
    assert json.loads(cli("raw", "ls", "--json").output) == []


def test_bad_dates_are_clear(cli, workspace):
    assert "not an ISO date" in cli("import", "x", "--from", "2024-31-01", expect=1).output


def test_audit_records_imports_builds_and_exports(cli, workspace, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1,x\n")
    cli("source", "add", "vals", "--connector", "lines", "--set", f"path={folder}")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "n", "kind": "aggregate", "input": {"source": "vals", "stream": "values"},
                                "measures": [{"fn": "count", "as": "n"}], "suppress_below": 0}))
    cli("derive", "add", "--file", str(spec))
    cli("import", "vals")
    cli("derive", "export", "n", "--format", "csv", "-o", str(tmp_path / "n.csv"))
    rows = json.loads(cli("audit", "--json").output)
    assert [r["action"] for r in rows] == ["import", "publish", "export"]
    assert rows[0]["objects"][0].startswith("raw/vals/")
    assert rows[1]["details"]["derivative"] == "n"
    assert all(r["who"] and r["at"] for r in rows)
    assert "export" in cli("audit").output
