"""S3 store (AWS or any S3-compatible server such as SeaweedFS or MinIO), through boto3.

``s3://bucket/prefix`` maps store key ``k`` to object ``prefix/k``, so a tier pushed from a
local folder reads the same when the workspace points that tier at the bucket instead.

Atomicity comes from the server: a PUT (or CompleteMultipartUpload) becomes visible whole.
Create-only writes send ``If-None-Match: *`` and updates send ``If-Match: <etag>``, so two
machines writing the same bucket never overwrite each other unknowingly. Large files go up
as multipart uploads that a later run resumes (parts already on the server whose MD5 matches
the local bytes are kept), and the create-only condition is checked on completion. An upload
that is never resumed (its file changed or went away) stays on the server until the bucket's
``AbortIncompleteMultipartUpload`` lifecycle rule removes it; this store never aborts uploads
it did not start itself, since another machine may be finishing them.

Credentials come from Lithotse's secrets store, the OS keyring or its private file
(``credentials = {keyring = "<ref>"}`` in the store's table names the secret, see
:mod:`lithotse_desktop.secrets`; it is JSON ``{"access_key_id": …, "secret_access_key": …}``) or from the
standard AWS chain (profile, ``AWS_*`` variables, ``AWS_ENDPOINT_URL``). They are never
logged, never part of an error message and never written to the workspace config.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from ..atomic import fsync_dir
from ..errors import ConfigError, LithotseError, NotFound
from ..secrets import is_ref, load_secret, store_secret
from . import AccessDenied, ObjectInfo, PreconditionFailed, Store, check_key

MiB = 1 << 20
_CREATE_ATTEMPTS = 12
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}

ByteCallback = Callable[[int], None]


class ObjectMissing(NotFound, FileNotFoundError):
    """No object under that key; also a FileNotFoundError, as with the local store."""


def save_credentials(ref: dict[str, str], access_key_id: str, secret_access_key: str,
                     session_token: str | None = None) -> None:
    """Put S3 keys in the secrets store under ``ref``; the store config then holds only the ref."""
    value = {"access_key_id": access_key_id, "secret_access_key": secret_access_key}
    if session_token:
        value["session_token"] = session_token
    store_secret(ref, json.dumps(value))


def _keyring_credentials(ref: Any, url: str) -> dict[str, str]:
    if not is_ref(ref):
        raise ConfigError(f"{url}: credentials must be a keyring reference "
                          "(credentials = {keyring = \"…\"}); keys are never kept in the config")
    try:
        data = json.loads(load_secret(ref))
        out = {"aws_access_key_id": data["access_key_id"],
               "aws_secret_access_key": data["secret_access_key"]}
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"{url}: secret {ref['keyring']} is not JSON with "
                          "access_key_id and secret_access_key") from None
    if data.get("session_token"):
        out["aws_session_token"] = data["session_token"]
    return out


class _Body(io.RawIOBase):
    """A streaming GET body whose network failures surface as LithotseError."""

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, HTTPError, OSError) as exc:
            raise LithotseError(f"{self._where}: download interrupted: {exc}") from None
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Store(Store):
    """A store in one bucket below one prefix; the boto3 client is created on first use."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 profile: str | None = None, credentials: dict[str, str] | None = None,
                 multipart_threshold: int = 16 * MiB, part_size: int = 8 * MiB,
                 max_workers: int = 8, **unknown: Any) -> None:
        if unknown:
            raise ConfigError(f"{url}: unknown store option(s) {', '.join(sorted(unknown))}; known: "
                              "endpoint_url, region, profile, credentials, multipart_threshold, "
                              "part_size, max_workers")
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"{url!r}: expected s3://bucket or s3://bucket/prefix")
        self.bucket = parsed.netloc
        path = parsed.path.strip("/")
        if path:
            check_key(path)
        self.prefix = f"{path}/" if path else ""
        self.url = f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"
        self.endpoint_url = endpoint_url
        self.region = region
        self.profile = profile
        self._credentials_ref = credentials
        if part_size < 5 * MiB:
            raise ConfigError(f"{url}: part_size must be at least 5 MiB (an S3 limit)")
        self.multipart_threshold = max(int(multipart_threshold), int(part_size))
        self.part_size = int(part_size)
        self.max_workers = max(1, int(max_workers))
        self._client: Any = None
        self._session: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint_url={self.endpoint_url!r})"

    # --- client and errors ----------------------------------------------------
    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self, *, connect_timeout: float = 5, read_timeout: float = 60,
                     attempts: int = 4) -> Any:
        import boto3
        import botocore.config
        from botocore.exceptions import BotoCoreError, ProfileNotFound

        kwargs: dict[str, Any] = {}
        if self._credentials_ref is not None:
            kwargs.update(_keyring_credentials(self._credentials_ref, self.url))
        elif self.profile:
            kwargs["profile_name"] = self.profile
        try:
            session = boto3.session.Session(**kwargs)
        except ProfileNotFound:
            raise ConfigError(f"{self.url}: AWS profile {self.profile!r} is not configured") from None
        region = self.region or session.region_name or "us-east-1"
        path_style = bool(self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
                          or os.environ.get("AWS_ENDPOINT_URL_S3"))
        config = botocore.config.Config(
            region_name=region, connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"max_attempts": attempts, "mode": "standard"},
            max_pool_connections=max(10, 2 * self.max_workers),
            s3={"addressing_style": "path"} if path_style else {})
        try:
            client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError(f"{self.url}: cannot set up the S3 client: {exc}") from None
        self._session = session
        return client

    def probe(self, timeout: float = 3.0) -> tuple[str, str]:
        """``(status, detail)`` from listing one key with short timeouts and no retries.

        status is ``ok``, ``denied`` (credentials refused), ``missing`` (no such bucket),
        ``unreachable`` (no answer from the endpoint) or ``error`` (anything else, e.g. no
        credentials); detail is a message without secrets. For ``lithotse doctor``.
        """
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

        try:
            client = self._make_client(connect_timeout=timeout, read_timeout=timeout, attempts=1)
            client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except LithotseError as exc:
            return "error", str(exc)
        except (ConnectionError, HTTPClientError) as exc:
            return "unreachable", str(self._error(exc, "list"))
        except (ClientError, BotoCoreError) as exc:
            error = self._error(exc, "list")
            if isinstance(error, AccessDenied):
                return "denied", str(error)
            if isinstance(error, NotFound):
                return "missing", str(error)
            return "error", str(error)
        endpoint = self.endpoint_url or client.meta.endpoint_url
        return "ok", f"listed {self.url} at {endpoint}"

    def _where(self, key: str | None = None) -> str:
        base = self.url if key is None else f"{self.url.rstrip('/')}/{key}"
        endpoint = self.endpoint_url or (self._client.meta.endpoint_url if self._client else None)
        return f"{base} (at {endpoint})" if endpoint else base

    def _error(self, exc: Exception, op: str, key: str | None = None) -> LithotseError:
        """Turn a botocore failure into a message that names the URL and what to check."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = self._where(key)
        if isinstance(exc, LithotseError):
            return exc
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigError(f"{where}: no S3 credentials: set credentials = {{keyring = \"…\"}} "
                               "for this store, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                               "an AWS profile")
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            return LithotseError(f"{where}: cannot reach the S3 endpoint ({type(exc).__name__}); "
                                 "check endpoint_url and that the server is running")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
            if code == "NoSuchBucket":
                return NotFound(f"{where}: bucket {self.bucket!r} does not exist")
            if code in _MISSING_CODES:
                return ObjectMissing(f"{where}: no such object")
            if code == "SignatureDoesNotMatch":
                return AccessDenied(f"{where}: the secret key was rejected (signature does not "
                                    "match); check the credentials for this store")
            if code == "InvalidAccessKeyId":
                return AccessDenied(f"{where}: the access key id is unknown to this server; "
                                    "check the credentials for this store")
            if code in _DENIED_CODES:
                return AccessDenied(f"{where}: access denied: these credentials may not {op} here")
            message = err.get("Message") or ""
            return LithotseError(f"{where}: {op} failed: {code} {message}".rstrip())
        return LithotseError(f"{where}: {op} failed: {exc}")

    @staticmethod
    def _code(exc: Exception) -> str:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return ""
        err = exc.response.get("Error", {})
        return str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))

    def _is_precondition(self, exc: Exception) -> bool:
        code = self._code(exc)
        return code in _PRECONDITION_CODES or code in ("412", "409")

    def _call(self, op: str, key: str | None, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, op, key) from None

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    # --- writes ---------------------------------------------------------------
    def put_file(self, key: str, path: Path, *, if_none_match: bool = False, move: bool = False,
                 on_bytes: ByteCallback | None = None) -> bool:
        """Upload a file (multipart above ``multipart_threshold``, resumable); see Store.put_file.

        With ``if_none_match``, False means the object is really there: a server may refuse a
        create while another create of the same key is still in flight, and that one can fail.
        """
        path = Path(path)
        full = self._full(key)
        size = path.stat().st_size
        for attempt in range(_CREATE_ATTEMPTS):
            if size > self.multipart_threshold:
                written = self._put_multipart(key, full, path, size, if_none_match, on_bytes)
            else:
                written = self._put_single(key, full, path, if_none_match)
            if written or not if_none_match or self.stat(key) is not None:
                break
            time.sleep(0.1 * (attempt + 1))
        else:
            raise LithotseError(f"{self._where(key)}: could not be created: another writer kept "
                                "it busy; try again")
        if on_bytes is not None and size <= self.multipart_threshold:
            on_bytes(size)
        if written and move:
            path.unlink(missing_ok=True)
        return written

    def _put_single(self, key: str, full: str, path: Path, if_none_match: bool) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            with open(path, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=full, Body=body, **extra)
        except ClientError as exc:
            if if_none_match and self._is_precondition(exc):
                return False
            raise self._error(exc, "write", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "write", key) from None
        return True

    def put_bytes(self, key: str, data: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        extra: dict[str, str] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data,
                                              **extra)
        except ClientError as exc:
            if extra and (self._is_precondition(exc) or (if_match and self._code(exc) in _MISSING_CODES)):
                what = "already exists" if if_none_match else "changed or vanished since it was read"
                raise PreconditionFailed(f"{self._where(key)}: {what}") from None
            raise self._error(exc, "write", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "write", key) from None
        return response["ETag"]

    def _put_multipart(self, key: str, full: str, path: Path, size: int, if_none_match: bool,
                       on_bytes: ByteCallback | None) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if if_none_match and self.stat(key) is not None:
            return False
        ranges = [(n, off, min(self.part_size, size - off))
                  for n, off in enumerate(range(0, size, self.part_size), 1)]
        for attempt in range(2):
            upload_id, done = self._resumable_upload(key, full, path, ranges)
            if upload_id is None:
                upload_id = self._call("start an upload to", key, self.client.create_multipart_upload,
                                       Key=full)["UploadId"]
            if on_bytes is not None:
                on_bytes(sum(length for n, _, length in ranges if n in done))
            try:
                etags = self._upload_parts(full, path, upload_id, ranges, done, on_bytes)
                parts = [{"PartNumber": n, "ETag": etags[n]} for n, _, _ in ranges]
                extra = {"IfNoneMatch": "*"} if if_none_match else {}
                done_upload = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id,
                    MultipartUpload={"Parts": parts}, **extra)
                if if_none_match:
                    return self._still_ours(key, done_upload.get("ETag"))
                return True
            except ClientError as exc:
                if if_none_match and self._is_precondition(exc):
                    if self.stat(key) is not None:
                        self._abort(full, upload_id)
                    return False  # otherwise put_file retries, resuming these parts
                if self._code(exc) == "NoSuchUpload" and attempt == 0:
                    # another writer completed or aborted the upload we resumed
                    if if_none_match and self.stat(key) is not None:
                        return False
                    continue
                raise self._error(exc, "upload", key) from None
            except BotoCoreError as exc:
                raise self._error(exc, "upload", key) from None
        raise LithotseError(f"{self._where(key)}: upload kept being interrupted by another writer")

    def _still_ours(self, key: str, etag: str | None) -> bool:
        """After a create-only completion: whether the object is still the one we completed.

        Some S3 servers (SeaweedFS among them) check ``If-None-Match`` on a multipart
        completion apart from committing it, so two concurrent completions can both be
        accepted and the later one replaces the earlier. The earlier writer then sees another
        ETag here and reports that it did not create the object, as with a refused create.
        """
        info = self.stat(key)
        return info is not None and (etag is None or info.etag == etag)

    def _abort(self, full: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass

    def _resumable_upload(self, key: str, full: str, path: Path,
                          ranges: list[tuple[int, int, int]]) -> tuple[str | None, dict[int, str]]:
        """An unfinished upload of this key whose parts match the local bytes, if any."""
        from botocore.exceptions import BotoCoreError, ClientError

        listing = self._call("list uploads in", key, self.client.list_multipart_uploads, Prefix=full)
        uploads = sorted((u for u in listing.get("Uploads", []) if u["Key"] == full),
                         key=lambda u: u["Initiated"], reverse=True)
        expected = {n: (off, length) for n, off, length in ranges}
        for upload in uploads:
            kept: dict[int, str] = {}
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=full, UploadId=upload["UploadId"])
            try:
                server_parts = [p for page in pages for p in page.get("Parts", [])]
            except (ClientError, BotoCoreError) as exc:
                if self._code(exc) == "NoSuchUpload":  # finished or aborted meanwhile
                    continue
                raise self._error(exc, "list parts in", key) from None
            with open(path, "rb") as fh:
                for part in server_parts:
                    n = part["PartNumber"]
                    if n not in expected or part["Size"] != expected[n][1]:
                        continue
                    fh.seek(expected[n][0])
                    digest = hashlib.md5(fh.read(expected[n][1]), usedforsecurity=False).hexdigest()
                    if part["ETag"].strip('"') == digest:
                        kept[n] = part["ETag"]
            if kept:
                return upload["UploadId"], kept
        return None, {}

    def _upload_parts(self, full: str, path: Path, upload_id: str, ranges: list[tuple[int, int, int]],
                      done: dict[int, str], on_bytes: ByteCallback | None) -> dict[int, str]:
        etags = dict(done)

        def send(n: int, off: int, length: int) -> tuple[int, str]:
            with open(path, "rb") as fh:
                fh.seek(off)
                data = fh.read(length)
            response = self.client.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id,
                                               PartNumber=n, Body=data)
            if on_bytes is not None:
                on_bytes(length)
            return n, response["ETag"]

        todo = [r for r in ranges if r[0] not in done]
        with futures.ThreadPoolExecutor(self.max_workers) as pool:
            jobs = [pool.submit(send, *r) for r in todo]
            try:
                for job in futures.as_completed(jobs):
                    n, etag = job.result()
                    etags[n] = etag
            except BaseException:
                for job in jobs:
                    job.cancel()
                raise
        return etags

    # --- reads ----------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def open_read(self, key: str) -> BinaryIO:
        response = self._call("read", key, self.client.get_object, Key=self._full(key))
        return io.BufferedReader(_Body(response["Body"], self._where(key)), MiB)

    def fetch_to(self, key: str, dest: Path, *, on_bytes: ByteCallback | None = None,
                 info: ObjectInfo | None = None, durable: bool = True) -> Path:
        """Download to a local file atomically; large objects in parallel byte ranges.

        ``info`` (from a listing) saves a HEAD request; ``durable=False`` skips the fsync for
        scratch copies that the caller moves into a store, which syncs them itself.
        """
        info = info or self.stat(key)
        if info is None:
            raise ObjectMissing(f"{self._where(key)}: no such object")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            if info.size > self.multipart_threshold:
                os.ftruncate(fd, info.size)
                self._ranged_download(key, info, fd, on_bytes)
            else:
                with self.open_read(key) as src:
                    while chunk := src.read(MiB):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
                        if on_bytes is not None:
                            on_bytes(len(chunk))
            if durable:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, dest)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        if durable:
            fsync_dir(dest.parent)
        return dest

    def _ranged_download(self, key: str, info: ObjectInfo, fd: int,
                         on_bytes: ByteCallback | None) -> None:
        full = self._full(key)

        def fetch(off: int) -> None:
            end = min(off + self.part_size, info.size) - 1
            same = {"IfMatch": info.etag} if info.etag.strip('"') else {}
            response = self._call("read", key, self.client.get_object, Key=full,
                                  Range=f"bytes={off}-{end}", **same)
            with _Body(response["Body"], self._where(key)) as body:
                pos = off
                buf = bytearray(MiB)
                while n := body.readinto(buf):
                    os.pwrite(fd, memoryview(buf)[:n], pos)
                    pos += n
                    if on_bytes is not None:
                        on_bytes(n)
            if pos != end + 1:
                raise LithotseError(f"{self._where(key)}: download ended early")

        with futures.ThreadPoolExecutor(self.max_workers) as pool:
            jobs = [pool.submit(fetch, off) for off in range(0, info.size, self.part_size)]
            try:
                for job in futures.as_completed(jobs):
                    job.result()
            except BaseException:
                for job in jobs:
                    job.cancel()
                raise

    def stat(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            code = self._code(exc)
            if code in _MISSING_CODES:
                return None
            if code in _DENIED_CODES:
                self._explain_denied(key)
            raise self._error(exc, "read", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "read", key) from None
        return ObjectInfo(key, response["ContentLength"], response["ETag"],
                          response["LastModified"].timestamp())

    def _explain_denied(self, key: str) -> None:
        """A HEAD 403 has no body; a one-key listing tells a bad secret from a missing grant."""
        self._call("read", key, self.client.list_objects_v2, Prefix=self._full(key), MaxKeys=1)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        cut = len(self.prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][cut:]
                    if not key or key.endswith("/"):
                        continue
                    yield ObjectInfo(key, item["Size"], item["ETag"], item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", prefix or None) from None

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Key=self._full(key))

    def local_path(self, key: str) -> Path | None:
        return None

    def location(self, key: str) -> str | None:
        return f"s3://{self.bucket}/{self._full(key)}"

    # --- Arrow ----------------------------------------------------------------
    def arrow_filesystem(self) -> tuple[Any, str]:
        """A pyarrow S3FileSystem with this store's endpoint and credentials, and the base path.

        DuckDB (or pyarrow.dataset) can then scan Parquet under ``f"{base}/{key}"`` in place.
        """
        from botocore.exceptions import NoCredentialsError
        from pyarrow import fs as pafs

        client = self.client
        creds = self._session.get_credentials()
        if creds is None:
            raise self._error(NoCredentialsError(), "read")
        frozen = creds.get_frozen_credentials()
        endpoint = urlparse(client.meta.endpoint_url)
        kwargs: dict[str, Any] = {"access_key": frozen.access_key, "secret_key": frozen.secret_key,
                                  "session_token": frozen.token, "region": client.meta.region_name,
                                  "scheme": endpoint.scheme or "https"}
        if self.endpoint_url or not endpoint.netloc.endswith("amazonaws.com"):
            kwargs["endpoint_override"] = endpoint.netloc
        base = f"{self.bucket}/{self.prefix.rstrip('/')}" if self.prefix else self.bucket
        return pafs.S3FileSystem(**kwargs), base
