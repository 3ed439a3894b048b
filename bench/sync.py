"""Benchmark: ``lithotse sync`` against plain boto3 transfers of the same files, in one run.

Starts its own SeaweedFS (tests/support/seaweed.py), lands 200 files of 1 MB and one of
200 MB in a workspace's raw store, then times:

* baseline push: boto3 ``upload_file`` of every file, 8 files at a time (the big one with
  boto3's own multipart defaults);
* sync push of the same workspace to a fresh prefix;
* baseline pull: boto3 ``download_file`` of every object, 8 at a time;
* sync pull into a second, empty workspace;
* a no-op push and pull over 10,000 objects (listings only).

Each transfer runs three times, interleaved with the others, and the fastest run counts. Prints the throughput ratio
(sync / boto3, target >= 0.8) for each direction. Run: ``python bench/sync.py``.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SMALL, SMALL_SIZE, BIG_SIZE, NOOP_OBJECTS, WORKERS, ROUNDS = 200, 1 << 20, 200 << 20, 10_000, 8, 3


def _isolate_secrets(tmp: Path) -> None:
    """Keep bench credentials out of the machine's keyring and config folder."""
    os.environ["LITHOTSE_SECRETS_STORE"] = "file"
    os.environ["LITHOTSE_SECRETS_DIR"] = str(tmp / "secrets")


def _fill(ws, rng_seed: int = 7) -> list[tuple[str, Path]]:
    """Content-addressed objects written straight into the local raw store's folder."""
    import random

    rng = random.Random(rng_seed)
    root = ws.root / "data"
    out = []
    for size in [SMALL_SIZE] * SMALL + [BIG_SIZE]:
        data = rng.randbytes(size)
        key = f"raw/bench/files/{hashlib.sha256(data).hexdigest()}"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append((key, path))
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lithotse-bench-sync-"))
    _isolate_secrets(tmp)
    from lithotse_desktop.secrets import secret_ref
    from lithotse_desktop.sync import pull, push, status
    from lithotse_desktop.workspace import Workspace
    from tests.support.seaweed import SeaweedServer

    server = SeaweedServer(root=tmp / "seaweed")
    try:
        server.start()
        bucket = server.raw_bucket
        client = server.client("client")
        ws = Workspace.create(tmp / "ws")
        options = server.store_options("client", keyring_ref=secret_ref(ws.id, "sync"))
        ws.config["sync"] = options
        ws.save()
        ws = Workspace.open(ws.root)
        files = _fill(ws)
        total = sum(p.stat().st_size for _, p in files)
        print(f"payload: {len(files)} files, {total / 1e6:.0f} MB; SeaweedFS at {server.endpoint_url}")

        def boto_push(attempt: int) -> None:
            prefix = f"boto-{attempt}"
            with cf.ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(lambda kp: client.upload_file(str(kp[1]), bucket, f"{prefix}/{kp[0]}"),
                              files))

        def sync_push(attempt: int) -> None:
            result = push(ws, f"s3://{bucket}/sync-{attempt}")
            # the files, plus the audit records of the earlier pushes (each a few hundred bytes)
            assert result.ok and result.copied == len(files) + attempt, result.summary()

        def boto_pull(attempt: int) -> None:
            dest = tmp / f"boto-pull-{attempt}"
            with cf.ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(lambda kp: _download(client, bucket, f"boto-0/{kp[0]}", dest / kp[0]),
                              files))
            shutil.rmtree(dest)

        def sync_pull(attempt: int) -> None:
            other = Workspace.create(tmp / f"pull-{attempt}")
            other.config["sync"] = options
            other.save()
            result = pull(Workspace.open(other.root), f"s3://{bucket}/sync-0")
            # the files plus the audit record the first push left beside them
            assert result.ok and result.copied == len(files) + 1, result.summary()
            shutil.rmtree(other.root)

        runs: dict[str, list[float]] = {}
        for attempt in range(ROUNDS):  # interleaved, so both sides see the same machine load
            for name, fn in (("boto3 push", boto_push), ("sync push", sync_push),
                             ("boto3 pull", boto_pull), ("sync pull", sync_pull)):
                started = time.perf_counter()
                fn(attempt)
                runs.setdefault(name, []).append(time.perf_counter() - started)
        timings = {name: min(times) for name, times in runs.items()}
        for name, best in timings.items():
            spread = ", ".join(f"{t:.2f}" for t in runs[name])
            print(f"{name:<11} {best:6.2f} s  {total / best / 1e6:7.1f} MB/s  (runs: {spread} s)")
        for direction in ("push", "pull"):
            ratio = timings[f"boto3 {direction}"] / timings[f"sync {direction}"]
            verdict = "ok" if ratio >= 0.8 else "BELOW TARGET"
            print(f"throughput ratio sync/boto3 {direction}: {ratio:.2f} (target >= 0.8) {verdict}")

        print(f"no-op sync over {NOOP_OBJECTS} objects:")
        noop = Workspace.create(tmp / "noop")
        noop.config["sync"] = options
        noop.save()
        noop = Workspace.open(noop.root)
        data_dir = noop.root / "data"
        for n in range(NOOP_OBJECTS):
            path = data_dir / "raw" / "src" / f"s{n // 100:03d}" / f"{n:064x}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"%d" % n)
        url = f"s3://{bucket}/noop"
        server.seed(url, data_dir / "raw")
        push(noop, url)
        for name, fn in (("status", lambda: status(noop, url)), ("push", lambda: push(noop, url)),
                         ("pull", lambda: pull(noop, url))):
            started = time.perf_counter()
            fn()
            print(f"  no-op {name:<6} {time.perf_counter() - started:6.2f} s")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _download(client, bucket: str, key: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    client.download_file(bucket, key, str(dest))


if __name__ == "__main__":
    main()
