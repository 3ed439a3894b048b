"""Secrets: the OS keyring when one is usable, else a private file; never in outputs or configs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from lithotse_desktop import secrets
from lithotse_desktop.errors import ConfigError
from lithotse_desktop.secrets import SecretMissing, current_store, delete_secret, load_secret, secret_ref, store_secret
from tests.conftest import run_lithotse
from tests.support.keyring_backend import LockedOnWriteKeyring

NOTE = "note: secrets are kept in "


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Each test starts like a new command: no store chosen yet, no notice shown."""
    secrets.reset()
    yield
    secrets.reset()


@pytest.fixture
def file_dir(tmp_path, monkeypatch):
    """The file store pinned to a folder of this test."""
    folder = tmp_path / "conf" / "lithotse"
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "file")
    monkeypatch.setenv("LITHOTSE_SECRETS_DIR", str(folder))
    return folder


@pytest.fixture
def no_keyring(tmp_path, monkeypatch):
    """Auto mode on a machine whose keyring has no backend (the session default backend)."""
    keyring.set_keyring(fail.Keyring())
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "auto")
    monkeypatch.setenv("LITHOTSE_SECRETS_DIR", str(tmp_path / "auto"))
    return tmp_path / "auto"


def read_file_store(folder: Path) -> dict:
    return json.loads((folder / "secrets.json").read_text())["secrets"]


# --- choosing the store -------------------------------------------------------------------
def test_auto_uses_a_working_os_keyring(os_keyring, tmp_path, capsys):
    store_secret(secret_ref("ws1", "api"), "kept-by-the-os")
    assert load_secret(secret_ref("ws1", "api")) == "kept-by-the-os"
    info = current_store()
    assert (info.store, info.requested, info.location) == ("os", "auto", "keyring backend FileKeyring")
    assert json.loads(os_keyring.read_text()) == {"lithotse\x00ws1/api": "kept-by-the-os"}
    assert not (tmp_path / "secrets").exists(), "nothing goes to the file while the keyring works"
    assert capsys.readouterr().err == ""


def test_auto_without_a_keyring_falls_back_to_the_file_and_says_so_once(no_keyring, capsys):
    for n in range(3):
        store_secret(secret_ref("ws1", f"s{n}"), f"value-{n}")
    assert [load_secret(secret_ref("ws1", f"s{n}")) for n in range(3)] == ["value-0", "value-1", "value-2"]
    err = capsys.readouterr().err
    assert err.count(NOTE) == 1
    assert f"{no_keyring / 'secrets.json'} (no OS keyring: keyring found no recommended backend" in err
    assert "value-" not in err
    info = current_store()
    assert (info.store, info.requested, info.requested_by) == ("file", "auto", "LITHOTSE_SECRETS_STORE")
    assert read_file_store(no_keyring) == {"ws1/s0": "value-0", "ws1/s1": "value-1", "ws1/s2": "value-2"}


def test_auto_falls_back_when_the_keyring_fails_in_use_and_still_finds_it_later(os_keyring, tmp_path, capsys):
    keyring.set_keyring(LockedOnWriteKeyring())
    store_secret(secret_ref("ws1", "token"), "written-while-locked")
    err = capsys.readouterr().err
    assert err.count(NOTE) == 1
    assert "KeyringLocked: collection is locked" in err and "written-while-locked" not in err
    assert current_store().store == "file"
    assert load_secret(secret_ref("ws1", "token")) == "written-while-locked"
    assert read_file_store(tmp_path / "secrets") == {"ws1/token": "written-while-locked"}
    # the next command finds the keyring answering reads: it is chosen again, and a secret the
    # file holds is still found there instead of being taken for missing
    secrets.reset()
    assert current_store().store == "os"
    assert load_secret(secret_ref("ws1", "token")) == "written-while-locked"
    delete_secret(secret_ref("ws1", "token"))
    with pytest.raises(SecretMissing):
        load_secret(secret_ref("ws1", "token"))


