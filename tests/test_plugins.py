"""Plugin discovery through entry points, isolation of broken plugins, install and remove."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lithotse_desktop.errors import NotFound
from lithotse_desktop.plugins import PluginManager, reset_plugin_manager
from tests.conftest import run_lithotse
from tests.support.wheels import SHARED_VENV, build_plugin_wheel

pytestmark = SHARED_VENV

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
    manager = PluginManager()
    assert "echo" not in manager.connectors()
    assert manager.plugins["echo"].status == "disabled"
    monkeypatch.setenv("LITHOTSE_PLUGINS", "echo")
    assert "echo" in PluginManager().connectors()
    monkeypatch.delenv("LITHOTSE_PLUGINS")
    monkeypatch.setenv("LITHOTSE_DISABLE_PLUGINS", "echo")
    manager = PluginManager()
    assert "echo" not in manager.connectors()
    assert manager.plugins["echo"].disabled == "disabled by LITHOTSE_DISABLE_PLUGINS"


def test_disabled_plugins_are_listed_as_disabled_and_not_imported(plugin_path, monkeypatch):
    fake_distribution(plugin_path, "lt-good", "echo = lt_good", GOOD)
    fake_distribution(plugin_path, "lt-crashy", "crashy = lt_crashy", "raise RuntimeError('imported')\n")
    monkeypatch.setenv("LITHOTSE_DISABLE_PLUGINS", "crashy")
    rows = {r["name"]: r for r in json.loads(run_lithotse("plugins", "list", "--json").stdout)}
    assert (rows["crashy"]["status"], rows["crashy"]["error"]) == ("disabled", None)
    assert rows["crashy"]["disabled"] == "disabled by LITHOTSE_DISABLE_PLUGINS"
    assert (rows["echo"]["status"], rows["echo"]["disabled"]) == ("ok", None)
    text = run_lithotse("plugins", "list").stdout
    assert "[disabled: disabled by LITHOTSE_DISABLE_PLUGINS]" in text
    monkeypatch.delenv("LITHOTSE_DISABLE_PLUGINS")
    monkeypatch.setenv("LITHOTSE_PLUGINS", "echo")
    manager = PluginManager()
    assert manager.plugins["crashy"].disabled == "not named in LITHOTSE_PLUGINS"
    assert "lt_crashy" not in sys.modules
    with pytest.raises(NotFound, match=r"disabled plugins: crashy"):
        manager.connector("crashy-connector")
    doctor = json.loads(run_lithotse("doctor", "--json", env={"LITHOTSE_PLUGINS": "echo"}).stdout)
    assert {r["name"]: r["status"] for r in doctor["plugins"]}["crashy"] == "disabled"


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
    # Qt is the gui extra: pinned where installed, so a plugin cannot swap the app's Qt
    assert pins["pyside6-essentials"] == md.version("PySide6-Essentials")
    assert "pytest" not in pins  # the test extra is not the app's


# --- install checks what it installed -----------------------------------------------------------
def _uninstall(dist: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", dist], capture_output=True)


def _listed() -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(run_lithotse("plugins", "list", "--json").stdout)}


@pytest.mark.slow
def test_a_plugin_that_does_not_load_fails_the_install_and_stays_installed(tmp_path):
    wheel = build_plugin_wheel(tmp_path, "lithotse-broken", "lithotse_broken", "0.2.0", "broken",
                               "def check_licence():\n    raise RuntimeError('no licence key')\n\n\ncheck_licence()\n")
    try:
        proc = run_lithotse("plugins", "install", str(wheel))
        assert proc.returncode == 1 and proc.stdout == ""
        [line] = proc.stderr.strip().splitlines()
        assert ("plugin broken (lithotse-broken 0.2.0) does not load: "
                "failed to load: RuntimeError: no licence key") in line
        assert "It stays installed" in line and "`lithotse plugins remove broken`" in line
        assert line.endswith("(run with --debug for the traceback)")
        assert _listed()["broken"]["status"] == "error"
        debug = run_lithotse("--debug", "plugins", "install", str(wheel))
        assert debug.returncode == 1
        assert "Traceback (most recent call last)" in debug.stderr and "check_licence" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1].startswith("error: ")
        listed = run_lithotse("--debug", "plugins", "list")
        assert "check_licence" in listed.stderr and "[ERROR: failed to load" in listed.stdout
        removed = run_lithotse("plugins", "remove", "broken")
        assert removed.returncode == 0 and removed.stdout.strip() == "removed lithotse-broken"
    finally:
        _uninstall("lithotse-broken")


@pytest.mark.slow
def test_a_hook_that_raises_fails_the_install(tmp_path):
    source = GOOD.replace("return [Echo]", "raise LookupError('no connectors today')")
    wheel = build_plugin_wheel(tmp_path, "lithotse-hookfail", "lithotse_hookfail", "1.0", "hookfail", source)
    try:
        proc = run_lithotse("plugins", "install", str(wheel))
        assert proc.returncode == 1
        assert "hook lithotse_register_connectors raised LookupError: no connectors today" in proc.stderr
    finally:
        _uninstall("lithotse-hookfail")


@pytest.mark.slow
def test_a_distribution_without_a_lithotse_entry_point_is_not_a_plugin(tmp_path):
    wheel = build_plugin_wheel(tmp_path, "lithotse-notaplugin", "lithotse_notaplugin", "1.0", None, "X = 1\n")
    try:
        proc = run_lithotse("plugins", "install", str(wheel))
        assert proc.returncode == 1
        assert "declares no entry point in group 'lithotse', so it is not a Lithotse plugin" in proc.stderr
        assert f"{sys.executable} -m pip uninstall lithotse-notaplugin" in proc.stderr
    finally:
        _uninstall("lithotse-notaplugin")


@pytest.mark.slow
def test_editable_install_picks_up_fixes_and_edits_without_reinstalling(tmp_path, monkeypatch):
    """The author's loop: install -e a broken plugin, fix it, edit it; never install again."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # build with the setuptools installed here
    assert run_lithotse("plugins", "new", "edit-loop", cwd=tmp_path).returncode == 0
    module = tmp_path / "edit-loop" / "lithotse_edit_loop" / "__init__.py"
    good = module.read_text()
    module.write_text(good.replace("import json\n", "import json_which_is_not_there\n"))
    try:
        proc = run_lithotse("plugins", "install", "-e", str(tmp_path / "edit-loop"))
        assert proc.returncode == 1, proc.stdout
        assert "No module named 'json_which_is_not_there'" in proc.stderr
        module.write_text(good)
        row = _listed()["edit-loop"]
        assert row["status"] == "ok" and row["origin"].startswith("editable file://")
        assert row["connector_versions"] == {"edit-loop": "0.1.0"}
        module.write_text(good.replace('version = "0.1.0"', 'version = "0.2.0"'))
        # an edit of the same size in the same second as the last one would leave Python's cached
        # bytecode looking fresh (its check is mtime in seconds + size); a person edits later
        later = module.stat().st_mtime + 2
        os.utime(module, (later, later))
        assert _listed()["edit-loop"]["connector_versions"] == {"edit-loop": "0.2.0"}
        again = run_lithotse("plugins", "install", "-e", str(tmp_path / "edit-loop"))
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == f"installed {tmp_path / 'edit-loop'}: plugin edit-loop (connectors: edit-loop)"
    finally:
        _uninstall("lithotse-edit-loop")


