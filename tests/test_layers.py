"""The architecture's rules, where a developer running pytest alone sees them break.

The tier contracts live in pyproject.toml ([tool.importlinter]) and are checked by running
``lint-imports`` itself; the first-party plugins are also scanned here directly, and the
built-ins are shown to come through the same hooks as third-party plugins.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lithotse_desktop
from lithotse_desktop import plugin
from lithotse_desktop.hookspecs import hookimpl
from lithotse_desktop.plugins import BUILTIN_ORIGIN, PluginManager, open_store, reset_plugin_manager
from tests.conftest import REPO

PLUGIN_API = {"hookimpl", "Connector", "ConfigField", "FieldType", "StreamInfo", "FetchRequest", "Payload",
              "RawObject", "FileTracker", "files_to_fetch", "list_files", "sha256_file", "DateRange",
              "Progress", "LithotseError", "ConfigError", "InputError", "NotFound", "Store", "ObjectInfo",
              "PreconditionFailed", "CacheBackend", "ANY", "is_ref", "load_secret"}


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), "import-linter is missing: install the test extra (bash scripts/setup.sh --test)"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_core_module_sits_in_a_tier():
    """The tier contract names every top-level module (import-linter checks it is exhaustive too)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    [tiers] = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "tiers"]
    listed = {name.strip() for layer in tiers["layers"] for name in layer.replace(":", "|").split("|")}
    root = Path(lithotse_desktop.__file__).parent
    present = {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    present |= {p.parent.name for p in root.glob("*/__init__.py")}
    assert listed == present


def core_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of lithotse_desktop in a file, in any form."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "lithotse_desktop" else \
                [f"lithotse_desktop.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.split(".")[0] == "lithotse_desktop"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "lithotse_desktop"]
    return found


def test_first_party_plugins_import_only_the_public_module():
    files = sorted((REPO / "plugins").glob("*/*/**/*.py"))
    assert len({f.relative_to(REPO / "plugins").parts[0] for f in files}) >= 5
    wrong = [f"{f.relative_to(REPO)}:{line}: {module}" for f in files for line, module in core_imports(f)
             if module != "lithotse_desktop.plugin"]
    assert wrong == []
    assert any(core_imports(f) for f in files)


def test_the_scan_sees_every_form_of_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import lithotse_desktop.errors\nfrom lithotse_desktop import cache\n"
                     "from lithotse_desktop.plugin import Store\n"
                     "def f():\n    from lithotse_desktop.dates import DateRange\n")
    assert [m for _line, m in core_imports(probe)] == ["lithotse_desktop.errors", "lithotse_desktop.cache",
                                                      "lithotse_desktop.plugin", "lithotse_desktop.dates"]


def test_the_public_plugin_module_offers_what_plugins_need():
    assert PLUGIN_API <= set(plugin.__all__)
    assert all(getattr(plugin, name, None) is not None for name in plugin.__all__)
    assert issubclass(plugin.PreconditionFailed, plugin.LithotseError)


@pytest.fixture
def manager(monkeypatch):
    monkeypatch.setenv("LITHOTSE_PLUGINS", "")  # no entry point at all: built-ins only
    reset_plugin_manager()
    yield PluginManager()
    reset_plugin_manager()


def test_builtins_register_through_the_hooks_and_always_load(manager, tmp_path):
    builtins = {n: i for n, i in manager.plugins.items() if i.origin == BUILTIN_ORIGIN}
    assert set(builtins) == {"builtin-stores", "builtin-cache", "builtin-engines"}
    assert all(i.error is None and i.distribution is None for i in builtins.values())
    assert set(manager.cache_backends()) == {"embedded"}
    assert set(manager.engines()) == {"duckdb", "spark"}
    store = manager.open_store("data", {}, tmp_path)
    store.put_bytes("a/b.txt", b"x")
    assert (tmp_path / "data" / "a" / "b.txt").read_bytes() == b"x"
    assert manager.open_store("nosuch://x", {}, tmp_path) is None


def test_a_plugin_adds_stores_and_backends_but_cannot_take_over_builtins(manager, tmp_path):
    taken = []

    class Greedy:
        @hookimpl
        def lithotse_open_store(self, url, options):
            taken.append(url)
            return f"greedy store for {url}"

        @hookimpl
        def lithotse_register_cache_backends(self):
            return {"embedded": "greedy", "memo": "memo-factory"}

        @hookimpl
        def lithotse_register_engines(self):
            return {"spark": "greedy", "polars": "polars-factory"}

    manager.register(Greedy(), "greedy-test")
    assert type(manager.open_store("data", {}, tmp_path)).__name__ == "LocalStore"
    assert taken == []
    assert manager.open_store("mem://x", {}, tmp_path) == "greedy store for mem://x"
    backends = manager.cache_backends()
    assert backends["memo"] == "memo-factory" and backends["embedded"] != "greedy"
    engines = manager.engines()
    assert engines["polars"] == "polars-factory" and engines["spark"] != "greedy"


def test_a_store_error_reaches_the_user(manager, tmp_path, monkeypatch):
    monkeypatch.setattr("lithotse_desktop.plugins._manager", manager)
    with pytest.raises(lithotse_desktop.errors.ConfigError, match="no store backend handles 'nosuch://x'"):
        open_store("nosuch://x", base=tmp_path)
    with pytest.raises(lithotse_desktop.errors.ConfigError, match="unknown store option.*secret_key"):
        open_store("s3://bucket/prefix", base=tmp_path, options={"secret_key": "x"})
    assert manager.plugins["builtin-stores"].error is None


def test_the_core_imports_without_qt_and_the_desktop_app_says_what_is_missing():
    script = """
import importlib, pkgutil, sys
sys.modules["PySide6"] = None  # as if the gui extra were not installed
import lithotse_desktop
core = [m.name for m in pkgutil.walk_packages(lithotse_desktop.__path__, "lithotse_desktop.")
        if not m.name.startswith("lithotse_desktop.gui.") and m.name != "lithotse_desktop.__main__"]
for name in core:
    importlib.import_module(name)
from lithotse_desktop.gui.app import main
print(len(core), "modules")
sys.exit(main(["--workspace", sys.argv[1]]))
"""
    proc = subprocess.run([sys.executable, "-c", script, str(REPO / "no-such-workspace")], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert int(proc.stdout.split()[0]) > 50
    assert "the desktop app needs PySide6" in proc.stderr
    assert "pip install 'lithotse-desktop[gui]'" in proc.stderr
    assert "Traceback" not in proc.stderr
