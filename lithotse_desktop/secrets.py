"""Secrets (source tokens, S3 keys, the API token, the HMAC key) kept out of every config file.

A config holds only a reference, ``{"keyring": "<workspace-id>/<purpose>"}``: the reference
names a secret and the store in use decides where it lives, so existing configs keep working
whichever store a machine has. There are two stores:

- the **OS keyring** (macOS Keychain, Windows Credential Locker, a Secret Service provider
  such as GNOME Keyring or KWallet on Linux) through the ``keyring`` library;
- a **private file**, ``secrets.json`` in the user config folder
  (``platformdirs.user_config_dir("lithotse")``: ``$XDG_CONFIG_HOME/lithotse`` or
  ``~/.config/lithotse`` on Linux, ``~/Library/Application Support/lithotse`` on macOS,
  ``%LOCALAPPDATA%\\lithotse`` on Windows; ``LITHOTSE_SECRETS_DIR`` overrides the folder), for
  machines without a usable keyring: headless Linux, containers, CI.

Which one is used: ``LITHOTSE_SECRETS_STORE`` if set, else ``[secrets] store`` of the
workspace the process opened, else ``auto``. ``auto`` takes the OS keyring when keyring has a
real backend that answers, and otherwise the file, saying so once per process on stderr;
``os`` never falls back (its error says how to get a keyring); ``file`` always uses the file.
In ``auto``, a secret missing from the keyring is also looked up in the file, so secrets saved
while no keyring was reachable stay readable once one is.

The file is JSON in a folder created 0700; it is only ever replaced whole (temp file created
0600 by ``mkstemp``, fsync, rename in the same folder), under an exclusive lock on
``secrets.lock`` so that concurrent commands adding secrets lose nothing. On POSIX a file or
lock looser than 0600, a folder others may write to, or any of them owned by another user is
refused. keyrings.alt's file backends were considered and not used: its PlaintextKeyring
rewrites its INI file in place (``open(path, "w")`` truncates, then writes) without any lock,
so a crash mid-write loses every secret and two writers lose one's update, and it makes its
folder with default permissions; its EncryptedKeyring asks for a master password on the
terminal, which a headless command cannot answer.

Values never appear in messages: errors name the reference and the store, never the secret.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from .atomic import atomic_write_bytes
from .errors import ConfigError

SERVICE = "lithotse"
STORE_ENV = "LITHOTSE_SECRETS_STORE"
DIR_ENV = "LITHOTSE_SECRETS_DIR"
MODES = ("auto", "os", "file")
FILE_NAME = "secrets.json"
LOCK_NAME = "secrets.lock"
FILE_FORMAT = "lithotse-secrets"
LOCK_TIMEOUT = 30.0
_PROBE_NAME = "lithotse-keyring-probe"
_POSIX = os.name == "posix"

HOW_TO_GET_A_KEYRING = (
    "Install and unlock an OS keyring (on Linux a Secret Service provider such as GNOME Keyring "
    "or KWallet running in your desktop session; macOS Keychain and Windows Credential Locker "
    "are built in), or let Lithotse keep secrets in its private file: set [secrets] store = "
    "\"auto\" or \"file\" in lithotse.toml, or LITHOTSE_SECRETS_STORE=file.")

T = TypeVar("T")


class SecretMissing(ConfigError):
    """The store in use holds no secret under that reference (as opposed to failing to answer)."""


def secret_ref(workspace_id: str, purpose: str) -> dict[str, str]:
    return {"keyring": f"{workspace_id}/{purpose}"}


def is_ref(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"keyring"}


def secrets_dir() -> Path:
    """The folder of the secrets file: ``$LITHOTSE_SECRETS_DIR`` or the user config folder."""
    override = os.environ.get(DIR_ENV)
    if override:
        return Path(override).expanduser().absolute()
    return Path(platformdirs.user_config_dir("lithotse", appauthor=False))


# --- the file store -------------------------------------------------------------------
class FileStore:
    """``secrets.json`` readable by its owner only, replaced whole under a cross-process lock."""

    kind = "file"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILE_NAME
        self.lock_path = self.folder / LOCK_NAME
        self._thread_lock = threading.Lock()

    @property
    def label(self) -> str:
        return f"the secrets file {self.path}"

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        with self._locked():
            data = self._read()
            data[name] = value
            self._write(data)

    def delete(self, name: str) -> bool:
        if not self.path.exists():
            return False
        with self._locked():
            data = self._read()
            if data.pop(name, None) is None:
                return False
            self._write(data)
            return True

    def exists(self) -> bool:
        return self.path.exists()

    # --- checks ---------------------------------------------------------------------
    def _check_file(self, st: os.stat_result, path: Path) -> None:
        check_private_file(st, path)

    def _ensure_folder(self) -> None:
        ensure_private_folder(self.folder)

    # --- reading and writing --------------------------------------------------------
    def _read(self) -> dict[str, str]:
        flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0))
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{self.path}: is a symbolic link; Lithotse reads secrets only "
                                  "from a regular file") from None
            raise ConfigError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as handle:
            self._check_file(os.fstat(handle.fileno()), self.path)
            raw = handle.read()
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{self.path}: not UTF-8 text; not a Lithotse secrets file") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.path}: line {exc.lineno} column {exc.colno}: {exc.msg}; "
                              "not a readable Lithotse secrets file") from None
        secrets = doc.get("secrets") if isinstance(doc, dict) else None
        if (not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT or not isinstance(secrets, dict)
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in secrets.items())):
            raise ConfigError(f"{self.path}: not a Lithotse secrets file (expected "
                              f"{{\"format\": \"{FILE_FORMAT}\", \"secrets\": {{name: text}}}})")
        return dict(secrets)

    def _write(self, data: dict[str, str]) -> None:
        doc = {"format": FILE_FORMAT, "version": 1, "secrets": dict(sorted(data.items()))}
        atomic_write_bytes(self.path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive against other threads and processes for one read-modify-write."""
        with self._thread_lock:
            self._ensure_folder()
            with private_lock(self.lock_path):
                yield


