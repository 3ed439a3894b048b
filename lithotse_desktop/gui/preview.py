"""What the aggregate form shows while a person fills it in: a sample of the input and the first
rows of the result, computed exactly as a build computes them (the same compiled SQL, then small-
cell suppression and pseudonymization) but over the sample only, like Power Query's step preview.

No Qt here: the form runs these functions on a worker thread.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from .. import engine
from ..derive.build import suppression_threshold
from ..derive.catalog import Catalog
from ..derive.compile import DUCKDB
from ..derive.inputs import lock_down, resolve_stream
from ..derive.kinds import KIND_MODULES
from ..derive.pseudonymize import patient_key_columns, pseudonymize
from ..derive.service import check_spec
from ..derive.spec import SpecError
from ..derive.suppress import suppress_table
from ..errors import without_values
from ..raw.reader import read_object
from ..raw.sources import make_connector
from ..raw.verify import IntegrityChecks
from ..workspace import Workspace

SAMPLE_ROWS = 20_000
ENOUGH_ROWS = 2_000
PREVIEW_ROWS = 50
ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}.*)?$")
KNOWN_SYSTEMS = {
    "http://snomed.info/sct": "SNOMED CT",
    "http://loinc.org": "LOINC",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
}


@dataclass
class Sample:
    """The first records of an input (its real columns and values) and how many it has in all."""

    table: pa.Table
    total: int | None = None
    date_columns: list[str] = field(default_factory=list)
    code_columns: list[str] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)
    person_key: list[str] | None = None
    """The input's columns naming each record's person, when it has them (cells count people)."""

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema


def stream_records(ws: Workspace) -> dict[tuple[str, str], int]:
    """Records landed per (source, stream), from the manifests: what an input list shows."""
    from ..raw.index import open_index

    index = open_index(ws)
    try:
        counts: dict[tuple[str, str], int] = {}
        for m in index.landings():
            counts[(m.source, m.stream)] = counts.get((m.source, m.stream), 0) + m.records
        return counts
    finally:
        index.close()


def load_sample(ws: Workspace, item: dict, rows: int = SAMPLE_ROWS) -> Sample | None:
    """Up to ``rows`` records of an input, or None when it has no data yet."""
    if "derivative" in item:
        catalog = Catalog(ws)
        current = catalog.current(item["derivative"])
        if current is None:
            catalog.spec(item["derivative"])
            return None
        table = catalog.read(current)
        sample = describe(table.slice(0, rows), current.rows)
        sample.person_key = (current.stats or {}).get("person_key")
        return sample
    resolved = resolve_stream(ws, item["source"], item["stream"], with_key=False)
    connector = make_connector(ws, item["source"])
    batches: list[pa.RecordBatch] = []
    taken = 0
    with IntegrityChecks() as checks:
        for stored in resolved.objects(ws):
            for batch in read_object(ws, stored, connector, checks):
                batches.append(batch.slice(0, rows - taken))
                taken += min(batch.num_rows, rows - taken)
                if taken >= rows:
                    break
            if taken >= min(rows, ENOUGH_ROWS):  # whole objects are read; slow formats stop early
                break
    if not batches:
        return None
    total = sum(m.records for m in resolved.manifests)
    sample = describe(pa.Table.from_batches(batches), total)
    person_key = resolved.info(ws, connector).person_key
    sample.person_key = list(person_key) if person_key else None
    return sample


def describe(table: pa.Table, total: int | None) -> Sample:
    """Which columns hold dates and which hold coded concepts (with the code systems seen)."""
    sample = Sample(table, total)
    for f in table.schema:
        if pa.types.is_date(f.type) or pa.types.is_timestamp(f.type):
            sample.date_columns.append(f.name)
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            values = [v for v in table.column(f.name).slice(0, 2000).to_pylist() if v not in (None, "")][:200]
            if values and sum(1 for v in values if ISO_DAY.match(v)) >= 0.9 * len(values):
                sample.date_columns.append(f.name)
            elif values and all(v.startswith("{") and '"coding"' in v for v in values[:50]):
                sample.code_columns.append(f.name)
                for v in values:
                    try:
                        concept = json.loads(v)
                    except ValueError:
                        continue
                    for coding in concept.get("coding", []) if isinstance(concept, dict) else []:
                        system = coding.get("system") if isinstance(coding, dict) else None
                        if isinstance(system, str) and system not in sample.systems:
                            sample.systems.append(system)
    return sample


def preview_aggregate(ws: Workspace, spec: dict, sample: Sample, rows: int = PREVIEW_ROWS) -> pa.Table:
    """The first ``rows`` rows of the aggregate over the sample, suppressed as a build would.

    Raises the core's SpecError (with the path of the field at fault) for a spec it cannot run,
    and every refusal saving it would meet (pass 38: the cells of ``min(patient_id)``, which
    saving refuses, were previewed with the patient ids in them).
    """
    check_spec(ws, spec)
    tables = {"input": sample.table}
    if "join" in spec:
        joined = load_sample(ws, spec["join"]["input"])
        if joined is None:
            raise SpecError("join.input", "has no data yet")
        tables["joined"] = joined.table
    person_key = sample.person_key if sample.person_key and set(sample.person_key) <= set(sample.schema.names) \
        else None
    threshold = suppression_threshold(ws, spec)
    con = engine.connect(ws.limits)
    try:
        for alias, table in tables.items():
            con.register("__sample", table)
            con.execute(f"CREATE TABLE {DUCKDB.quote(alias)} AS SELECT * FROM __sample")
            con.unregister("__sample")
        lock_down(con)
        query = KIND_MODULES["aggregate"].query(spec, {k: t.schema for k, t in tables.items()},
                                                timezone=ws.timezone, threshold=threshold, person_key=person_key)
        try:
            result = con.sql(query.sql, params=query.params or None).to_arrow_table()
        except duckdb.Error as exc:
            raise SpecError(query.field, without_values(exc).splitlines()[0]) from None
        table = suppress_table(result, spec, threshold, ws.zero_cells) if query.cells else query.finish(result)
    finally:
        con.close()
    keys = patient_key_columns(spec)
    if keys:
        table = pseudonymize(ws, table, keys)
    return table.slice(0, rows)


def system_label(system: str) -> str:
    name = KNOWN_SYSTEMS.get(system)
    return f"{name} ({system})" if name else system
