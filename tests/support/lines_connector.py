"""A minimal connector used by core tests: files of ``date,value[,group[,id]]`` lines.

It exists to test landing, manifests, derivatives and plugins without depending on a real
connector's parsing rules; the real connectors have their own tests under tests/plugins.
A fourth field, when present, is the record's id (its key); otherwise ``<file>:<line>``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from lithotse_desktop.connectors import (
    ConfigField,
    Connector,
    FetchRequest,
    FieldType,
    FileTracker,
    Payload,
    RawObject,
    StreamInfo,
    list_files,
)
from lithotse_desktop.errors import InputError
from lithotse_desktop.hookspecs import hookimpl


class LinesConnector(Connector):
    name = "lines"
    version = "1.0"
    fields = (ConfigField("path", FieldType.PATH, "Folder", required=True),
              ConfigField("token", FieldType.SECRET, "Token"))

    def streams(self) -> list[StreamInfo]:
        return [StreamInfo("values", date_field="day", key=("id",))]

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        tracker = FileTracker.from_cursor(request.state.get("values"))
        for path in list_files(Path(self.settings["path"]), ["*.txt"]):
            request.progress.check()
            if request.full or tracker.is_new(path, request.date_range):
                yield Payload("values", path.name, path, "text/plain",
                              cursor=tracker.mark(path, request.date_range))

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        days, values, groups, ids = [], [], [], []
        for n, line in enumerate(Path(obj.path).read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split(",")
            try:
                if not 2 <= len(parts) <= 4:
                    raise ValueError(f"{len(parts)} fields")
                days.append(dt.date.fromisoformat(parts[0]))
                values.append(int(parts[1]))
            except ValueError as exc:
                raise InputError(f"{obj.name}, line {n}", f"expected DATE,INTEGER[,GROUP[,ID]] ({exc})") from None
            groups.append(parts[2] if len(parts) > 2 else None)
            ids.append(parts[3] if len(parts) > 3 else f"{obj.name}:{n}")
        yield pa.record_batch({"id": pa.array(ids, pa.string()), "day": pa.array(days, pa.date32()),
                               "value": pa.array(values, pa.int64()),
                               "grp": pa.array(groups, pa.string())})


@hookimpl
def lithotse_register_connectors():
    return [LinesConnector]