def test_editable_install_needs_a_folder(tmp_path):
    wheel = build_plugin_wheel(tmp_path, "lithotse-x", "lithotse_x", "1.0", "x", GOOD)
    proc = run_lithotse("plugins", "install", "-e", str(wheel))
    assert proc.returncode == 1 and "an editable install (-e) needs a project folder" in proc.stderr


@pytest.mark.slow
def test_remove_warns_when_sources_use_its_connectors(tmp_path):
    wheel = build_plugin_wheel(tmp_path, "lithotse-echo2", "lithotse_echo2", "1.0", "echo2",
                               GOOD.replace('"echo"', '"echo2"'))
    ws = str(tmp_path / "ws")
    try:
        assert run_lithotse("plugins", "install", str(wheel)).returncode == 0
        assert run_lithotse("init", ws).returncode == 0
        for source in ("visits", "labs"):
            added = run_lithotse("--workspace", ws, "source", "add", source, "--connector", "echo2")
            assert added.returncode == 0, added.stderr
        proc = run_lithotse("--workspace", ws, "plugins", "remove", "echo2")
        assert proc.returncode == 0 and proc.stdout.strip() == "removed lithotse-echo2"
        assert (f"warning: source(s) labs, visits of workspace {ws} use connector(s) echo2 of "
                "lithotse-echo2") in proc.stderr
        assert run_lithotse("plugins", "install", str(wheel)).returncode == 0
        quiet = run_lithotse("--workspace", str(tmp_path / "no-workspace"), "plugins", "remove", "echo2")
        assert quiet.returncode == 0 and "warning" not in quiet.stderr
    finally:
        _uninstall("lithotse-echo2")


