"""An NDJSON import counts and checks a file in one DuckDB pass (``Connector.survey``); what it
records must be what reading the file back gives, and it must refuse what reading refuses."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from lithotse_desktop.connectors import RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.errors import Cancelled, InputError
from lithotse_desktop.progress import Progress
from lithotse_desktop.raw.landing import landing_stats

from .conftest import PATHLING, SMART

RANGES = [DateRange(), DateRange(dt.date(2015, 1, 1), None), DateRange(None, dt.date(2012, 6, 14)),
          DateRange(dt.date(2010, 3, 1), dt.date(2019, 12, 31))]
ZONES = ["UTC", "America/New_York", "Pacific/Kiritimati"]


def _connector(fhir_plugin):
    return fhir_plugin.connectors()["fhir-files"]({"path": ".", "resource_types": ""})


def _read_back(connector, obj: RawObject, rng: DateRange, zone: str) -> dict:
    """The stats the core computes from ``read``'s rows, the survey switched off."""
    class Reading(type(connector)):
        def survey(self, *args, **kwargs):
            return None

    return landing_stats(Reading(connector.settings), obj, connector.stream(obj.stream), rng, zone, Progress())


def _basic(folder: Path) -> Path:
    """Basic resources (a type ranged by ``meta.lastUpdated``) updated near midnight UTC, so the
    day differs by zone, some without a lastUpdated."""
    path = folder / "Basic.ndjson"
    lines = []
    for i in range(60):
        meta = {"lastUpdated": f"2012-06-{1 + i % 30:02d}T{(i * 7) % 24:02d}:30:00.000Z"} if i % 9 else {}
        lines.append(json.dumps({"resourceType": "Basic", "id": f"b{i}", "meta": meta,
                                 "code": {"text": "note"}}))
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def _objects(folder: Path) -> list[RawObject]:
    found = [RawObject(_basic(folder), "Basic", "Basic.ndjson", "application/fhir+ndjson",
                       {"format": "ndjson", "mixed": False})]
    for path in sorted([*SMART.glob("*.ndjson"), *PATHLING.glob("*.ndjson")]):
        stream = path.name.split(".")[0]
        if stream != "log":
            found.append(RawObject(path, stream, path.name, "application/fhir+ndjson",
                                   {"format": "ndjson", "mixed": False}))
    return found


def test_survey_counts_what_reading_back_counts(fhir_plugin, tmp_path: Path):
    connector = _connector(fhir_plugin)
    objects = _objects(tmp_path)
    streams = {o.stream for o in objects}
    assert {"Encounter", "Patient", "Organization", "Observation"} <= streams
    kinds = {connector.stream(s).date_field for s in streams}
    assert {"date", "lastUpdated"} <= kinds, kinds  # both ways of taking a record's day
    for obj in objects:
        for rng in RANGES:
            for zone in ZONES:
                info = connector.stream(obj.stream)
                surveyed = landing_stats(connector, obj, info, rng, zone, Progress())
                assert connector.survey(obj, info, rng, zone, Progress()) is not None
                assert surveyed == _read_back(connector, obj, rng, zone), (obj.name, rng, zone)


def test_survey_of_a_mixed_file_counts_its_own_type(fhir_plugin, tmp_path: Path):
    mixed = tmp_path / "export.ndjson"
    mixed.write_bytes(b"".join(p.read_bytes() for p in sorted(SMART.glob("[EPO]*.000.ndjson"))))
    connector = _connector(fhir_plugin)
    for stream in ("Encounter", "Patient", "Organization"):
        obj = RawObject(mixed, stream, mixed.name, "application/fhir+ndjson", {"format": "ndjson", "mixed": True})
        rng = DateRange(dt.date(2015, 1, 1), None)
        surveyed = landing_stats(connector, obj, connector.stream(stream), rng, "Europe/Berlin", Progress())
        assert surveyed["records"] > 0
        assert surveyed == _read_back(connector, obj, rng, "Europe/Berlin")


