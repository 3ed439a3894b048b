"""Lithotse plugin: the ``hl7v2`` connector for files of HL7 v2 messages."""

from __future__ import annotations

from lithotse_desktop.plugin import hookimpl

from .connector import Hl7v2Connector

__all__ = ["Hl7v2Connector"]


@hookimpl
def lithotse_register_connectors():
    return [Hl7v2Connector]