# --- --debug: the traceback behind a connector's one-line error ---------------------------------
BUGGY = """
import pathlib
import shutil
import tempfile

from lithotse_desktop.plugin import ConfigField, Connector, FieldType, Payload, StreamInfo, hookimpl

class Buggy(Connector):
    name = "buggy"
    fields = (ConfigField("mode", FieldType.TEXT),)

    def streams(self):
        if self.settings.get("mode") == "streams":
            return find_streams_with_bug()
        return [StreamInfo("s")]

    def fetch(self, request):
        if self.settings.get("mode") == "fetch":
            find_files_with_bug()
        folder = pathlib.Path(tempfile.mkdtemp())
        (folder / "one.txt").write_text("x")
        yield Payload("s", "one.txt", folder / "one.txt", cleanup=lambda: shutil.rmtree(folder))

    def read(self, obj):
        parse_with_bug()

def find_files_with_bug():
    return {}["missing"]

def find_streams_with_bug():
    return None + 1

def parse_with_bug():
    raise ZeroDivisionError("oops")

@hookimpl
def lithotse_register_connectors():
    return [Buggy]
"""


def test_debug_shows_the_traceback_of_a_connector_bug(plugin_path, tmp_path):
    fake_distribution(plugin_path, "lt-buggy", "buggy = lt_buggy", BUGGY)
    ws = str(tmp_path / "ws")
    assert run_lithotse("init", ws).returncode == 0
    for mode in ("fetch", "streams", "read"):
        added = run_lithotse("--workspace", ws, "source", "add", mode, "--connector", "buggy", "--set", f"mode={mode}")
        assert added.returncode == 0, added.stderr
    fields = {"fetch": "find_files_with_bug", "streams": "find_streams_with_bug", "read": "parse_with_bug"}
    expected = {
        "fetch": "error: connector buggy failed while fetching from source fetch (KeyError: 'missing')",
        "streams": "error: connector buggy failed to list the streams of source streams (TypeError: ",
        "read": "error: one.txt: connector buggy failed to read it (ZeroDivisionError: oops)",
    }
    for mode, function in fields.items():
        plain = run_lithotse("--workspace", ws, "import", mode, "--quiet")
        assert plain.returncode == 1
        [line] = plain.stderr.strip().splitlines()
        assert line.startswith(expected[mode]) and line.endswith("(run with --debug for the traceback)"), line
        assert function not in plain.stderr
        for args, env in ((["--debug"], {}), ([], {"LITHOTSE_DEBUG": "1"})):
            debug = run_lithotse(*args, "--workspace", ws, "import", mode, "--quiet", env=env)
            assert debug.returncode == 1
            assert "Traceback (most recent call last)" in debug.stderr and function in debug.stderr
            assert debug.stderr.strip().splitlines()[-1].startswith(expected[mode])
            assert "--debug for the traceback" not in debug.stderr
    streams = run_lithotse("--workspace", ws, "source", "streams", "streams")
    assert streams.returncode == 1 and streams.stderr.startswith("error: connector buggy failed to list")



def test_loading_the_bundled_plugins_leaves_requests_and_pyarrow_compute_unimported():
    """Every command loads every plugin: the fhir plugin imports requests (tens of milliseconds of
    each process) only when it calls a server, and the desktop app imports it itself; the plugins
    and the core's modules name pyarrow.compute (about 40 ms) and the HL7 library with
    ``deferred_import``, so only a command that computes with them imports them."""
    code = ("import sys; import lithotse_desktop.cli; from lithotse_desktop.plugins import get_plugin_manager; "
            "names = get_plugin_manager().connectors(); print('fhir-rest' in names, 'hl7v2' in names, "
            "*(m in sys.modules for m in ('requests', 'pyarrow.compute', 'hl7', 'python_calamine')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "False", "False", "False", "False"], done.stdout
