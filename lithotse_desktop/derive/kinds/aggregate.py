"""``aggregate``: measures over dimensions (and periods), small cells suppressed in L2.

The query yields every cell unsuppressed, with its records and people (internal columns):
suppression is decided by the build over every aggregate of the same input at once
(:mod:`..complementary`), so it cannot happen per table here.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..compile import DUCKDB, Dialect, compile_aggregate
from .common import Query


def check(spec: dict) -> None:
    """Everything an aggregate needs is structural (:func:`..spec.validate_spec`) or needs columns."""


def query(spec: dict, schemas: dict[str, pa.Schema], *, timezone: str, threshold: int,
          periods: list[Any] | None = None, person_key: list[str] | None = None,
          dialect: Dialect = DUCKDB) -> Query:
    compiled = compile_aggregate(spec, schemas, timezone=timezone, periods=periods, person_key=person_key,
                                 dialect=dialect, zero_one=threshold > 0)
    return Query(compiled.sql, compiled.params, "measures", cells=True)