# --- private files and folders (the secrets file; the local CA's keys) ---------------
def _check_owner(st: os.stat_result, path: Path, what: str) -> None:
    if _POSIX and st.st_uid != os.getuid():
        raise ConfigError(f"{path}: owned by another user (uid {st.st_uid}); Lithotse keeps "
                          f"secrets only in a {what} of your own. Move it aside or set "
                          f"{DIR_ENV} to a folder of yours.")


def check_private_file(st: os.stat_result, path: Path) -> None:
    """Refuse a file that is not a regular file of ours readable by us alone (POSIX)."""
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file; Lithotse will not keep secrets in it")
    _check_owner(st, path, "file")
    if _POSIX and st.st_mode & 0o077:
        raise ConfigError(f"{path}: other users may read or change it (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); a secrets file must be private. "
                          f"Check who could have read it, then run: chmod 600 {path}")


def ensure_private_folder(folder: Path) -> None:
    """Create ``folder`` 0700 if missing; refuse one of another user's or that others may write to."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    else:
        if _POSIX:
            os.chmod(folder, 0o700)  # mkdir's mode passes through the umask
    st = os.stat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{folder}: not a folder; cannot keep secrets there")
    _check_owner(st, folder, "folder")
    if _POSIX and st.st_mode & 0o022:
        raise ConfigError(f"{folder}: other users may write to this folder (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}) and so replace the secrets file; "
                          f"run: chmod 700 {folder}")


@contextlib.contextmanager
def private_lock(lock_path: Path) -> Iterator[None]:
    """An exclusive lock on ``lock_path`` (created 0600) against other processes."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open {lock_path}: {exc.strerror or exc}") from None
    try:
        _check_owner(os.fstat(fd), lock_path, "file")
        _lock_fd(fd, lock_path)
        try:
            yield
        finally:
            _unlock_fd(fd)
    finally:
        os.close(fd)


if sys.platform != "win32":  # the same test as _POSIX, in the form type checkers follow
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
else:
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _lock_fd(fd: int, path: Path) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT
    while not _try_lock(fd):
        if time.monotonic() > deadline:
            raise ConfigError(f"{path}: another Lithotse process has held the secrets lock for "
                              f"{LOCK_TIMEOUT:.0f} s; try again when it has finished")
        time.sleep(0.02)


