"""The one pluggy wrapper: discover entry points, isolate broken plugins, answer typed questions.

``LITHOTSE_PLUGINS`` (comma-separated entry-point names) restricts which plugins load;
``LITHOTSE_DISABLE_PLUGINS`` names plugins to skip. Plugins left out either way are not
imported but still listed, with status "disabled" and the variable that disabled them. A
plugin that fails to import or whose hook raises is recorded with its error and left out;
the application carries on.

The core's own stores, cache and engines register through the same hooks, as the in-process plugins
named in :data:`BUILTIN_PLUGINS`. They are named by module, like an entry point's value, and
imported when a manager starts. So the manager asks the stores (a local folder, a bucket)
through the hook, and storage knows nothing of plugins; the tiers above storage ask the
manager (``open_store``, ``cache_backends``, ``version_published``), never a backend module.
The environment variables above do not apply to built-ins: without them nothing works.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import __version__, hookspecs
from .connectors import Connector
from .errors import ConfigError, LithotseError, NotFound
from .storage import Store

ENTRY_POINT_GROUP = "lithotse"
BUILTIN_ORIGIN = "built-in"
BUILTIN_PLUGINS = {
    "builtin-stores": "lithotse_desktop.storage.builtin",
    "builtin-cache": "lithotse_desktop.cache.builtin",
    "builtin-engines": "lithotse_desktop.derive.engines.builtin",
}
"""Plugin name -> module of the core's own hook implementations, registered by every manager."""


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    module: str
    origin: str
    connectors: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    disabled: str | None = None
    """Why the plugin was not loaded (``LITHOTSE_DISABLE_PLUGINS``, ``LITHOTSE_PLUGINS``), or None."""

    @property
    def status(self) -> str:
        """``disabled``, ``error`` or ``ok``."""
        return "disabled" if self.disabled else "error" if self.error else "ok"

    def to_json(self) -> dict:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "module": self.module, "origin": self.origin, "connectors": self.connectors,
                "status": self.status, "error": self.error, "disabled": self.disabled,
                "traceback": self.traceback}


def _origin(dist: md.Distribution | None) -> str:
    """Where a distribution came from, per PEP 610 (local folder, wheel file, editable, index)."""
    if dist is None:
        return "unknown"
    try:
        text = dist.read_text("direct_url.json")
    except Exception:
        text = None
    if not text:
        return "index"
    try:
        info = json.loads(text)
    except ValueError:
        return "unknown"
    url = info.get("url", "")
    if info.get("dir_info", {}).get("editable"):
        return f"editable {url}"
    return url or "unknown"


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _disabled_by(name: str, allow: set[str] | None, deny: set[str]) -> str | None:
    if name in deny:
        return "disabled by LITHOTSE_DISABLE_PLUGINS"
    if allow is not None and name not in allow:
        return "not named in LITHOTSE_PLUGINS"
    return None


