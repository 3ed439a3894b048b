"""Redis as the L3 cache backend.

Select it in ``lithotse.toml``::

    [cache]
    backend = "redis"
    url = "redis://127.0.0.1:6379/0"     # rediss:// for TLS
    prefix = "lithotse"                   # optional; keys are <prefix>:<workspace id>:...
    password = {keyring = "…"}            # optional, a keyring reference (never the password)

Each derivative has a pointer key and one hash per cached version; publishing and reading
run as Lua scripts, so a reader gets the pointer and its entry from one atomic step and a
publish replaces the pointer and removes the derivative's older entries in one step.
"""

from __future__ import annotations

import json
from typing import Any

from lithotse_desktop.plugin import ANY, ConfigError, hookimpl, is_ref, load_secret

PUBLISH = """
local current = redis.call('GET', KEYS[1])
if ARGV[4] == 'absent' and current then return 0 end
if ARGV[4] == 'equal' and current ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[2], 'meta', ARGV[2], 'data', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1])
for _, old in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if old ~= ARGV[1] then redis.call('DEL', ARGV[6] .. old) end
end
redis.call('DEL', KEYS[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[7])
return 1
"""

LOAD = """
local version = redis.call('GET', KEYS[1])
if not version then return false end
local found = redis.call('HMGET', ARGV[1] .. version, 'meta', 'data')
if not found[1] then return false end
return {version, found[1], found[2]}
"""

DROP = """
for _, old in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('DEL', ARGV[1] .. old) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"""


def _text(value: bytes | str) -> str:
    """A reply as text: the client returns bytes (no decode_responses), its types allow str too."""
    return value if isinstance(value, str) else value.decode()


class RedisCache:
    """The cache contract of :class:`lithotse_desktop.plugin.CacheBackend` on one Redis database."""

    def __init__(self, url: str, namespace: str, password: str | None = None) -> None:
        import redis

        try:
            self.client = redis.Redis.from_url(url, password=password, socket_timeout=10,
                                               socket_connect_timeout=5, health_check_interval=30)
        except ValueError as exc:
            raise ConfigError(f"[cache] url {url!r}: {exc}") from None
        self.ns = namespace
        self._publish = self.client.register_script(PUBLISH)
        self._load = self.client.register_script(LOAD)
        self._drop = self.client.register_script(DROP)

    def _keys(self, name: str) -> tuple[str, str, str]:
        return f"{self.ns}:ptr:{name}", f"{self.ns}:entry:{name}:", f"{self.ns}:versions:{name}"

    def pointer(self, name: str) -> str | None:
        value = self.client.get(self._keys(name)[0])
        return _text(value) if value is not None else None

    def load(self, name: str) -> tuple[str, dict, bytes] | None:
        ptr, entry_prefix, _versions = self._keys(name)
        found = self._load(keys=[ptr], args=[entry_prefix])
        if not found:
            return None
        version, meta, data = found
        return version.decode(), json.loads(meta), bytes(data)

    def publish(self, name: str, version: str, meta: dict, data: bytes, *, expect: Any = ANY) -> bool:
        ptr, entry_prefix, versions = self._keys(name)
        if expect is ANY:
            mode, wanted = "any", ""
        elif expect is None:
            mode, wanted = "absent", ""
        else:
            mode, wanted = "equal", expect
        done = self._publish(keys=[ptr, entry_prefix + version, versions, f"{self.ns}:names"],
                             args=[version, json.dumps(meta, sort_keys=True), data, mode, wanted,
                                   entry_prefix, name])
        return bool(done)

    def drop(self, name: str) -> None:
        ptr, entry_prefix, versions = self._keys(name)
        self._drop(keys=[ptr, versions, f"{self.ns}:names"], args=[entry_prefix, name])

    def entries(self) -> list[tuple[str, str]]:
        out = []
        for raw in sorted(self.client.smembers(f"{self.ns}:names")):
            name = _text(raw)
            for version in sorted(self.client.smembers(self._keys(name)[2])):
                out.append((name, _text(version)))
        return out

    def close(self) -> None:
        self.client.close()


def redis_factory(ws: Any, options: dict) -> RedisCache:
    """Build the backend from the workspace's ``[cache]`` options."""
    url = options.get("url")
    if not url:
        raise ConfigError('[cache] backend = "redis" needs url = "redis://HOST:PORT/DB"')
    password = options.get("password")
    if password is not None:
        if not is_ref(password):
            raise ConfigError("[cache] password must be a keyring reference {keyring = \"…\"}, "
                              "not the password itself")
        password = load_secret(password)
    prefix = options.get("prefix", "lithotse")
    return RedisCache(url, f"{prefix}:{ws.id}", password)


@hookimpl
def lithotse_register_cache_backends():
    return {"redis": redis_factory}
