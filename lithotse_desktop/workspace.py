"""A workspace: one folder with a TOML config naming the store for each tier, and the sources.

``lithotse.toml`` looks like::

    [workspace]
    id = "…"               # stable, used to scope secret references
    timezone = "UTC"       # see lithotse_desktop.dates
    suppress_below = 11

    [stores.local]
    url = "data"           # relative to the workspace folder, or s3://bucket/prefix

    [tiers]
    raw = "local"          # L1: imports write here (and it is always read)
    raw_read = ["team"]    # optional: more raw stores read alongside it (a shared bucket…)
    derived = "local"      # L2: what managers may read
    cache = "local"        # L3
    restricted = "local"   # optional (default: the raw tier's store): row-level derivatives
    audit = "local"        # optional (default: the raw tier's store): audit records, create-only

    [sources.ehr]
    connector = "csv"
    settings = { path = "/exports/ehr" }
    secrets = { }          # name -> {keyring = "…"}: a reference, see lithotse_desktop.secrets

    [secrets]
    store = "auto"         # or "os" (OS keyring only) or "file"; LITHOTSE_SECRETS_STORE wins

    [limits]
    memory = "1GB"         # DuckDB's memory_limit for every query; it spills to .lithotse/tmp
"""

from __future__ import annotations

import os
import threading
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from .atomic import atomic_write_text
from .engine import DEFAULT_MEMORY, Limits, parse_size
from .errors import ConfigError, NotFound
from .plugins import get_plugin_manager, open_store
from .secrets import configure as configure_secrets
from .secrets import delete_secret, is_ref, load_secret, secret_ref, store_secret
from .storage import AccessDenied, Store