def test_os_mode_refuses_to_fall_back(monkeypatch):
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "os")
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(ConfigError) as caught:
        store_secret(secret_ref("ws1", "x"), "never-stored")
    message = str(caught.value)
    assert 'secrets store "os" (asked for by LITHOTSE_SECRETS_STORE) is not usable' in message
    assert "Install and unlock an OS keyring" in message and "never-stored" not in message


def test_os_mode_uses_the_keyring_and_reports_its_failures(os_keyring, monkeypatch, tmp_path):
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "os")
    store_secret(secret_ref("ws1", "x"), "in-the-keyring")
    assert json.loads(os_keyring.read_text()) == {"lithotse\x00ws1/x": "in-the-keyring"}
    secrets.reset()
    keyring.set_keyring(LockedOnWriteKeyring())
    with pytest.raises(ConfigError, match="failed: keyring backend LockedOnWriteKeyring failed: "
                                          "KeyringLocked.*Install and unlock"):
        store_secret(secret_ref("ws1", "y"), "refused")
    assert not (tmp_path / "secrets").exists()


def test_os_mode_from_the_cli_exits_1_with_the_how_to(workspace):
    result = run_lithotse("token", env={"LITHOTSE_SECRETS_STORE": "os",
                                        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith('error: secrets store "os" (asked for by LITHOTSE_SECRETS_STORE) is not usable')
    assert "GNOME Keyring or KWallet" in result.stderr and "LITHOTSE_SECRETS_STORE=file" in result.stderr


def test_workspace_setting_chooses_and_the_environment_wins(workspace, monkeypatch, tmp_path):
    from lithotse_desktop.workspace import Workspace

    monkeypatch.delenv("LITHOTSE_SECRETS_STORE")
    monkeypatch.setenv("LITHOTSE_SECRETS_DIR", str(tmp_path / "from-toml"))
    workspace.config["secrets"] = {"store": "file"}
    workspace.save()
    ws = Workspace.open(workspace.root)
    info = current_store()
    assert (info.store, info.requested, info.requested_by) == ("file", "file", str(ws.root / "lithotse.toml"))
    store_secret(secret_ref(ws.id, "t"), "v")
    assert (tmp_path / "from-toml" / "secrets.json").exists()
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "os")
    with pytest.raises(ConfigError, match="asked for by LITHOTSE_SECRETS_STORE"):
        current_store()
    monkeypatch.delenv("LITHOTSE_SECRETS_STORE")
    workspace.config["secrets"] = {"store": "vault"}
    workspace.save()
    with pytest.raises(ConfigError, match=r"lithotse.toml: \[secrets\] store: secrets store 'vault' is not one of"):
        Workspace.open(workspace.root)
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "keychain")
    with pytest.raises(ConfigError, match="LITHOTSE_SECRETS_STORE: secrets store 'keychain'"):
        current_store()


