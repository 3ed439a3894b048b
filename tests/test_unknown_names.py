"""Every command that takes a derivative, source, store, connector or plugin name refuses an
unknown one: exit 1, the name, and the names that would have worked."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lithotse_desktop.cli import main
from lithotse_desktop.plugins import ENTRY_POINT_GROUP
from tests.cache.helpers import _close_caches, build_sample  # noqa: F401  (fixture)
from tests.derive.conftest import lines  # noqa: F401  (fixture)

DERIVATIVES = ["visits"]
SOURCES = ["vals"]
STORES = ["local", "team"]

CASES = {
    "derive build": (["derive", "build", "nosuch"], "derivative", DERIVATIVES),
    "derive build --full": (["derive", "build", "nosuch", "--full", "--json"], "derivative", DERIVATIVES),
    "derive show": (["derive", "show", "nosuch"], "derivative", DERIVATIVES),
    "derive show --json": (["derive", "show", "nosuch", "--json"], "derivative", DERIVATIVES),
    "derive preview": (["derive", "preview", "nosuch"], "derivative", DERIVATIVES),
    "derive lineage": (["derive", "lineage", "nosuch", "--json"], "derivative", DERIVATIVES),
    "derive export": (["derive", "export", "nosuch", "--format", "csv", "-o", "out.csv"], "derivative",
                      DERIVATIVES),
    "derive rm": (["derive", "rm", "nosuch"], "derivative", DERIVATIVES),
    "derive add (input derivative)": (["derive", "add", "--file", "by-derivative.json"], "derivative",
                                      DERIVATIVES),
    "derive add (input source)": (["derive", "add", "--file", "by-source.json"], "source", SOURCES),
    "excel bind": (["excel", "bind", "report.xlsx", "nosuch"], "derivative", DERIVATIVES),
    "import": (["import", "nosuch"], "source", SOURCES),
    "import --stream": (["import", "vals", "--stream", "nosuch"], "stream", ["values"]),
    "source streams": (["source", "streams", "nosuch"], "source", SOURCES),
    "source rm": (["source", "rm", "nosuch"], "source", SOURCES),
    "raw ls --source": (["raw", "ls", "--source", "nosuch", "--json"], "source", SOURCES),
    "source add --connector": (["source", "add", "x", "--connector", "nosuch", "--set", "path=."],
                               "connector", ["csv", "lines"]),
    "sync push --remote": (["sync", "push", "--remote", "nosuch"], "store", STORES),
    "sync pull --remote": (["sync", "pull", "--remote", "nosuch", "--json"], "store", STORES),
    "sync status --remote": (["sync", "status", "--remote", "nosuch"], "store", STORES),
    "sync status ([sync] remote)": (["sync", "status"], "store", STORES),
    "plugins remove": (["plugins", "remove", "nosuch"], "plugin", ["csv", "fhir", "hl7v2"]),
}


def _files(folder) -> list:
    """Files under the test folder, without the L3 cache's SQLite files (a lookup may open them)."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if "cache" not in p.parts and not p.suffix.startswith((".sqlite", ".db")))


@pytest.fixture
def named_workspace(workspace, lines, tmp_path, monkeypatch):  # noqa: F811 - the fixture imported above, by name
    """Known names: derivative visits, source vals, stores local and team."""
    build_sample(workspace, lines)
    workspace.config["stores"]["team"] = {"url": str(tmp_path / "team-store")}
    workspace.config["sync"] = {"remote": "nosuch"}
    workspace.save()
    monkeypatch.chdir(tmp_path)
    base = {"kind": "aggregate", "measures": [{"fn": "count", "as": "n"}]}
    (tmp_path / "by-derivative.json").write_text(json.dumps({**base, "name": "x", "input": {"derivative": "nosuch"}}))
    (tmp_path / "by-source.json").write_text(json.dumps({**base, "name": "y",
                                                         "input": {"source": "nosuch", "stream": "values"}}))
    return workspace


def test_every_name_taking_command_is_covered():
    """A new command taking a NAME argument must be added to CASES (or say why it takes none)."""
    takes_no_known_name = {"init": "creates", "source add": "creates (its --connector is covered)",
                           "plugins install": "a distribution name, a wheel or a folder for pip",
                           "plugins new": "creates a plugin folder of that name",
                           "raw show": "a landing id", "sof-test": "a folder", "excel refresh": "a file",
                           "excel install-addin": "no name"}
    covered = {key.split(" (")[0].split(" --")[0] for key in CASES}

    def walk(group, prefix=""):
        for name, command in group.commands.items():
            path = f"{prefix}{name}"
            if hasattr(command, "commands"):
                yield from walk(command, path + " ")
            elif any(getattr(p, "name", "") in ("name", "derivative", "remote") for p in command.params):
                yield path

    missing = [c for c in walk(main) if c not in covered and c not in takes_no_known_name]
    assert missing == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unknown_name_is_refused_with_the_known_ones(named_workspace, case):
    args, what, known = CASES[case]
    if what == "plugin":
        import importlib.metadata as md

        installed = {ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
        assert set(known) <= installed
    before = _files(named_workspace.root.parent)
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]
    assert "'nosuch'" in line and what in line, line
    listed = line.split("; ", 1)[1]
    for name in known:
        assert name in listed, (name, line)
    assert _files(named_workspace.root.parent) == before, "a refused name writes nothing (no workbook, no export)"
