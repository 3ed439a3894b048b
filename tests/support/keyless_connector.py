"""A third-party-like connector that declares no record key: records are their object and line.

It reads the same ``date,value[,group]`` lines as :mod:`tests.support.lines_connector`, whose
streams declare a key, so tests can compare the two identities on the same files.
"""

from __future__ import annotations

from lithotse_desktop.connectors import Connector, StreamInfo
from lithotse_desktop.hookspecs import hookimpl
from tests.support.lines_connector import LinesConnector


class TallyConnector(LinesConnector):
    name = "tally"
    version = "2.3"

    def streams(self) -> list[StreamInfo]:
        return [StreamInfo("values", date_field="day")]


@hookimpl
def lithotse_register_connectors() -> list[type[Connector]]:
    return [TallyConnector]
