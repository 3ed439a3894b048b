"""A source's own keys, and columns named for whose value they hold, are identifiers.

The twenty-first review grouped aggregates of a CSV by its declared key (``encounter_id``), by
``chart_no`` and by ``patient_last_name``: none was known for what it is, and every visit number,
MRN and surname was published as the key of a suppressed cell.
"""

from __future__ import annotations

import pytest

from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.errors import LithotseError
from lithotse_desktop.raw import run_import

VISITS = {"source": "t", "stream": "visits"}


@pytest.fixture
def visits(workspace, tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    header = "encounter_id,patient_id,patient_last_name,chart_no,admit_date,department\n"
    (folder / "visits.csv").write_text(header + "".join(
        f"E{i:04d},p{i % 40:03d},Name{i % 40},MRN{i % 40:05d},2020-01-{1 + i % 28:02d},{'AB'[i % 2]}\n"
        for i in range(200)))
    workspace.add_source("t", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id",
                                      "person_column": "patient_id"}, {})
    run_import(workspace, "t")
    return workspace


@pytest.mark.parametrize(("column", "what"), [("encounter_id", "a record's key"),
                                              ("chart_no", "a medical record number"), ("patient_last_name", "a name")])
def test_an_aggregate_by_an_identifier_is_refused_naming_it(visits, column, what):
    spec = {"name": "by_it", "kind": "aggregate", "input": VISITS, "group_by": ["department", column],
            "measures": [{"fn": "count", "as": "visits"}]}
    with pytest.raises(LithotseError, match=f"{column}.*{what}"):
        add_spec(visits, spec)
    Catalog(visits).save_spec(spec)  # as a sync brings it, unchecked: the build refuses it too
    with pytest.raises(LithotseError, match=f"{column}.*{what}"):
        build(visits, "by_it")
    assert Catalog(visits).current("by_it") is None


def test_a_key_of_several_columns_names_no_one(workspace, tmp_path):
    """A daily count keyed by (day, ward) is no one's identifier: its columns stay dimensions."""
    folder = tmp_path / "beds"
    folder.mkdir()
    (folder / "beds.csv").write_text("day,ward,beds\n" + "".join(
        f"2020-01-{1 + i:02d},{w},{10 + i}\n" for i in range(20) for w in ("north", "south")))
    workspace.add_source("beds", "csv", {"path": str(folder), "date_column": "day", "key": "day,ward"}, {})
    run_import(workspace, "beds")
    add_spec(workspace, {"name": "by_ward", "kind": "aggregate", "input": {"source": "beds", "stream": "beds"},
                         "group_by": ["ward"], "suppress_below": 0, "measures": [{"fn": "count", "as": "days"}]})
    build(workspace, "by_ward")
    rows = Catalog(workspace).read(Catalog(workspace).current("by_ward")).to_pylist()
    assert {r["ward"]: r["days"] for r in rows} == {"north": 20, "south": 20}