class PluginManager:
    """Typed facade over pluggy for the hooks in :mod:`lithotse_desktop.hookspecs`."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._connectors: dict[str, type[Connector]] | None = None
        self._lock = threading.RLock()
        self._register_builtins()
        if load_entry_points:
            self.load_entry_points()

    def _register_builtins(self) -> None:
        for name, module in BUILTIN_PLUGINS.items():
            self._pm.register(importlib.import_module(module), name=name)
            self.plugins[name] = PluginInfo(name, None, __version__, module, BUILTIN_ORIGIN)
        self._pm.check_pending()

    def is_builtin(self, name: str) -> bool:
        info = self.plugins.get(name)
        return info is not None and info.origin == BUILTIN_ORIGIN

    def load_entry_points(self) -> None:
        """Load every plugin not loaded yet; safe to call again after installing one."""
        with self._lock:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        importlib.invalidate_caches()
        allow = _names_from_env("LITHOTSE_PLUGINS")
        deny = _names_from_env("LITHOTSE_DISABLE_PLUGINS") or set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in BUILTIN_PLUGINS or (ep.name in self.plugins and not self.plugins[ep.name].error):
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(ep.name, dist.metadata["Name"] if dist else None,
                              dist.version if dist else None, ep.value, _origin(dist))
            self.plugins[ep.name] = info
            info.disabled = _disabled_by(ep.name, allow, deny)
            if info.disabled:
                continue
            try:
                obj = ep.load()
                self._pm.register(obj, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the app down
                info.error = f"failed to load: {type(exc).__name__}: {exc}"
                info.traceback = traceback.format_exc()
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            bad = getattr(exc, "plugin", None)
            name = self._pm.get_name(bad) if bad is not None else None
            if name in self.plugins:
                self.plugins[name].error = f"invalid hooks: {exc}"
                self._pm.unregister(bad)
        self._connectors = None

    def register(self, plugin: object, name: str) -> None:
        """Register an in-process plugin (tests, embedding applications)."""
        self._pm.register(plugin, name=name)
        self._pm.check_pending()
        self.plugins.setdefault(name, PluginInfo(name, None, None, repr(plugin), "in-process"))
        self._connectors = None

    def is_registered(self, plugin: object) -> bool:
        return self._pm.is_registered(plugin)

    def name_of(self, plugin: object) -> str | None:
        """The name a registered plugin goes by (its entry point's, or the one given)."""
        return self._pm.get_name(plugin)

    def _call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        return list(self._each(hook_name, **kwargs))

    def _each(self, hook_name: str, *, passthrough: tuple[type[Exception], ...] = (),
              **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Call a hook plugin by plugin so one plugin's exception only disables that plugin.

        Exceptions of the ``passthrough`` types (a store's configuration error, say) and those
        of built-in plugins are the caller's to see, and are raised.
        """
        caller = getattr(self._pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            name = self._pm.get_name(impl.plugin) or impl.plugin_name
            try:
                args = {k: kwargs[k] for k in impl.argnames}
                result = impl.function(**args)
            except passthrough:
                raise
            except Exception as exc:
                if self.is_builtin(name):
                    raise
                info = self.plugins.setdefault(name, PluginInfo(name, None, None, "?", "?"))
                info.error = f"hook {hook_name} raised {type(exc).__name__}: {exc}"
                info.traceback = traceback.format_exc()
                continue
            yield name, result

    def connectors(self) -> dict[str, type[Connector]]:
        with self._lock:
            return self._connector_table()

    def _connector_table(self) -> dict[str, type[Connector]]:
        if self._connectors is None:
            found: dict[str, type[Connector]] = {}
            for plugin_name, classes in self._call_each("lithotse_register_connectors"):
                info = self.plugins.get(plugin_name)
                for cls in classes or []:
                    if not (isinstance(cls, type) and issubclass(cls, Connector)):
                        if info:
                            info.error = f"returned {cls!r}, not a Connector subclass"
                        continue
                    if cls.name in found:
                        if info:
                            info.error = f"connector name {cls.name!r} is taken by another plugin"
                        continue
                    found[cls.name] = cls
                    if info and cls.name not in info.connectors:
                        info.connectors.append(cls.name)
            self._connectors = found
        return self._connectors

    def connector(self, name: str) -> type[Connector]:
        table = self.connectors()
        if name not in table:
            broken = [p.name for p in self.plugins.values() if p.error]
            disabled = [p.name for p in self.plugins.values() if p.disabled]
            hint = f" (plugins with errors: {', '.join(broken)})" if broken else ""
            hint += f" (disabled plugins: {', '.join(disabled)})" if disabled else ""
            raise NotFound(f"no connector named {name!r}; installed: "
                           f"{', '.join(sorted(table)) or 'none'}{hint}")
        return table[name]

    def open_store(self, url: str, options: dict, base: Path) -> Store | None:
        """The first store a plugin opens for ``url`` (built-ins answer first), or None."""
        for _name, store in self._each("lithotse_open_store", passthrough=(LithotseError,),
                                       url=url, options=options, base=base):
            if store is not None:
                return store
        return None

    def cache_backends(self) -> dict[str, Callable[..., Any]]:
        """Every cache backend factory by name; a built-in name is never taken over by a plugin."""
        merged: dict[str, Callable[..., Any]] = {}
        builtin: dict[str, Callable[..., Any]] = {}
        for name, table in self._call_each("lithotse_register_cache_backends"):
            (builtin if self.is_builtin(name) else merged).update(table or {})
        merged.update(builtin)
        return merged

    def engines(self) -> dict[str, Callable[..., Any]]:
        """Every engine factory by name; a built-in name is never taken over by a plugin."""
        merged: dict[str, Callable[..., Any]] = {}
        builtin: dict[str, Callable[..., Any]] = {}
        for name, table in self._call_each("lithotse_register_engines"):
            (builtin if self.is_builtin(name) else merged).update(table or {})
        merged.update(builtin)
        return merged

    def version_published(self, workspace: Any, version: Any, table: Any) -> None:
        """Tell every plugin (the built-in cache among them) that a derivative version is out."""
        self._call_each("lithotse_version_published", workspace=workspace, version=version, table=table)

    def version_withdrawn(self, workspace: Any, name: str) -> None:
        """Tell every plugin that a derivative's published copies must go (it is row-level now)."""
        self._call_each("lithotse_version_withdrawn", workspace=workspace, name=name)

    def unload(self, name: str) -> None:
        with self._lock:
            self._unload(name)

    def _unload(self, name: str) -> None:
        if self.is_builtin(name):
            raise ConfigError(f"{name} is part of Lithotse itself and cannot be unloaded")
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
        info = self.plugins.pop(name, None)
        if info is not None:
            sys.modules.pop(info.module.split(":")[0], None)
        self._connectors = None


_manager: PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    global _manager
    with _lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


def open_store(url: str, *, base: Path, options: dict | None = None) -> Store:
    """Open a store from a config URL through the ``lithotse_open_store`` hook: local folders
    (``file://`` or a path, relative to ``base``) and ``s3://`` built in, other schemes from plugins."""
    store = get_plugin_manager().open_store(url, dict(options or {}), Path(base))
    if store is None:
        raise ConfigError(f"no store backend handles {url!r}")
    return store


def reset_plugin_manager() -> None:
    """Forget loaded plugins (tests, or after changing LITHOTSE_PLUGINS)."""
    global _manager
    with _lock:
        _manager = None
