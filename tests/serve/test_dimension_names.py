"""Dimensions and columns named by any header text through the local API: ``Ward/Bed`` and
``% Readmit`` in a query string, a dimension called ``from`` or ``format``, a column whose name
holds a comma."""

from __future__ import annotations

import csv
import io
import json
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.excel.formula import build_value_formula, parse_formula
from lithotse_desktop.excel.xlwings_addin import udf_table, udf_value
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.serve.links import dimension_params, dims_from_params, value_url
from lithotse_desktop.serve.token import workspace_token
from tests.cache.helpers import _close_caches  # noqa: F401  (fixture)
from tests.support.serving import served  # noqa: F401  (fixture)

DIMS = ["Ward/Bed", "% Readmit", "from", "Format", "dim.x", "a=b", "Unit, site"]
ROWS = [["W1/3", "low", "2024", "pdf", "p", "q", "ICU, north", 10.0],
        ["W1/3", "low", "2024", "pdf", "p", "q", "ICU, north", 5.5],
        ["W2/1", "high", "2023", "csv", "p", "q", "Ward, south", 7.0],
        ["W2/1", "low", "2024", "csv", "r", "q", "Ward, south", 1.0]]


@pytest.fixture
def derivative(workspace, tmp_path):
    reset_plugin_manager()
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[*DIMS, "Cost ($)"], *ROWS])
    path = tmp_path / "adm.csv"
    path.write_text(out.getvalue())
    workspace.add_source("adm", "csv", {"path": str(path)}, {})
    run_import(workspace, "adm")
    add_spec(workspace, {"name": "cells", "kind": "aggregate", "input": {"source": "adm", "stream": "adm"},
                         "group_by": DIMS, "measures": [{"fn": "count", "as": "n"},
                                                        {"fn": "sum", "column": "Cost ($)", "as": "cost"}],
                         "suppress_below": 0})
    build(workspace, "cells")
    yield "cells"
    reset_plugin_manager()


def expected(**wanted: str) -> tuple[int, float]:
    picked = [r for r in ROWS if all(r[DIMS.index(k)] == v for k, v in wanted.items())]
    return len(picked), sum(r[-1] for r in picked)


def test_dimension_parameters_never_collide_with_the_apis_own():
    dims = {"Ward/Bed": "W1/3", "from": "2024", "Format": "pdf", "dim.x": "p", "measure": "m"}
    params = dimension_params(dims)
    assert params == {"Ward/Bed": "W1/3", "dim.from": "2024", "dim.Format": "pdf", "dim.dim.x": "p",
                      "dim.measure": "m"}
    assert dims_from_params([("measure", "n"), ("from", "2024-01-01"), *params.items()]) == dims
    url = value_url(8765, "cells", "n", "2024-01-01", "", dims)
    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)
    assert ("from", "2024-01-01") in query and ("dim.from", "2024") in query and ("Ward/Bed", "W1/3") in query


def test_values_by_any_dimension_name(workspace, derivative, served):  # noqa: F811
    client = served()
    for wanted in ({"Ward/Bed": "W1/3"}, {"% Readmit": "low", "from": "2024"}, {"Format": "csv", "dim.x": "r"},
                   {"a=b": "q", "Ward/Bed": "W2/1"}):
        n, cost = expected(**wanted)
        assert client.value(derivative, "n", dims=wanted)["value"] == n
        assert client.value(derivative, "cost", dims=wanted)["value"] == pytest.approx(cost)
    [batch] = client.values([{"derivative": derivative, "measure": "n", "dims": {"from": "2023"}}])
    assert batch["value"] == expected(**{"from": "2023"})[0]

    query = "measure=n&Ward%2FBed=W1%2F3&%25%20Readmit=low&dim.from=2024"
    request = urllib.request.Request(f"{client.base}/derivatives/{derivative}/value?{query}",
                                     headers={"Authorization": f"Bearer {workspace_token(workspace)}"})
    with urllib.request.urlopen(request) as answer:
        assert json.loads(answer.read())["value"] == expected(**{"Ward/Bed": "W1/3", "% Readmit": "low",
                                                                 "from": "2024"})[0]

    formula = build_value_formula(derivative, "cost", "", "", {"a=b": "q", "from": "2024"})
    assert udf_value(*parse_formula(formula).args, client=client) == pytest.approx(expected(**{"from": "2024"})[1])


def test_a_column_whose_name_holds_a_comma_is_picked_by_name(workspace, derivative, served):  # noqa: F811
    client = served()
    table = client.table(derivative, columns=["Ward/Bed", "Unit, site", "cost"])
    assert table.names == ["Ward/Bed", "Unit, site", "cost"]
    sums: Counter[tuple] = Counter()
    for row in ROWS:
        sums[(row[0], row[6])] += row[-1]
    got: Counter[tuple] = Counter()
    for row in table.rows:
        got[(row["Ward/Bed"], row["Unit, site"])] += row["cost"]
    assert got == sums
    spilled = udf_table(derivative, None, None, "Ward/Bed, Unit, site, cost", client=client)
    assert spilled[0] == ["Ward/Bed", "Unit, site", "cost"]
    query = urllib.parse.urlencode({"format": "csv", "columns": "Unit, site,n"})
    request = urllib.request.Request(f"{client.base}/derivatives/{derivative}/table?{query}",
                                     headers={"Authorization": f"Bearer {workspace_token(workspace)}"})
    with urllib.request.urlopen(request) as answer:
        assert answer.read().decode().splitlines()[0] == '"Unit, site","n"'
    assert client.value(derivative, "n", dims={"Unit, site": "Ward, south"})["value"] == 2
