"""What every kind's ``query`` returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import pyarrow as pa


def unchanged(table: pa.Table) -> pa.Table:
    return table


@dataclass
class Query:
    """SQL over the input relations, its bound values, and what happens to its result."""

    sql: str
    params: list[Any]
    field: str
    """The spec field an error in this query is reported against."""
    finish: Callable[[pa.Table], pa.Table] = dataclass_field(default=unchanged)
    """Applied to the query's result before it is written."""
    cells: bool = False
    """The result is aggregate cells with ``__n`` and ``__people``, to be suppressed by the build."""
