"""Everything a plugin needs from Lithotse, in one import.

Plugin code imports only this module, so the core's own layout can change without breaking
plugins::

    from lithotse_desktop.plugin import Connector, StreamInfo, hookimpl

docs/plugins.md is the guide: a tutorial, the connector contract, store and cache plugins.
"""

from __future__ import annotations

from .cache.backends import ANY, CacheBackend
from .connectors import (ConfigField, Connector, FetchRequest, FieldType, FileTracker, Payload,
                         RawObject, StreamInfo, files_to_fetch, list_files, sha256_file)
from .dates import DateRange
from .errors import ConfigError, InputError, LithotseError, NotFound
from .hookspecs import hookimpl
from .progress import Progress
from .secrets import is_ref, load_secret
from .storage import ObjectInfo, PreconditionFailed, Store

__all__ = [
    "hookimpl",
    "Connector", "ConfigField", "FieldType", "StreamInfo", "FetchRequest", "Payload", "RawObject",
    "FileTracker", "files_to_fetch", "list_files", "sha256_file",
    "DateRange", "Progress",
    "LithotseError", "ConfigError", "InputError", "NotFound",
    "Store", "ObjectInfo", "PreconditionFailed",
    "CacheBackend", "ANY",
    "is_ref", "load_secret",
]
