"""``aggregate``: measures over dimensions (and periods), small cells suppressed in L2."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..compile import compile_aggregate
from ..suppress import apply_suppression
from .common import Query


def check(spec: dict) -> None:
    """Everything an aggregate needs is structural (:func:`..spec.validate_spec`) or needs columns."""


def query(spec: dict, schemas: dict[str, pa.Schema], *, timezone: str, threshold: int,
          periods: list[Any] | None = None) -> Query:
    compiled = compile_aggregate(spec, schemas, timezone=timezone, periods=periods)

    def suppress(table: pa.Table) -> pa.Table:
        return apply_suppression(table, compiled.dimensions, compiled.measures, threshold)

    return Query(compiled.sql, compiled.params, "measures", suppress)