CONFIG_NAME = "lithotse.toml"
TIERS = ("raw", "derived", "cache")
OPTIONAL_TIERS = ("restricted", "audit")
"""Tiers that default to the raw tier's store: row-level derivatives, and the audit trail."""
ALL_TIERS = TIERS + OPTIONAL_TIERS
_NAME_OK = __import__("re").compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def default_workspace_dir() -> Path:
    env = os.environ.get("LITHOTSE_WORKSPACE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("lithotse", appauthor=False)) / "workspace"


def check_name(name: str, what: str) -> str:
    if not _NAME_OK.match(name or ""):
        raise ConfigError(f"{what} name {name!r}: use a letter first, then letters, digits, _ or - "
                          "(64 characters at most)")
    return name


@dataclass
class SourceConfig:
    name: str
    connector: str
    settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_toml(self) -> dict:
        return {"connector": self.connector, "settings": self.settings, "secrets": self.secrets}

    def to_json(self) -> dict:
        return {"name": self.name, "connector": self.connector, "settings": self.settings,
                "secrets": sorted(self.secrets)}


class Workspace:
    """Loaded config plus open stores; cheap to create, so each command opens its own."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        path = self.root / CONFIG_NAME
        if not path.exists():
            raise NotFound(f"{self.root}: not a Lithotse workspace (no {CONFIG_NAME}); "
                           "create one with: lithotse init")
        try:
            self.config = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._raw_readable: bool | None = None
        stores = self.config.get("stores", {})
        tiers = self.config.get("tiers", {})
        for tier in TIERS:
            if tiers.get(tier) not in stores:
                raise ConfigError(f"{path}: tier {tier!r} names no store in [stores]")
        for tier in OPTIONAL_TIERS:
            if tier in tiers and tiers[tier] not in stores:
                raise ConfigError(f"{path}: [tiers] {tier} names {tiers[tier]!r}, which is not in [stores]")
        self._check_restricted(path)
        extra = tiers.get("raw_read", [])
        if not isinstance(extra, list) or not all(isinstance(n, str) for n in extra):
            raise ConfigError(f"{path}: [tiers] raw_read must be a list of store names")
        for name in extra:
            if name not in stores:
                raise ConfigError(f"{path}: [tiers] raw_read names {name!r}, which is not in [stores]")
        section = self.config.get("secrets", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [secrets] must be a table")
        configure_secrets(section.get("store"), str(path))
        limits = self.config.get("limits", {})
        if not isinstance(limits, dict):
            raise ConfigError(f"{path}: [limits] must be a table")
        self.limits = Limits(parse_size(limits.get("memory", DEFAULT_MEMORY), f"{path}: [limits] memory"),
                             self.root / ".lithotse" / "tmp")

    def _check_restricted(self, path: Path) -> None:
        """Row-level data may not share a store with the tiers managers read, unless raw does too
        (one folder for a single user: nobody else reads it)."""
        raw, restricted = self.tier_store_name("raw"), self.tier_store_name("restricted")
        if self._same_store(restricted, raw):
            return
        for tier in ("derived", "cache"):
            if self._same_store(restricted, self.tier_store_name(tier)):
                raise ConfigError(
                    f"{path}: [tiers] restricted uses the store of the {tier} tier ({restricted!r}), "
                    "which managers may read; rule: row-level data stays in a store only analysts read "
                    "(leave restricted out to use the raw tier's store)")

    def _same_store(self, a: str, b: str) -> bool:
        stores = self.config.get("stores", {})
        return a == b or (stores.get(a) or {}).get("url") == (stores.get(b) or {}).get("url")

    @classmethod
    def create(cls, root: Path | None = None, *, name: str | None = None) -> Workspace:
        root = Path(root or default_workspace_dir()).expanduser().resolve()
        if (root / CONFIG_NAME).exists():
            raise ConfigError(f"{root}: a workspace already exists here")
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "workspace": {"id": uuid.uuid4().hex, "name": name or root.name, "timezone": "UTC",
                          "suppress_below": 11, "keep_versions": 5},
            "stores": {"local": {"url": "data"}},
            "tiers": {tier: "local" for tier in TIERS},
            "sources": {},
        }
        atomic_write_text(root / CONFIG_NAME, tomli_w.dumps(config))
        return cls(root)

    @classmethod
    def open(cls, root: Path | str | None = None) -> Workspace:
        return cls(Path(root) if root else default_workspace_dir())

    @classmethod
    def open_or_create(cls, root: Path | str | None = None) -> tuple[Workspace, bool]:
        """The workspace at ``root`` and whether it was just made: a missing or empty folder
        becomes a new workspace (what the desktop app does when pointed at a folder)."""
        root = Path(root or default_workspace_dir()).expanduser()
        if (root / CONFIG_NAME).exists():
            return cls.open(root), False
        if not root.exists() or not any(root.iterdir()):
            return cls.create(root), True
        return cls.open(root), False

    # --- settings -------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.config["workspace"]["id"]

    @property
    def timezone(self) -> str:
        return self.config["workspace"].get("timezone", "UTC")

    @property
    def suppress_below(self) -> int:
        return int(self.config["workspace"].get("suppress_below", 11))

    @property
    def zero_cells(self) -> str:
        """``[privacy] zero_cells``: what suppression does with cells of 0 people (docs/privacy.md)."""
        section = self.config.get("privacy", {})
        value = section.get("zero_cells", "show") if isinstance(section, dict) else "show"
        if value not in ("show", "suppress"):
            raise ConfigError(f"{self.root / CONFIG_NAME}: [privacy] zero_cells must be \"show\" or "
                              f"\"suppress\", not {value!r}")
        return str(value)

    @property
    def keep_versions(self) -> int:
        return int(self.config["workspace"].get("keep_versions", 5))

    @property
    def local_dir(self) -> Path:
        """Machine-local state that is never shared: index, staging area, caches."""
        path = self.root / ".lithotse"
        path.mkdir(exist_ok=True)
        return path

    def save(self) -> None:
        atomic_write_text(self.root / CONFIG_NAME, tomli_w.dumps(self.config))

    # --- stores ---------------------------------------------------------------
    def store(self, tier: str) -> Store:
        return self.named_store(self.tier_store_name(tier))

    def tier_store_name(self, tier: str) -> str:
        """The ``[stores]`` name serving a tier; ``restricted`` and ``audit`` default to raw's."""
        if tier not in ALL_TIERS:
            raise ConfigError(f"unknown tier {tier!r}")
        tiers = self.config["tiers"]
        if tier in OPTIONAL_TIERS:
            return tiers.get(tier) or tiers["raw"]
        return tiers[tier]

    def raw_store_names(self) -> list[str]:
        """The raw tier's store (where imports write) first, then ``raw_read`` stores, each once."""
        tiers = self.config["tiers"]
        return list(dict.fromkeys([tiers["raw"], *tiers.get("raw_read", [])]))

    def raw_stores(self) -> list[tuple[str, Store]]:
        """Every raw store this workspace reads, by name: landings are indexed from all of them."""
        return [(name, self.named_store(name)) for name in self.raw_store_names()]

    def can_read_raw(self) -> bool:
        """Whether these credentials may list the raw store (a manager's may not).

        Access is enforced by the store itself; this only lets the app hide what would fail.
        The answer is kept for this instance; other failures (a server down) are raised, not
        taken as a refusal.
        """
        if self._raw_readable is None:
            listing = self.store("raw").list("manifests/")
            try:
                next(iter(listing), None)
                self._raw_readable = True
            except (AccessDenied, PermissionError):
                self._raw_readable = False
            finally:
                close = getattr(listing, "close", None)
                if close is not None:
                    close()
        return self._raw_readable

    def named_store(self, name: str) -> Store:
        with self._lock:
            if name not in self._stores:
                spec = dict(self.config["stores"].get(name) or {})
                if "url" not in spec:
                    raise ConfigError(f"store {name!r} has no url")
                url = spec.pop("url")
                self._stores[name] = open_store(url, base=self.root, options=spec)
            return self._stores[name]

    # --- sources --------------------------------------------------------------
    def sources(self) -> list[SourceConfig]:
        return [self.source(name) for name in sorted(self.config.get("sources", {}))]

    def source(self, name: str) -> SourceConfig:
        data = self.config.get("sources", {}).get(name)
        if data is None:
            known = ", ".join(sorted(self.config.get("sources", {}))) or "none"
            raise NotFound(f"no source named {name!r}; configured: {known}")
        return SourceConfig(name, data["connector"], dict(data.get("settings", {})),
                            dict(data.get("secrets", {})))

    def add_source(self, name: str, connector: str, settings: dict[str, Any],
                   secrets: dict[str, str], *, replace: bool = False) -> SourceConfig:
        check_name(name, "source")
        sources = self.config.setdefault("sources", {})
        if name in sources and not replace:
            raise ConfigError(f"source {name!r} exists; use --replace to change it")
        get_plugin_manager().connector(connector).validate_settings({**settings, **secrets})
        refs = {}
        for key, value in secrets.items():
            ref = secret_ref(self.id, f"source/{name}/{key}")
            store_secret(ref, value)
            refs[key] = ref
        sources[name] = SourceConfig(name, connector, settings, refs).to_toml()
        self.save()
        return self.source(name)

    def remove_source(self, name: str) -> None:
        src = self.source(name)
        for ref in src.secrets.values():
            delete_secret(ref)
        del self.config["sources"][name]
        self.save()

    def resolved_settings(self, src: SourceConfig) -> dict[str, Any]:
        """Settings with secrets read from the secrets store, for handing to a connector only."""
        merged = dict(src.settings)
        for key, ref in src.secrets.items():
            if not is_ref(ref):
                raise ConfigError(f"source {src.name}: secret {key} is not a keyring reference")
            merged[key] = load_secret(ref)
        return merged
