"""The built-in stores as a plugin (``builtin-stores``): local folders and ``s3://`` buckets.

The plugin manager registers this module like any plugin; its hook is marked to run first,
so a third-party plugin can add URL schemes but not take over these two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from . import Store


@hookimpl(tryfirst=True)
def lithotse_open_store(url: str, options: dict[str, Any], base: Path) -> Store | None:
    if url.startswith("s3://"):
        from .s3 import S3Store  # boto3 is imported only by workspaces that use S3

        return S3Store(url, **options)
    if url.startswith("file://") or "://" not in url:
        from .local import LocalStore

        raw = url[len("file://"):] if url.startswith("file://") else url
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = (Path(base) / path).resolve()
        return LocalStore(path)
    return None