def test_default_location_is_the_user_config_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("LITHOTSE_SECRETS_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        assert secrets.secrets_dir() == tmp_path / "xdg" / "lithotse"
    import platformdirs

    assert secrets.secrets_dir() == Path(platformdirs.user_config_dir("lithotse", appauthor=False))


# --- the file store -----------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="POSIX modes; Windows protects the folder with ACLs")
def test_file_store_is_private_from_the_start_whatever_the_umask(file_dir):
    old = os.umask(0)
    try:
        store_secret(secret_ref("ws1", "a"), "alpha")
        store_secret(secret_ref("ws1", "b"), "beta")
    finally:
        os.umask(old)
    assert stat.S_IMODE(file_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((file_dir / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((file_dir / "secrets.lock").stat().st_mode) == 0o600
    assert read_file_store(file_dir) == {"ws1/a": "alpha", "ws1/b": "beta"}
    assert sorted(p.name for p in file_dir.iterdir()) == ["secrets.json", "secrets.lock"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes; Windows protects the folder with ACLs")
def test_file_store_refuses_files_others_could_read_or_own(file_dir, monkeypatch):
    store_secret(secret_ref("ws1", "a"), "alpha-value")
    path = file_dir / "secrets.json"
    path.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        load_secret(secret_ref("ws1", "a"))
    assert str(caught.value) == (f"{path}: other users may read or change it (mode 0644); a secrets "
                                 f"file must be private. Check who could have read it, then run: chmod 600 {path}")
    with pytest.raises(ConfigError, match="other users may read"):
        store_secret(secret_ref("ws1", "b"), "beta")
    path.chmod(0o600)
    file_dir.chmod(0o777)
    with pytest.raises(ConfigError, match="other users may write to this folder"):
        store_secret(secret_ref("ws1", "b"), "beta")
    file_dir.chmod(0o700)
    with monkeypatch.context() as patch:
        patch.setattr(os, "getuid", lambda: os.stat(path).st_uid + 1)
        with pytest.raises(ConfigError, match="owned by another user"):
            load_secret(secret_ref("ws1", "a"))
    assert load_secret(secret_ref("ws1", "a")) == "alpha-value"


@pytest.mark.skipif(os.name != "posix", reason="symbolic links need privileges on Windows")
def test_file_store_refuses_a_symbolic_link(file_dir, tmp_path):
    store_secret(secret_ref("ws1", "a"), "alpha")
    elsewhere = tmp_path / "elsewhere.json"
    (file_dir / "secrets.json").rename(elsewhere)
    (file_dir / "secrets.json").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        load_secret(secret_ref("ws1", "a"))


def test_damaged_file_is_refused_without_showing_its_content(file_dir):
    store_secret(secret_ref("ws1", "a"), "alpha")
    path = file_dir / "secrets.json"
    path.write_text('{"format": "lithotse-secrets", "secrets": {"ws1/a": "hunter2"')
    with pytest.raises(ConfigError) as caught:
        load_secret(secret_ref("ws1", "a"))
    assert str(caught.value).startswith(f"{path}: line 1 column ")
    assert "hunter2" not in str(caught.value)
    path.write_bytes(b'{"secrets": {"a": "\xff\xfe"}}')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_secret(secret_ref("ws1", "a"))
    path.write_text('{"ws1/a": "hunter2"}')
    with pytest.raises(ConfigError, match="not a Lithotse secrets file") as caught:
        load_secret(secret_ref("ws1", "a"))
    assert "hunter2" not in str(caught.value)


def test_missing_and_deleted_secrets(file_dir):
    with pytest.raises(SecretMissing, match=f"secret ws1/a is not in the secrets file {file_dir / 'secrets.json'}"):
        load_secret(secret_ref("ws1", "a"))
    assert not file_dir.exists(), "reading creates nothing"
    store_secret(secret_ref("ws1", "a"), "alpha")
    store_secret(secret_ref("ws1", "b"), "beta")
    delete_secret(secret_ref("ws1", "a"))
    delete_secret(secret_ref("ws1", "never-there"))
    assert read_file_store(file_dir) == {"ws1/b": "beta"}
    with pytest.raises(ConfigError, match="must look like"):
        load_secret({"password": "x"})


def test_a_failed_write_leaves_the_old_file_whole(file_dir, monkeypatch):
    store_secret(secret_ref("ws1", "a"), "alpha")
    before = (file_dir / "secrets.json").read_bytes()

    def crash(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="No space left"):
            store_secret(secret_ref("ws1", "b"), "beta")
    assert (file_dir / "secrets.json").read_bytes() == before
    assert sorted(p.name for p in file_dir.iterdir()) == ["secrets.json", "secrets.lock"], "no temp file left"
    assert load_secret(secret_ref("ws1", "a")) == "alpha"


WRITER = textwrap.dedent("""
    import sys
    from lithotse_desktop.secrets import secret_ref, store_secret
    tag, count = sys.argv[1], int(sys.argv[2])
    for n in range(count):
        store_secret(secret_ref("ws", f"{tag}-{n}"), f"value-{tag}-{n}")
""")


def test_two_processes_adding_secrets_at_once_lose_nothing(file_dir):
    env = {**os.environ, "LITHOTSE_SECRETS_STORE": "file", "LITHOTSE_SECRETS_DIR": str(file_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, tag, "60"], env=env, stderr=subprocess.PIPE,
                              text=True) for tag in ("p1", "p2")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    expected = {f"ws/{tag}-{n}": f"value-{tag}-{n}" for tag in ("p1", "p2") for n in range(60)}
    assert read_file_store(file_dir) == expected


# --- secrets never leave the store -------------------------------------------------------
def test_secret_values_appear_in_no_output_config_or_audit(cli, workspace, tmp_path):
    from lithotse_desktop.derive.pseudonymize import workspace_key
    from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
    from lithotse_desktop.storage.s3 import save_credentials
    from lithotse_desktop.workspace import Workspace
    from tests.support import lines_connector

    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    try:
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "a.txt").write_text("2024-01-01,1,x,patient-001\n")
        source_secret = "source-token-Q7c91"
        s3_secret = "s3-secret-key-Zx8812"
        outputs = [cli("source", "add", "vals", "--connector", "lines", "--set", f"path={folder}",
                       "--set", "token=-", input=source_secret + "\n")]
        ref = secret_ref(workspace.id, "store/team")
        save_credentials(ref, "AKIDEXAMPLE", s3_secret)
        ws = Workspace.open(workspace.root)
        ws.config["stores"]["team"] = {"url": "s3://bucket/prefix", "endpoint_url": "http://127.0.0.1:9",
                                       "credentials": ref}
        ws.save()
        outputs.append(cli("import", "vals", "--json"))
        outputs.append(cli("source", "list", "--json"))
        token_run = cli("token")
        outputs.append(token_run)
        outputs.append(cli("doctor", "--json"))
        outputs.append(cli("doctor"))
        outputs.append(cli("audit", "--json"))
        token = token_run.stdout.strip()
        hmac_key = workspace_key(Workspace.open(workspace.root)).hex()
        values = [source_secret, s3_secret, token, hmac_key]
        for result in outputs:
            for value in values:
                if result is token_run and value == token:
                    assert result.stdout == token + "\n" and token not in result.stderr
                    continue
                assert value not in result.stdout and value not in result.stderr
        doctor = json.loads(outputs[4].stdout)
        assert doctor["secrets"]["store"] == "file"
        assert [s["status"] for s in doctor["stores"] if s["name"] == "team"] == ["unreachable"]
        audit_rows = json.loads(outputs[-1].stdout)
        assert [row["action"] for row in audit_rows] == ["import"]
        for path in workspace.root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for value in values:
                    assert value.encode() not in data, path
    finally:
        reset_plugin_manager()


# --- a fresh headless machine -------------------------------------------------------------
def test_fresh_headless_machine_init_and_token(tmp_path):
    """The issue's case: empty HOME, no keyring settings, a minimal environment."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if os.name == "nt":
        env.update({k: os.environ[k] for k in ("SYSTEMROOT", "USERPROFILE", "LOCALAPPDATA", "APPDATA")
                    if k in os.environ})

    def lithotse(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lithotse_desktop", *args], capture_output=True,
                              text=True, env=env, timeout=120)

    ws = tmp_path / "ws"
    init = lithotse("init", str(ws))
    assert init.returncode == 0, init.stderr
    first, second = lithotse("token", "--workspace", str(ws)), lithotse("token", "--workspace", str(ws))
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 40
    assert first.stdout.count("\n") == 1, "only the token on stdout"
    doctor = json.loads(lithotse("doctor", "--json", "--workspace", str(ws)).stdout)
    if sys.platform.startswith("linux"):
        assert doctor["secrets"]["store"] == "file", "env -i leaves no Secret Service reachable"
    if doctor["secrets"]["store"] == "file":
        path = Path(doctor["secrets"]["location"])
        if sys.platform.startswith("linux"):
            assert path == home / ".config" / "lithotse" / "secrets.json"
        for run in (first, second):
            assert run.stderr.count(NOTE) == 1
            assert run.stderr.startswith(f"{NOTE}{path} (no OS keyring: ")
        assert first.stdout.strip() not in first.stderr + second.stderr
        if os.name == "posix":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    else:
        assert NOTE not in first.stderr + second.stderr
    assert not any(first.stdout.strip() in p.read_text(errors="replace")
                   for p in ws.rglob("*") if p.is_file())
