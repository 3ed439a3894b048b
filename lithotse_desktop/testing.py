"""Test helpers for plugin authors, and a pytest plugin that provides them as fixtures.

Installed with Lithotse and loaded by pytest through the ``pytest11`` entry point, so a plugin's
tests can use the fixtures without a conftest (with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, add
``pytest_plugins = ["lithotse_desktop.testing"]`` to the top-level conftest.py):

* ``lithotse_workspace``: a new workspace in a temp folder, with secrets kept in a private file
  store of that test (never the OS keyring), and ``LITHOTSE_WORKSPACE`` pointing at it;
* ``register_plugin``: ``register_plugin(module_or_object)`` makes a plugin take part for one
  test; Lithotse forgets it afterwards;
* :func:`import_rows` imports a source the way ``lithotse import`` does and reads the records
  back through the connector, and :func:`read_rows` reads a stream back.

Nothing here runs at import beyond pytest itself: Lithotse's modules are imported when a
fixture or helper is used, so loading the plugin costs every pytest session nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .plugins import PluginManager
    from .raw.manifest import Manifest
    from .workspace import Workspace

__all__ = ["ImportedRows", "import_rows", "read_rows", "lithotse_workspace", "register_plugin"]


@dataclass
class ImportedRows:
    """What :func:`import_rows` did: the new landings and every stream's records read back."""

    landings: list[Manifest] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def read_rows(workspace: Workspace, source: str, stream: str, *, start: str | dt.date | None = None,
              end: str | dt.date | None = None) -> list[dict[str, Any]]:
    """A stream's landed records as the core reads them back: each object once, its rows inside
    the ranges it was landed for (and inside ``start``..``end``), in landing order."""
    from .dates import DateRange
    from .raw import read_stream

    rng = DateRange.parse(start, end)
    rows: list[dict[str, Any]] = []
    for batch in read_stream(workspace, source, stream, date_range=rng if rng.bounded else None):
        rows.extend(batch.to_pylist())
    return rows


def import_rows(workspace: Workspace, source: str, *, connector: str | None = None,
                settings: Mapping[str, Any] | None = None, secrets: Mapping[str, str] | None = None,
                start: str | dt.date | None = None, end: str | dt.date | None = None,
                streams: list[str] | None = None, full: bool = False) -> ImportedRows:
    """Import ``source`` for ``start``..``end`` as ``lithotse import`` does, then read back the records.

    With ``connector`` (and its ``settings`` and ``secrets``) the source is configured first, or
    reconfigured; without it, the source configured before is imported again, incrementally.
    ``rows`` holds every stream of the source that has landings, read with :func:`read_rows`.
    Bad input raises the connector's InputError, and then nothing has landed.
    """
    from .dates import DateRange
    from .plugins import get_plugin_manager
    from .raw import run_import
    from .raw.index import open_index

    if connector is not None:
        cls = get_plugin_manager().connector(connector)
        given = {k: str(v) if isinstance(v, Path) else v for k, v in (settings or {}).items()}
        clean = cls.validate_settings({**given, **(secrets or {})})
        kept = {k: v for k, v in clean.items() if k in given and v is not None}
        workspace.add_source(source, connector, kept, dict(secrets or {}), replace=True)
    elif settings is not None or secrets is not None:
        raise ValueError("settings and secrets need connector=NAME (they configure the source)")
    result = run_import(workspace, source, DateRange.parse(start, end), streams=streams, full=full)
    out = ImportedRows([item.manifest for item in result.landings])
    index = open_index(workspace)
    try:
        landed = sorted({m.stream for m in index.landings(source)})
    finally:
        index.close()
    for stream in landed:
        out.rows[stream] = read_rows(workspace, source, stream)
    return out


@pytest.fixture
def lithotse_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A fresh workspace in ``tmp_path / "workspace"``; secrets go to ``tmp_path / "secrets"``."""
    from . import secrets
    from .workspace import Workspace

    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "file")
    monkeypatch.setenv("LITHOTSE_SECRETS_DIR", str(tmp_path / "secrets"))
    secrets.reset()
    ws = Workspace.create(tmp_path / "workspace")
    monkeypatch.setenv("LITHOTSE_WORKSPACE", str(ws.root))
    yield ws
    secrets.reset()


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., PluginManager]]:
    """``register_plugin(plugin, name=None)``: make a plugin module (or object with ``@hookimpl``
    functions) take part in this test, beside the installed plugins; returns the plugin manager.

    A plugin that is installed already (its entry point loaded the same module) is used as it
    is. One that does not load fails the test with its error. After the test Lithotse forgets
    every plugin, and the next use loads the installed ones afresh.
    """
    from .plugins import get_plugin_manager, reset_plugin_manager

    reset_plugin_manager()

    def register(plugin: object, name: str | None = None) -> PluginManager:
        manager = get_plugin_manager()
        if not manager.is_registered(plugin):
            label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            manager.register(plugin, label)
        manager.connectors()  # runs the registration hooks, recording a failing one
        label = manager.name_of(plugin)
        info = manager.plugins.get(label) if label else None
        if info is not None and info.error:
            pytest.fail(f"plugin {label} does not load: {info.error}\n{info.traceback or ''}",
                        pytrace=False)
        return manager

    yield register
    reset_plugin_manager()
