"""Lithotse FHIR R4 connectors: files (NDJSON, Bundles), a REST server, Bulk Data $export.

Three connectors rather than one with a mode switch, so the desktop form of each shows only
the settings that apply to it. See README.md for streams and the date rules.
"""

from __future__ import annotations

from lithotse_desktop.plugin import hookimpl

from .bulk import FhirBulkConnector
from .files import FhirFilesConnector
from .rest import FhirRestConnector

__all__ = ["FhirBulkConnector", "FhirFilesConnector", "FhirRestConnector"]


@hookimpl
def lithotse_register_connectors():
    return [FhirFilesConnector, FhirRestConnector, FhirBulkConnector]
