"""Everything a Lithotse plugin imports, from one module that stays stable for plugin authors.

A plugin is a Python distribution with an entry point in the ``lithotse`` group whose module
holds functions marked ``@hookimpl`` (the hooks are in :mod:`lithotse_desktop.hookspecs`)::

    from lithotse_desktop.plugin import Connector, StreamInfo, hookimpl

    @hookimpl
    def lithotse_register_connectors():
        return [MyConnector]

What it offers, by kind of plugin:

- connectors: :class:`Connector` with its typed settings (:class:`ConfigField`,
  :class:`FieldType`) and streams (:class:`StreamInfo`); ``fetch`` gets a
  :class:`FetchRequest` and yields :class:`Payload` objects, ``read`` gets a
  :class:`RawObject` (the optional ``native_read`` describes an object for an engine that
  reads it itself: :class:`NativeRead`, :class:`NativeColumn`); file sources use
  :class:`FileTracker`, :func:`files_to_fetch`, :func:`list_files` and :func:`sha256_file`, and
  tables find their person key with :func:`person_column` (and refuse a setting that fits none of their tables with
  :func:`missing_person_column`); :class:`DateRange` and :class:`Progress` (report, cancel) come with
  each request; header text becomes column names by one rule with :func:`header_names` (never
  one of :data:`CORE_COLUMNS`), comma-separated settings that name columns are read with
  :func:`split_names`, and :func:`is_total_label` tells a total row;
- stores: the :class:`Store` interface with :class:`ObjectInfo`, :func:`check_key`, and the
  errors :class:`PreconditionFailed` (a conditional write lost) and :class:`AccessDenied`;
- cache backends: the :class:`CacheBackend` contract and its :data:`ANY` marker;
- listeners of ``lithotse_version_published``: :class:`Workspace`, :class:`Version`;
- engines: :class:`Engine` opening an :class:`EngineSession` per build, whose SQL is compiled in
  its :class:`Dialect`, refusing an inexact measure with :class:`SpecError`
  (``lithotse_register_engines``; the built-in ``spark`` engine is an example);
- a plugin running DuckDB itself: :func:`duckdb_settings`, the workspace's ``[limits]``
  (``memory_limit``, ``temp_directory``) to put on its connection, and :func:`interruptible`,
  which hands the connection (or cursor) to the job running, so Cancel interrupts its query;
- every plugin: the errors users see (:class:`InputError` names a file and line,
  :class:`ConfigError` a setting), secret references (:func:`is_ref`, :func:`load_secret`) and
  :func:`deferred_import` for a library only some calls need (every command loads every plugin,
  so what a plugin imports at its top delays them all).

The first-party plugins in ``plugins/`` import nothing else from Lithotse; a test and the
import-linter contract in ``pyproject.toml`` keep it so. ``docs/plugins.md`` is the guide: a
tutorial, the connector contract, store and cache plugins.
"""

from typing import TYPE_CHECKING, Any

from .cache.backends import ANY, CacheBackend
from .connectors import (
    ConfigField,
    Connector,
    FetchRequest,
    FieldType,
    FileTracker,
    NativeColumn,
    NativeRead,
    Payload,
    RawObject,
    StreamInfo,
    files_to_fetch,
    list_files,
    missing_person_column,
    person_column,
    sha256_file,
)
from .dates import DateRange
from .deferred import deferred_import
from .engine import active_settings as duckdb_settings
from .errors import Cancelled, ConfigError, CorruptObject, InputError, LithotseError, NotFound
from .hookspecs import hookimpl
from .interrupts import interruptible
from .names import CORE_COLUMNS, header_names, is_total_label, split_names
from .progress import Progress
from .secrets import SecretMissing, is_ref, load_secret
from .storage import AccessDenied, ObjectInfo, PreconditionFailed, Store, check_key
from .workspace import Workspace

if TYPE_CHECKING:
    from .derive.catalog import Version
    from .derive.compile import Dialect
    from .derive.engines import Engine, EngineSession
    from .derive.spec import SpecError

__all__ = [
    "ANY", "CORE_COLUMNS", "AccessDenied", "CacheBackend", "Cancelled", "ConfigError", "ConfigField",
    "Connector", "CorruptObject", "DateRange", "Dialect", "Engine", "EngineSession", "FetchRequest", "FieldType",
    "FileTracker", "InputError",
    "LithotseError", "NativeColumn", "NativeRead", "NotFound", "ObjectInfo", "Payload", "PreconditionFailed",
    "Progress", "RawObject",
    "SecretMissing", "SpecError", "Store", "StreamInfo", "Version", "Workspace", "check_key", "duckdb_settings",
    "deferred_import", "files_to_fetch", "header_names", "hookimpl", "interruptible", "is_ref", "is_total_label",
    "list_files", "load_secret",
    "missing_person_column", "person_column",
    "sha256_file", "split_names",
]


def __getattr__(name: str) -> Any:
    """The engine API's names, imported on first use: they live in the derive package, which a
    connector plugin never needs, and every command loads the plugins (an import among them)."""
    import importlib

    homes = {"Version": "catalog", "Dialect": "compile", "Engine": "engines", "EngineSession": "engines",
             "SpecError": "spec"}
    if name not in homes:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    found = getattr(importlib.import_module(f"{__package__}.derive.{homes[name]}"), name)
    globals()[name] = found
    return found
