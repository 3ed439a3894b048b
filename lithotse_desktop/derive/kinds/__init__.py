"""One module per derivative kind, each with the same two functions:

- ``check(spec)``: what can be checked before any data is seen (raises SpecError);
- ``query(spec, schemas, *, timezone, threshold, periods=None, person_key=None)``: a
  :class:`Query` over the input relations (named by their aliases), given their columns and
  the input's person key.

:func:`~lithotse_desktop.derive.build.build` runs the query over the data;
:func:`~lithotse_desktop.derive.service.check_spec` runs it over empty inputs, so a spec is
checked by exactly the SQL its build will run.
"""

from __future__ import annotations

from types import ModuleType

from . import aggregate, sql, view
from .common import Query

KIND_MODULES: dict[str, ModuleType] = {"aggregate": aggregate, "view": view, "sql": sql}
"""A validated spec's ``kind`` -> the module that builds it (the names ``spec.KINDS`` allows)."""

__all__ = ["KIND_MODULES", "Query"]
