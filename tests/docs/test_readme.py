"""Every ``lithotse …`` command the READMEs show runs, in README order, against one test workspace
(see :mod:`tests.docs.readme_runner` for how lines are expanded, mapped to fixtures and checked)."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import pytest

from lithotse_desktop.plugins import reset_plugin_manager
from tests.cache.helpers import _close_caches, free_port  # noqa: F401  (fixture)
from tests.docs.readme_runner import (
    FHIR_TOKEN,
    NOT_RUN,
    PLUGIN_READMES,
    README,
    REPO,
    Session,
    _json,
    assert_no_secret_shown,
    command_path,
    run_lines,
    write_fixtures,
)
from tests.docs.shell_doc import expand, shell_lines
from tests.plugins.fhir.fhir_server import FhirTestServer
from tests.support.wheels import SHARED_VENV

pytestmark = SHARED_VENV


@pytest.fixture
def session(tmp_path, monkeypatch, seaweed):
    cwd = tmp_path / "user"
    cwd.mkdir()
    write_fixtures(cwd)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_DATA_HOME", str(cwd / "xdg-data"))
    monkeypatch.setenv("HOME", str(cwd / "home"))  # excel trust-cert writes the browsers' NSS database there
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(cwd / "wheels"))
    monkeypatch.delenv("LITHOTSE_WORKSPACE", raising=False)
    monkeypatch.delenv("LITHOTSE_PLUGINS", raising=False)
    reset_plugin_manager()
    samples = REPO / "tests" / "data" / "fhir" / "bulk-ndjson-smart-10-patients"
    with FhirTestServer.from_folders([samples], token=FHIR_TOKEN) as fhir:
        s = Session(cwd, monkeypatch, seaweed, fhir, free_port(), seaweed.new_prefix())
        s.secrets = [FHIR_TOKEN, seaweed.credentials["client"]["secret_access_key"]]
        try:
            yield s
        finally:
            reset_plugin_manager()
            try:
                md.distribution("lithotse-foo")
            except md.PackageNotFoundError:
                pass
            else:
                subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "lithotse-foo"],
                               capture_output=True)


def test_readme_commands_run_in_order(session):
    lines = shell_lines(README)
    run_lines(session, lines)
    documented = {command_path(c.words[1:]) for line in lines if line.text.startswith("lithotse ")
                  for c in expand(line.text)}
    assert documented - set(NOT_RUN) <= {command_path(r.split()) for r in session.ran}
    assert "curl" in session.ran
    assert_no_secret_shown(session)


@pytest.mark.parametrize("readme", PLUGIN_READMES, ids=lambda p: p.parent.name)
def test_plugin_readme_commands_run(session, readme):
    session.cli(["init", str(session.cwd / "plugin-ws")])
    session.workspace = session.cwd / "plugin-ws"
    session.monkeypatch.setenv("LITHOTSE_WORKSPACE", str(session.workspace))
    lines = shell_lines(readme)
    run_lines(session, lines)
    commands = [line for line in lines if line.text.startswith("lithotse ")]
    assert len(session.ran) == len([c for line in commands for c in expand(line.text)])
    if readme.parent.name == "lithotse-hl7v2":
        landed = _json(session.cli(["raw", "ls", "--json", "--source", "wards"]))
        assert {"messages", "adt", "oru"} <= {r["stream"] for r in landed}
    assert_no_secret_shown(session)