@pytest.mark.parametrize("bad, reason", [
    ('{"resourceType": "Encounter", "id": "x", "period": {"start": "2019-02-30"}}', "not a calendar date"),
    ('{"resourceType": "Patient", "id": "p"}', "resourceType is Patient, expected Encounter"),
    ('{"resourceType": "Encounter", "id": ', "invalid JSON"),
])
def test_survey_names_the_bad_line_as_reading_does(fhir_plugin, tmp_path: Path, bad: str, reason: str):
    lines = (SMART / "Encounter.000.ndjson").read_text("utf-8").splitlines()
    path = tmp_path / "Encounter.ndjson"
    path.write_text("\n".join([*lines[:7], "", bad, *lines[7:]]) + "\n", "utf-8")
    connector = _connector(fhir_plugin)
    obj = RawObject(path, "Encounter", path.name, "application/fhir+ndjson", {"format": "ndjson", "mixed": False})
    with pytest.raises(InputError) as surveyed:
        landing_stats(connector, obj, connector.stream("Encounter"), DateRange(), "UTC", Progress())
    with pytest.raises(InputError) as read:
        _read_back(connector, obj, DateRange(), "UTC")
    assert str(surveyed.value) == str(read.value)
    assert "Encounter.ndjson, line 9" in str(surveyed.value) and reason in str(surveyed.value)


def test_a_cancelled_survey_stops(fhir_plugin, tmp_path: Path):
    path = tmp_path / "Encounter.ndjson"
    line = json.dumps({"resourceType": "Encounter", "id": "e", "period": {"start": "2020-01-01"}})
    path.write_text((line + "\n") * 1000, "utf-8")
    connector = _connector(fhir_plugin)
    progress = Progress()
    progress.cancel()
    obj = RawObject(path, "Encounter", path.name, "application/fhir+ndjson", {"format": "ndjson", "mixed": False})
    with pytest.raises(Cancelled):
        landing_stats(connector, obj, connector.stream("Encounter"), DateRange(), "UTC", progress)


def test_survey_parsing_only_the_leaves_agrees_with_the_full_extraction(fhir_plugin, tmp_path: Path):
    """A single-type file is surveyed from ``read_ndjson`` given just the leaves; values of other
    JSON types become the same text, and records the leaves do not fit (a string where an object
    is expected, a duplicate key) send the survey back to the full extraction, same answer."""
    from lithotse_fhir import reader

    odd = [{"resourceType": "Encounter", "id": 17, "meta": {"versionId": 2.5, "lastUpdated": "2016-02-03T04:05:06Z"},
            "period": {"start": "2016-02", "end": "2016-02-04"}, "subject": {"reference": 5}},
           {"resourceType": "Encounter", "id": {"nested": [1, "a"]}, "period": {"start": "2017"}},
           {"resourceType": "Encounter", "ID": "upper case is another key", "Period": {"start": "bad"}},
           {"resourceType": "Encounter", "id": "null period", "period": None, "meta": {}}]
    lines = [json.dumps(record) for record in odd]
    misfits = {"period is text": '{"resourceType": "Encounter", "id": "t", "period": "2019-01-01"}',
               "meta is a list": '{"resourceType": "Encounter", "id": "l", "meta": [1]}',
               "duplicate key": ('{"resourceType": "Encounter", "id": "d", "period": {"start": "2019-01-01"}, '
                                 '"period": {"start": "2019-02-30"}}')}
    connector = _connector(fhir_plugin)
    info = connector.stream("Encounter")
    cases = {"odd values": lines, **{name: [*lines, line] for name, line in misfits.items()}}
    for case, body in cases.items():
        path = tmp_path / f"{case.replace(' ', '_')}.ndjson"
        path.write_text("\n".join(body) + "\n", "utf-8")
        obj = RawObject(path, "Encounter", path.name, "application/fhir+ndjson", {"format": "ndjson", "mixed": False})
        for rng in RANGES:
            surveyed = landing_stats(connector, obj, info, rng, "UTC", Progress())
            assert surveyed == _read_back(connector, obj, rng, "UTC"), (case, rng)
        assert surveyed["records"] == len(body)
        con = reader.connect()
        try:
            parsed = reader._parsed_survey(con, path, False, "Encounter", False, lambda extraction: (
                f"SELECT count(*), 0, NULL, NULL, coalesce(bool_or(_bad), false) FROM ({extraction})"),
                None, Progress())
        finally:
            con.close()
        assert (parsed is None) == (case != "odd values"), case
    # the first of two keys is the one read: a bad first value is refused, as reading refuses it
    path = tmp_path / "first_is_bad.ndjson"
    path.write_text('{"resourceType": "Encounter", "id": "d", "period": {"start": "2019-02-30"}, '
                    '"period": {"start": "2019-01-01"}}\n', "utf-8")
    obj = RawObject(path, "Encounter", path.name, "application/fhir+ndjson", {"format": "ndjson", "mixed": False})
    with pytest.raises(InputError, match="first_is_bad.ndjson, record 1: cannot be read"):
        landing_stats(connector, obj, info, DateRange(), "UTC", Progress())