# --- the OS keyring -------------------------------------------------------------------
class _KeyringFailed(Exception):
    """The OS keyring raised while being used; ``reason`` is safe to show (no secret in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OsKeyring:
    """The keyring library's chosen backend; any failure becomes :class:`_KeyringFailed`."""

    kind = "os"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @property
    def label(self) -> str:
        return f"the OS keyring ({backend_name(self.backend)})"

    def _call(self, fn: Callable[..., T], *args: str) -> T:
        try:
            return fn(SERVICE, *args)
        except Exception as exc:  # backends raise their own types (dbus, Keychain, WinError)
            raise _KeyringFailed(f"{backend_name(self.backend)} failed: {type(exc).__name__}: {exc}") from None

    def get(self, name: str) -> str | None:
        return self._call(self.backend.get_password, name)

    def set(self, name: str, value: str) -> None:
        self._call(self.backend.set_password, name, value)

    def delete(self, name: str) -> bool:
        import keyring.errors

        try:
            self.backend.delete_password(SERVICE, name)
        except keyring.errors.PasswordDeleteError:
            return False
        except Exception as exc:
            raise _KeyringFailed(f"{backend_name(self.backend)} failed: {type(exc).__name__}: {exc}") from None
        return True


def backend_name(backend: Any) -> str:
    return str(getattr(backend, "name", None) or type(backend).__name__)


