"""A connector whose fetch runs until cancelled, reporting progress: for the Cancel button."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyarrow as pa

from lithotse_desktop.connectors import Connector, FetchRequest, Payload, RawObject, StreamInfo
from lithotse_desktop.errors import LithotseError
from lithotse_desktop.hookspecs import hookimpl


class SlowConnector(Connector):
    name = "slow"
    version = "1.0"
    title = "Slow test source"

    def streams(self) -> list[StreamInfo]:
        return [StreamInfo("ticks", date_field=None)]

    def fetch(self, request: FetchRequest) -> Iterator[Payload]:
        """Wait up to 30 s, checking for cancellation; if nobody cancels, say so as an error."""
        for tick in range(6000):
            request.progress.update(f"waiting for the slow source (tick {tick})", records=1)
            time.sleep(0.005)
        raise LithotseError("the slow source was never cancelled")

    def read(self, obj: RawObject) -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"tick": pa.array([], pa.int64())})


@hookimpl
def lithotse_register_connectors():
    return [SlowConnector]
