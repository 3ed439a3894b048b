"""The one error type of the SQL-on-FHIR compiler, so callers can tell a bad view from a bug."""

from __future__ import annotations

from ...errors import LithotseError


class ViewError(LithotseError):
    """A ViewDefinition that cannot be compiled or run; the message names the path inside the view."""
