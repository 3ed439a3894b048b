"""Plugin discovery through entry points, isolation of broken plugins, install and remove."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lithotse_desktop.plugins import PluginManager, reset_plugin_manager
from tests.conftest import run_lithotse


def fake_distribution(root: Path, dist: str, entry: str, module_src: str) -> None:
    """A distribution importlib.metadata can find on sys.path: a module and its .dist-info."""
    module = entry.split("=", 1)[1].strip()
    (root / f"{module}.py").write_text(textwrap.dedent(module_src))
    info = root / f"{dist.replace('-', '_')}-9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 9.9\n")
    (info / "entry_points.txt").write_text(f"[lithotse]\n{entry}\n")


GOOD = """
from lithotse_desktop.connectors import Connector, StreamInfo
from lithotse_desktop.hookspecs import hookimpl

class Echo(Connector):
    name = "echo"
    version = "2.1"
    def streams(self):
        return [StreamInfo("s")]

@hookimpl
def lithotse_register_connectors():
    return [Echo]
"""


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", f"{root}:{Path(__file__).resolve().parent.parent}")
    reset_plugin_manager()
    yield root
    reset_plugin_manager()


def test_broken_plugins_are_reported_and_the_rest_load(plugin_path):
    fake_distribution(plugin_path, "lt-good", "echo = lt_good", GOOD)
    fake_distribution(plugin_path, "lt-import", "badimport = lt_badimport", "import no_such_module_xyz\n")
    fake_distribution(plugin_path, "lt-hook", "badhook = lt_badhook", """
        from lithotse_desktop.hookspecs import hookimpl
        @hookimpl
        def lithotse_register_connectors():
            raise RuntimeError("boom")
    """)
    manager = PluginManager()
    assert "echo" in manager.connectors()
    assert manager.connector("echo").version == "2.1"
    assert "No module named 'no_such_module_xyz'" in manager.plugins["badimport"].error
    assert "boom" in manager.plugins["badhook"].error
    assert manager.plugins["echo"].error is None
    assert manager.plugins["echo"].distribution == "lt-good"


def test_env_restricts_which_plugins_load(plugin_path, monkeypatch):
    fake_distribution(plugin_path, "lt-good", "echo = lt_good", GOOD)
    monkeypatch.setenv("LITHOTSE_PLUGINS", "something-else")
    assert "echo" not in PluginManager().plugins
    monkeypatch.setenv("LITHOTSE_PLUGINS", "echo")
    assert "echo" in PluginManager().connectors()
    monkeypatch.delenv("LITHOTSE_PLUGINS")
    monkeypatch.setenv("LITHOTSE_DISABLE_PLUGINS", "echo")
    assert "echo" not in PluginManager().plugins


def test_cli_lists_plugins_as_json_with_errors(plugin_path):
    fake_distribution(plugin_path, "lt-good", "echo = lt_good", GOOD)
    fake_distribution(plugin_path, "lt-import", "badimport = lt_badimport", "raise SyntaxError('nope')\n")
    proc = run_lithotse("plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["echo"]["connectors"] == ["echo"] and rows["echo"]["version"] == "9.9"
    assert rows["echo"]["connector_versions"] == {"echo": "2.1"}
    assert rows["badimport"]["status"] == "error" and "nope" in rows["badimport"]["error"]
    text = run_lithotse("plugins", "list")
    assert "ERROR" in text.stdout and "echo" in text.stdout


def test_install_wheel_then_remove(tmp_path):
    src = tmp_path / "src"
    (src / "lithotse_wheeltest").mkdir(parents=True)
    (src / "lithotse_wheeltest" / "__init__.py").write_text(textwrap.dedent(GOOD).replace('"echo"', '"wheeltest"'))
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "lithotse-wheeltest"
        version = "0.3.0"
        [project.entry-points.lithotse]
        wheeltest = "lithotse_wheeltest"
    """))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True)
    [wheel] = wheels.glob("*.whl")
    installed = run_lithotse("plugins", "install", str(wheel))
    try:
        assert installed.returncode == 0, installed.stderr
        assert "wheeltest" in installed.stdout
        rows = {r["name"]: r for r in json.loads(run_lithotse("plugins", "list", "--json").stdout)}
        assert rows["wheeltest"]["version"] == "0.3.0"
        assert rows["wheeltest"]["origin"].startswith("file://")
    finally:
        removed = run_lithotse("plugins", "remove", "wheeltest")
    assert removed.returncode == 0, removed.stderr
    rows = {r["name"] for r in json.loads(run_lithotse("plugins", "list", "--json").stdout)}
    assert "wheeltest" not in rows


def test_install_unknown_path_is_clear():
    proc = run_lithotse("plugins", "install", "/nonexistent/thing.whl")
    assert proc.returncode == 1
    assert "no such wheel file or folder" in proc.stderr


def test_constraints_pin_core_dependencies():
    from lithotse_desktop.pluginstall import core_constraints

    pins = dict(line.split("==") for line in core_constraints())
    assert "pyarrow" in pins and "duckdb" in pins and "pluggy" in pins