def keyring_unusable_reason(backend: Any) -> str | None:
    """Why keyring's chosen backend cannot hold secrets, or None when it looks like a real one."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring):
        return "keyring found no recommended backend: no Secret Service, Keychain or Credential Locker"
    if isinstance(backend, null.Keyring):
        return "the keyring backend is keyring.backends.null, which stores nothing"
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return "keyring's chainer backend has no backends to use"
    return None


# --- choosing the store ---------------------------------------------------------------
@dataclass(frozen=True)
class StoreInfo:
    """Which store holds secrets in this process, and why (for notices, doctor and the GUI)."""

    store: str          # "os" or "file"
    location: str       # the keyring backend's name, or the file's path
    requested: str      # "auto", "os" or "file"
    requested_by: str   # "default", "LITHOTSE_SECRETS_STORE" or the lithotse.toml path
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"store": self.store, "location": self.location, "requested": self.requested,
                "requested_by": self.requested_by, "reason": self.reason}

    @property
    def label(self) -> str:
        return f"the OS keyring ({self.location})" if self.store == "os" else f"the secrets file {self.location}"


_state_lock = threading.RLock()
_configured: tuple[str, str] | None = None
_active: tuple[tuple[str, str, str], StoreInfo, Any] | None = None
_noticed = False


def _check_mode(value: Any, where: str) -> str:
    if value not in MODES:
        raise ConfigError(f"{where}: secrets store {value!r} is not one of "
                          f"{', '.join(repr(m) for m in MODES)}")
    return value


def configure(setting: Any, origin: str) -> None:
    """Take ``[secrets] store`` from the workspace just opened (None: not set there)."""
    global _configured
    with _state_lock:
        _configured = None if setting is None else (_check_mode(setting, f"{origin}: [secrets] store"), origin)


def requested() -> tuple[str, str]:
    """``(mode, where it was asked for)``: the environment first, then the workspace, then auto."""
    env = os.environ.get(STORE_ENV)
    if env:
        return _check_mode(env.strip().lower(), STORE_ENV), STORE_ENV
    with _state_lock:
        return _configured or ("auto", "default")


def reset() -> None:
    """Forget the store chosen so far and whether the notice was shown (a new session)."""
    global _active, _noticed
    with _state_lock:
        _active = None
        _noticed = False


def _notify(info: StoreInfo) -> None:
    global _noticed
    if _noticed:
        return
    _noticed = True
    stream = sys.stderr
    if stream is not None:
        print(f"note: secrets are kept in {info.location} ({info.reason})", file=stream, flush=True)


def _choose(mode: str, origin: str, folder: Path) -> tuple[StoreInfo, Any]:
    import keyring

    file_store = FileStore(folder)
    if mode == "file":
        return StoreInfo("file", str(file_store.path), mode, origin, f"asked for by {origin}"), file_store
    try:
        backend = keyring.get_keyring()
        reason = keyring_unusable_reason(backend)
    except Exception as exc:
        backend, reason = None, f"keyring could not pick a backend: {type(exc).__name__}: {exc}"
    if mode == "os":
        if reason is not None:
            raise ConfigError(f"secrets store \"os\" (asked for by {origin}) is not usable: {reason}. "
                              + HOW_TO_GET_A_KEYRING)
        return (StoreInfo("os", backend_name(backend), mode, origin, f"asked for by {origin}"),
                OsKeyring(backend))
    if reason is None:
        try:
            OsKeyring(backend).get(_PROBE_NAME)
        except _KeyringFailed as exc:
            reason = exc.reason
    if reason is None:
        return (StoreInfo("os", backend_name(backend), mode, origin, "an OS keyring is available"),
                OsKeyring(backend))
    return StoreInfo("file", str(file_store.path), mode, origin, f"no OS keyring: {reason}"), file_store


def _resolve(*, notify: bool = True) -> tuple[StoreInfo, Any]:
    global _active
    mode, origin = requested()
    key = (mode, origin, str(secrets_dir()))
    with _state_lock:
        if _active is None or _active[0] != key:
            info, store = _choose(mode, origin, Path(key[2]))
            _active = (key, info, store)
        _, info, store = _active
        if notify and info.requested == "auto" and info.store == "file":
            _notify(info)
        return info, store


def _fall_back(old: StoreInfo, reason: str) -> tuple[StoreInfo, FileStore]:
    """Auto mode after the keyring failed in use: the file for the rest of this process."""
    global _active
    folder = secrets_dir()
    file_store = FileStore(folder)
    info = StoreInfo("file", str(file_store.path), old.requested, old.requested_by,
                     f"no OS keyring: {reason}")
    with _state_lock:
        _active = ((old.requested, old.requested_by, str(folder)), info, file_store)
        _notify(info)
    return info, file_store


def current_store(*, notify: bool = False) -> StoreInfo:
    """The store secrets go to in this process and why; raises ConfigError when ``os`` is unusable."""
    return _resolve(notify=notify)[0]


def _use(op: Callable[[StoreInfo, Any], T]) -> T:
    info, store = _resolve()
    try:
        return op(info, store)
    except _KeyringFailed as exc:
        if info.requested != "auto":
            raise ConfigError(f"secrets store \"os\" (asked for by {info.requested_by}) failed: "
                              f"{exc.reason}. {HOW_TO_GET_A_KEYRING}") from None
        info, file_store = _fall_back(info, exc.reason)
        return op(info, file_store)


def _name(ref: dict[str, str]) -> str:
    if not is_ref(ref) or not isinstance(ref["keyring"], str) or not ref["keyring"]:
        raise ConfigError("a secret reference must look like {keyring = \"<name>\"}")
    return ref["keyring"]


# --- the three operations ---------------------------------------------------------------
def store_secret(ref: dict[str, str], value: str) -> None:
    name = _name(ref)
    _use(lambda _info, store: store.set(name, value))


def load_secret(ref: dict[str, str]) -> str:
    name = _name(ref)

    def get(info: StoreInfo, store: Any) -> str:
        value = store.get(name)
        if value is None and info.requested == "auto" and store.kind == "os":
            spare = FileStore(secrets_dir())
            if spare.exists():
                value = spare.get(name)
        if value is None:
            raise SecretMissing(f"secret {name} is not in {store.label}; set it again "
                                "(for a source: lithotse source add NAME ... --replace)")
        return value

    return _use(get)


def delete_secret(ref: dict[str, str]) -> None:
    """Forget a secret wherever this process would look for it; a missing one is fine."""
    name = _name(ref)

    def delete(info: StoreInfo, store: Any) -> None:
        store.delete(name)
        if info.requested == "auto" and store.kind == "os":
            spare = FileStore(secrets_dir())
            if spare.exists():
                spare.delete(name)

    _use(delete)
