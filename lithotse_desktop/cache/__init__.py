"""L3: published derivative tables kept close to the cells that read them.

``value`` and ``table`` answer from the cache and fall back to L2 on a miss (see
:mod:`.lookup` for the rules). Every version a build publishes reaches the cache through the
``lithotse_version_published`` hook, which the built-in plugin in :mod:`.builtin` implements.
Configure the backend in ``lithotse.toml``::

    [cache]
    backend = "embedded"          # default: SQLite (WAL) under <workspace>/.lithotse/cache
    revalidate_seconds = 5        # how long a process trusts the cache before checking L2

    # or, with the lithotse-redis plugin installed:
    # backend = "redis"
    # url = "redis://127.0.0.1:6379/0"
"""

from .backends import ANY, CacheBackend, EmbeddedCache, create_backend
from .lookup import (
    Cell,
    Entry,
    LookupMismatch,
    cache_for,
    close_all,
    describe,
    describe_all,
    lookup,
    publish_to_cache,
    table,
    table_of,
    value,
)

__all__ = ["ANY", "CacheBackend", "Cell", "EmbeddedCache", "Entry", "LookupMismatch", "cache_for",
           "close_all", "create_backend", "describe", "describe_all", "lookup", "publish_to_cache", "table",
           "table_of", "value"]
