"""The embedded engine: an in-memory DuckDB per build, under the workspace's ``[limits]``."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from ...errors import LithotseError, without_values
from ...progress import Progress
from ...raw.verify import IntegrityChecks
from ...workspace import Workspace
from .. import inputs
from ..catalog import Catalog, Version
from ..compile import DUCKDB, period_query
from ..disclosure import mask_inputs
from ..inputs import StreamInput
from . import Engine, EngineSession


class DuckDBSession(EngineSession):
    dialect = DUCKDB

    def __init__(self, ws: Workspace) -> None:
        self.con = inputs.connect(ws)
        self.readable: list[str] = []
        """Raw files the query reads itself (a stream streamed into it, see :func:`inputs.load_stream`)."""
        self.text_views: dict[str, str] = {}
        """Views of typed reads, with their text reads: every query over them runs in :meth:`run`."""
        self.changed: dict[tuple[str, ...], str] = {}
        """Tables of the records changed by landings new since a version, by those landings' ids."""

    def load_stream(self, ws: Workspace, alias: str, resolved: StreamInput, progress: Progress,
                    checks: IntegrityChecks, *, materialize: bool = False, rescanned: bool = False,
                    unused: tuple[str, ...] = ()) -> pa.Schema:
        return inputs.load_stream(self.con, ws, alias, resolved, progress, checks, materialize=materialize,
                                  rescanned=rescanned, unused=unused, readable=self.readable,
                                  text_views=self.text_views)

    def load_derivative(self, catalog: Catalog, alias: str, name: str) -> pa.Schema:
        return inputs.load_derivative(self.con, catalog, alias, name)

    def touched_periods(self, ws: Workspace, spec: dict, schema: pa.Schema, resolved: StreamInput,
                        previous: Version) -> list[Any] | None:
        fresh_ids = inputs.fresh_landings(resolved, previous)
        if fresh_ids is None:
            return None
        changed = self.changed.get(tuple(fresh_ids))
        if changed is None:  # the members of a group sharing one input ask it each
            changed = f"__changed_{len(self.changed)}"
            inputs.changed_records(self.con, "input", resolved, fresh_ids, changed)
            self.changed[tuple(fresh_ids)] = changed
        q = DUCKDB.quote
        changed_schema = self.con.sql(f"SELECT * FROM {q(changed)} LIMIT 0").to_arrow_table().schema
        compiled = period_query(spec, changed_schema, q(changed), "true", timezone=ws.timezone)
        return [row[0] for row in self.con.execute(compiled.sql, compiled.params).fetchall()]

    def mask_inputs(self, roles: dict[str, dict[str, str | None]]) -> dict[str, tuple[str, str]]:
        return mask_inputs(self.con, roles)

    def lock_down(self, user_sql: bool = False) -> None:
        inputs.lock_down(self.con, () if user_sql else self.readable)

    def run(self, sql: str, params: list[Any], what: str, progress: Progress | None = None) -> pa.Table:
        try:
            try:
                return self.con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                if not (self.text_views and inputs.typed_refusal(exc)):
                    raise
            # a value DuckDB's reader would not type: the text read gives the rows, or the error
            inputs.read_as_text(self.con, self.text_views)
            return self.con.sql(sql, params=params or None).to_arrow_table()
        except duckdb.Error as exc:
            raise LithotseError(f"{what}: {without_values(exc, sql)}") from None

    def close(self) -> None:
        self.con.close()


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, ws: Workspace, settings: dict[str, Any]) -> None:
        self.ws = ws

    def session(self, progress: Progress) -> DuckDBSession:
        return DuckDBSession(self.ws)
