"""De-identification profiles, checked field by field against an independent reading of the data.

The sample FHIR Patients in tests/data and generated Patients with a planted identifier in
every FHIR type that carries one (HumanName, Address, ContactPoint, Identifier, Attachment,
date/dateTime, a relative's contact) go through a view with ``"deidentify": "safe-harbor"``
(and ``"limited"``); each output value is compared with what the rules say it must be, computed
here from the raw JSON, and no planted value may survive anywhere in the output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import shutil

import pytest

from lithotse_desktop.derive.build import build, build_all
from lithotse_desktop.derive.deidentify import COMPUTED_RULE
from lithotse_desktop.derive.disclosure import DEIDENTIFIED_PICK_RULE
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.derive.spec import SpecError
from lithotse_desktop.raw import run_import
from lithotse_desktop.secrets import load_secret, secret_ref
from tests.conftest import TEST_DATA

# HHS's list of three-digit ZIP areas of 20,000 people or fewer (privacy facts, copied here so the
# test does not read the product's own list)
SPARSE_ZIP3 = {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
               "879", "884", "890", "893"}

COLUMNS = [
    ("pid", "getResourceKey()"),
    ("family", "name.family.first()"), ("given", "name.given.first()"), ("prefix", "name.prefix.first()"),
    ("suffix", "name.suffix.first()"), ("name_text", "name.text.first()"),
    ("phone", "telecom.where(system = 'phone').value.first()"),
    ("fax", "telecom.where(system = 'fax').value.first()"),
    ("email", "telecom.where(system = 'email').value.first()"),
    ("url", "telecom.where(system = 'url').value.first()"),
    ("line", "address.line.first()"), ("city", "address.city.first()"),
    ("district", "address.district.first()"), ("state", "address.state.first()"),
    ("zip", "address.postalCode.first()"), ("address_text", "address.text.first()"),
    ("ssn", "identifier.where(type.coding.code = 'SS').value.first()"),
    ("mrn", "identifier.where(type.coding.code = 'MR').value.first()"),
    ("licence", "identifier.where(type.coding.code = 'DL').value.first()"),
    ("passport", "identifier.where(type.coding.code = 'PPN').value.first()"),
    ("member", "identifier.where(type.coding.code = 'MB').value.first()"),
    ("birth", "birthDate"), ("deceased", "deceased.ofType(dateTime)"),
    ("photo", "photo.url.first()"),
    ("kin_family", "contact.name.family.first()"), ("kin_phone", "contact.telecom.value.first()"),
    ("kin_zip", "contact.address.postalCode.first()"),
    ("gender", "gender"), ("marital", "maritalStatus.coding.code.first()"),
]
VIEW = {"resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
        "select": [{"column": [{"name": n, "path": p} for n, p in COLUMNS]}]}
SAFE_HARBOR_KEEPS = ["pid", "state", "zip", "birth", "deceased", "kin_zip", "gender", "marital"]
LIMITED_KEEPS = ["pid", "city", "state", "zip", "birth", "deceased", "kin_zip", "gender", "marital"]


def zip3(code: str | None) -> str | None:
    digits = (code or "").replace("-", "")
    if not (digits.isdigit() and len(digits) in (5, 9)):
        return None
    return "000" if digits[:3] in SPARSE_ZIP3 else digits[:3]


def birth_year(text: str | None) -> int | None:
    if not text:
        return None
    oldest = dt.date.today().year - 90
    return max(int(text[:4]), oldest)


def pseudonym(ws, value: str) -> str:
    key = bytes.fromhex(load_secret(secret_ref(ws.id, "hmac-key")))
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def import_patients(ws, tmp_path, resources_or_file, source: str = "fhir") -> list[dict]:
    folder = tmp_path / f"{source}-in"
    folder.mkdir()
    if isinstance(resources_or_file, list):
        (folder / "Patient.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources_or_file))
    else:
        shutil.copy(resources_or_file, folder / "Patient.ndjson")
    ws.add_source(source, "fhir-files", {"path": str(folder)}, {})
    run_import(ws, source)
    return [json.loads(line) for line in (folder / "Patient.ndjson").read_text().splitlines() if line.strip()]


def built(ws, name: str, profile: str | None, source: str = "fhir") -> list[dict]:
    spec = {"name": name, "kind": "view", "input": {"source": source, "stream": "Patient"}, "view": VIEW}
    if profile:
        spec["deidentify"] = profile
    add_spec(ws, spec)
    build(ws, name)
    version, table = read_table(ws, name)
    assert version.privacy["class"] == ("deidentified" if profile else "row-level")
    return table.to_pylist()


def import_resources(ws, tmp_path, source: str, resources: list[dict]) -> None:
    """Resources of one type landed as a ``fhir-files`` source of their own."""
    folder = tmp_path / source
    folder.mkdir()
    kind = resources[0]["resourceType"]
    (folder / f"{kind}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    ws.add_source(source, "fhir-files", {"path": str(folder)}, {})
    run_import(ws, source)


def built_view(ws, name: str, source: str, resource: str, columns: list[dict]) -> list[dict]:
    """A safe-harbor view of ``columns`` over ``source``, built: its rows."""
    view = {"resourceType": "ViewDefinition", "resource": resource, "status": "active",
            "select": [{"column": columns}]}
    add_spec(ws, {"name": name, "kind": "view", "input": {"source": source, "stream": resource},
                  "deidentify": "safe-harbor", "view": view})
    build(ws, name)
    return read_table(ws, name)[1].to_pylist()


def first(items, key=None, where=None):
    for item in items or []:
        if where is None or where(item):
            return item if key is None else item.get(key)
    return None


def typed(resource: dict, code: str) -> str | None:
    return first(resource.get("identifier"), "value",
                 lambda i: first((i.get("type") or {}).get("coding"), "code") == code)


@pytest.mark.parametrize("sample", ["ndjson-pathling-synthea-r4/Patient.ndjson",
                                    "bulk-ndjson-smart-10-patients/Patient.000.ndjson"])
def test_safe_harbor_on_the_sample_patients_field_by_field(workspace, tmp_path, sample):
    patients = import_patients(workspace, tmp_path, TEST_DATA / "fhir" / sample)
    rows = built(workspace, "patients_sh", "safe-harbor")
    assert list(rows[0]) == SAFE_HARBOR_KEEPS
    expected = []
    for p in patients:
        address = first(p.get("address")) or {}
        deceased = p.get("deceasedDateTime")
        expected.append({
            "pid": pseudonym(workspace, p["id"]), "state": address.get("state"), "zip": zip3(address.get("postalCode")),
            "birth": birth_year(p.get("birthDate")), "deceased": int(deceased[:4]) if deceased else None,
            "kin_zip": None, "gender": p.get("gender"),
            "marital": first((p.get("maritalStatus") or {}).get("coding"), "code")})
    assert sorted(rows, key=lambda r: r["pid"]) == sorted(expected, key=lambda r: r["pid"])
    raw_values = {v for p in patients for v in (typed(p, "SS"), typed(p, "MR"), p["id"],
                                                first(first(p["name"], "given")), first(p["name"], "family"),
                                                first(p.get("telecom"), "value"), p.get("birthDate"))} - {None}
    published = {str(v) for r in rows for v in r.values()}
    assert not raw_values & published
    assert any(r["birth"] == dt.date.today().year - 90 for r in rows) == any(
        int(p["birthDate"][:4]) <= dt.date.today().year - 90 for p in patients)


ZIPS = ["03601", "02139-4307", "89301", "10001", "ABC12", "0213", "20301", "55601"]


def planted(i: int) -> dict:
    """A Patient with a recognisable value in every identifier-carrying element."""
    def ident(code: str, value: str) -> dict:
        return {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]},
                "system": f"urn:planted:{code}", "value": value}

    return {
        "resourceType": "Patient", "id": f"planted-{i}", "gender": "female" if i % 2 else "male",
        "maritalStatus": {"coding": [{"code": "M" if i % 3 else "S"}]},
        "name": [{"use": "official", "family": f"Zyx{i}family", "given": [f"Qwe{i}given", f"Mid{i}"],
                  "prefix": [f"Pre{i}"], "suffix": [f"Suf{i}"], "text": f"Qwe{i}given Zyx{i}family"}],
        "telecom": [{"system": "phone", "value": f"+1-555-01{i:02d}"}, {"system": "fax", "value": f"+1-555-09{i:02d}"},
                    {"system": "email", "value": f"p{i}@planted.example"},
                    {"system": "url", "value": f"https://planted.example/{i}"}],
        "address": [{"line": [f"{100 + i} Planted Street", f"Apt {i}"], "city": f"Plantedville{i}",
                     "district": f"Planted County {i}", "state": "MA", "postalCode": ZIPS[i % len(ZIPS)],
                     "country": "US", "text": f"{100 + i} Planted Street, Plantedville{i}"}],
        "identifier": [ident("SS", f"999-00-{1000 + i}"), ident("MR", f"MRN-{i:06d}"), ident("DL", f"S{i:08d}"),
                       ident("PPN", f"P{i:08d}"), ident("MB", f"MB-{i:05d}")],
        "birthDate": ["1920-05-05", "1980-02-29", "2001-07-14", "1936-12-31"][i % 4],
        **({"deceasedDateTime": f"2019-03-{i % 28 + 1:02d}T10:11:12Z"} if i % 2 else {}),
        "photo": [{"contentType": "image/jpeg", "url": f"https://planted.example/photo{i}.jpg"}],
        "contact": [{"name": {"family": f"Kin{i}family"},
                     "telecom": [{"system": "phone", "value": f"+1-555-77{i:02d}"}],
                     "address": {"line": [f"{i} Kin Road"], "postalCode": "02139"}}],
    }


def planted_values(p: dict, *, in_view: bool = False) -> set[str]:
    """Every value the generator planted as an identifier (``in_view``: those the view selects)."""
    name, address, contact = p["name"][0], p["address"][0], p["contact"][0]
    out = {p["id"], name["family"], name["given"][0], name["prefix"][0], name["suffix"][0], name["text"],
           *(t["value"] for t in p["telecom"]), address["line"][0], address["city"], address["district"],
           address["text"], *(i["value"] for i in p["identifier"]), p["birthDate"], p["photo"][0]["url"],
           contact["name"]["family"], contact["telecom"][0]["value"]}
    if "deceasedDateTime" in p:
        out.add(p["deceasedDateTime"])
    if not in_view:
        out |= {name["given"][1], address["line"][1], contact["address"]["line"][0]}
    return out


def test_safe_harbor_removes_a_planted_identifier_of_every_fhir_type(workspace, tmp_path):
    patients = import_patients(workspace, tmp_path, [planted(i) for i in range(16)])
    plain = built(workspace, "patients_rows", None)
    kept_raw = {str(v) for r in plain for v in r.values()}
    selected = set().union(*(planted_values(p, in_view=True) for p in patients)) - {p["id"] for p in patients}
    assert selected <= kept_raw, "the row-level view holds every planted value it selects (so the check below can fail)"
    planted_all = set().union(*(planted_values(p) for p in patients))

    rows = built(workspace, "patients_sh", "safe-harbor")
    assert list(rows[0]) == SAFE_HARBOR_KEEPS
    published = {str(v) for r in rows for v in r.values()}
    assert not planted_all & published
    by_pid = {r["pid"]: r for r in rows}
    for p in patients:
        row = by_pid[pseudonym(workspace, p["id"])]
        assert row["zip"] == zip3(p["address"][0]["postalCode"]), p["address"][0]["postalCode"]
        assert row["kin_zip"] == "021"
        assert row["birth"] == birth_year(p["birthDate"])
        assert row["deceased"] == (2019 if "deceasedDateTime" in p else None)
        assert (row["state"], row["gender"]) == ("MA", p["gender"])
    assert {r["zip"] for r in rows} == {"000", "021", "100", None}
    assert min(r["birth"] for r in rows) == dt.date.today().year - 90


def test_limited_data_set_keeps_dates_cities_and_five_digit_zips(workspace, tmp_path):
    patients = import_patients(workspace, tmp_path, [planted(i) for i in range(8)])
    rows = built(workspace, "patients_lds", "limited")
    assert list(rows[0]) == LIMITED_KEEPS
    by_pid = {r["pid"]: r for r in rows}
    for p in patients:
        row = by_pid[pseudonym(workspace, p["id"])]
        digits = p["address"][0]["postalCode"].replace("-", "")
        assert row["zip"] == (digits[:5] if digits.isdigit() and len(digits) in (5, 9) else None)
        assert row["city"] == p["address"][0]["city"] and row["birth"] == p["birthDate"]
        assert row["deceased"] == p.get("deceasedDateTime")
    direct = set().union(*(planted_values(p) for p in patients)) - {p["address"][0]["city"] for p in patients} - \
        {p["birthDate"] for p in patients} - {p.get("deceasedDateTime") for p in patients}
    assert not direct & {str(v) for r in rows for v in r.values()}


def test_unclassified_and_free_text_columns_are_refused_until_the_spec_says_what_they_are(workspace, tmp_path):
    import_patients(workspace, tmp_path, [planted(0)])
    base = {"name": "odd", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
            "deidentify": "safe-harbor"}
    unknown = {**VIEW, "select": [{"column": [{"name": "pid", "path": "getResourceKey()"},
                                              {"name": "ext", "path": "extension('urn:x').value"}]}]}
    with pytest.raises(SpecError, match=r"columns: unclassified column\(s\) 'ext'.*\"ext\": \"<role>\".*rule: "
                                        r"de-identification needs every column classified"):
        add_spec(workspace, {**base, "view": unknown})
    add_spec(workspace, {**base, "view": unknown, "columns": {"ext": "code"}})
    text = {**VIEW, "select": [{"column": [{"name": "maiden", "path": "extension('http://hl7.org/fhir/"
                                            "StructureDefinition/patient-mothersMaidenName').valueString"}]}]}
    with pytest.raises(SpecError, match="column 'maiden' is free text.*does not publish free text"):
        add_spec(workspace, {**base, "name": "maiden", "view": text})


def test_csv_columns_are_classified_by_the_declared_role_map(workspace, tmp_path):
    folder = tmp_path / "ehr"
    folder.mkdir()
    (folder / "people.csv").write_text(
        "full_name,dob,zip,mrn,dept,visit_date,age\n"
        "Ann Planted,1931-04-02,03601,MRN-1,cardio,2024-05-06,93\n"
        "Bob Planted,1990-12-24,02139,MRN-2,ortho,2024-06-07,33\n")
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "visit_date"}, {})
    run_import(workspace, "ehr")
    spec = {"name": "people_sh", "kind": "sql", "inputs": {"p": {"source": "ehr", "stream": "people"}},
            "sql": "SELECT full_name, dob, zip, mrn, dept, visit_date, age FROM p",
            "deidentify": "safe-harbor"}
    with pytest.raises(SpecError, match=r"unclassified column\(s\) 'dept':"):
        add_spec(workspace, spec)
    add_spec(workspace, {**spec, "columns": {"zip": "zip", "dob": "birth_date", "mrn": "identifier",
                                             "dept": "code"}})
    build(workspace, "people_sh")
    rows = sorted(read_table(workspace, "people_sh")[1].to_pylist(), key=lambda r: r["age"])
    oldest = dt.date.today().year - 90
    assert rows == [{"zip": "021", "dob": 1990, "dept": "ortho", "visit_date": 2024, "age": 33},
                    {"zip": "000", "dob": max(1931, oldest), "dept": "cardio", "visit_date": 2024, "age": 90}]


def test_declared_pseudonyms_of_identifiers_are_removed_and_person_keys_stay(workspace, tmp_path):
    """A column the spec asked to pseudonymise stays an HMAC if it is a person's key; the pseudonym
    of an MRN or a birth date is removed under Safe Harbor (a code derived from the person's
    information is not one of its allowed re-identification codes); a limited data set keeps the
    birth date's pseudonym and, as for every direct identifier, removes the MRN's."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    (folder / "stays.csv").write_text("patient_id,mrn,dob,ward,admit_date\n"
                                      "pat-1,MRN-1,1950-01-02,W1,2024-05-06\n"
                                      "pat-2,MRN-2,1980-03-04,W2,2024-06-07\n")
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    run_import(workspace, "ehr")
    spec = {"kind": "sql", "inputs": {"s": {"source": "ehr", "stream": "stays"}},
            "sql": "SELECT patient_id, mrn, dob, ward FROM s",
            "pseudonymize": ["patient_id", "mrn", "dob"],
            "columns": {"patient_id": "person_key", "mrn": "identifier", "dob": "birth_date", "ward": "code"}}
    for name, profile in (("stays_sh", "safe-harbor"), ("stays_lds", "limited")):
        add_spec(workspace, {**spec, "name": name, "deidentify": profile})
        build(workspace, name)
    version, table = read_table(workspace, "stays_sh")
    assert sorted(table.to_pylist(), key=lambda r: r["ward"]) == [
        {"patient_id": pseudonym(workspace, "pat-1"), "ward": "W1"},
        {"patient_id": pseudonym(workspace, "pat-2"), "ward": "W2"}]
    assert set(version.privacy["removed"]) == {"mrn", "dob"}
    limited = read_table(workspace, "stays_lds")[1].to_pylist()
    assert sorted((r["patient_id"], r["dob"]) for r in limited) == sorted([
        (pseudonym(workspace, "pat-1"), pseudonym(workspace, "1950-01-02")),
        (pseudonym(workspace, "pat-2"), pseudonym(workspace, "1980-03-04"))])
    assert "mrn" not in limited[0], "a medical record number is a direct identifier, in any form"


def test_a_column_testing_an_identifier_is_refused(workspace, tmp_path):
    """The twenty-first review published, under safe-harbor, columns comparing a birth date's
    month and day with constants (every patient's full birth date, back from 43 booleans) and a
    family name with a name (true for exactly those patients); a length of a name is a name, and
    removed. Pass 36 chose *which* values are there by such tests (``birthDate.where(…= '09')``):
    under a profile a comparison of an identifier is refused, naming the rule; a presence test
    or a test of a code (``telecom.where(system = 'phone')``) is not a comparison of an identifier."""
    patients = import_patients(workspace, tmp_path, TEST_DATA / "fhir" / "bulk-ndjson-smart-10-patients" /
                               "Patient.000.ndjson")
    month = first(patients, "birthDate")[5:7]
    family = first(first(patients)["name"], "family")
    base = {"name": "tests", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
            "deidentify": "safe-harbor"}
    columns = [{"name": "pid", "path": "getResourceKey()"},
               {"name": "family_length", "path": "name.family.first().length()"},
               {"name": "has_phone", "path": "telecom.where(system = 'phone').exists()"}]
    add_spec(workspace, {**base, "view": {**VIEW, "select": [{"column": columns}]}})
    build(workspace, "tests")
    version, table = read_table(workspace, "tests")
    assert table.column_names == ["pid", "has_phone"]
    assert version.privacy["removed"] == ["family_length"]
    for name, path in [("same_family", f"name.family.first() = '{family}'"),
                       ("born_in_month", f"birthDate.toString().substring(5, 2) = '{month}'"),
                       ("born_that_month", f"birthDate.where(toString().substring(5, 2) = '{month}')"),
                       ("berg", f"name.where(family = '{family}').count()")]:
        rules = f"({re.escape(DEIDENTIFIED_PICK_RULE)}|{re.escape(COMPUTED_RULE)})"
        with pytest.raises(SpecError, match=f"'?{name}'?.*rule: {rules}"):
            add_spec(workspace, {**base, "name": "picked", "view": {**VIEW, "select": [{"column": [
                columns[0], {"name": name, "path": path}]}]}})


def test_numbers_nothing_classifies_are_refused_until_declared(workspace, tmp_path):
    """The twenty-third review: phone numbers and SSN-like numbers held as integers, in columns
    whose names say nothing (``callback``, ``ref``), were published by safe-harbor as values,
    every one. Under a profile, numbers nothing classifies are unclassified: refused until the
    spec says what they are."""
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "v.csv").write_text("encounter_id,visit_date,callback,ref,stay_days\n" + "".join(
        f"E{i},2024-01-{1 + i % 28:02d},{5550100000 + i},{193206915 + 7 * i},{i % 5}\n" for i in range(40)))
    workspace.add_source("s2", "csv", {"path": str(folder), "date_column": "visit_date"}, {})
    run_import(workspace, "s2")
    spec = {"name": "deid", "kind": "sql", "inputs": {"v": {"source": "s2", "stream": "v"}},
            "deidentify": "safe-harbor", "sql": "SELECT visit_date, callback, ref, stay_days FROM v"}
    with pytest.raises(SpecError, match=r"unclassified column\(s\) 'callback', 'ref', 'stay_days'"):
        add_spec(workspace, spec)
    add_spec(workspace, {**spec, "columns": {"callback": "phone", "ref": "ssn", "stay_days": "value"}})
    build(workspace, "deid")
    version, table = read_table(workspace, "deid")
    assert table.column_names == ["visit_date", "stay_days"]
    assert sorted(version.privacy["removed"]) == ["callback", "ref"]


@pytest.mark.parametrize(("column", "path"), [
    ("neg_dob", "-(birthDate.toString().replace('-', '').toInteger())"),
    ("month_as_year", "birthDate.toString().substring(5, 2).toInteger() + 2000"),
    ("month_branch", "iif(birthDate.toString().substring(5, 2) = '09', '2009', '2001')"),
])
def test_a_value_computed_from_a_birth_date_is_refused(workspace, tmp_path, column, path):
    """Pass 35: a minus sign made any value a plain number (every patient's birth date back as
    -19570928), and ``iif`` took its role from its branches, not from what its condition tested
    (the birth month, branch by branch). A value computed from a birth date can take any form,
    so the profile, which cuts a date to its year by its form, refuses it."""
    import_patients(workspace, tmp_path, [planted(i) for i in range(4)])
    spec = {"name": "computed", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
            "deidentify": "safe-harbor",
            "view": {**VIEW, "select": [{"column": [{"name": "pid", "path": "getResourceKey()"},
                                                    {"name": column, "path": path}]}]}}
    with pytest.raises(SpecError, match=f"'{column}' is computed from a birth date"):
        add_spec(workspace, spec)


def test_identifiers_reached_through_arithmetic_tests_or_references_do_not_survive(workspace, tmp_path):
    """Pass 35: a negated MRN number, the source URL in ``meta.source`` and a Patient named as a
    ``performer`` were published as they were; pass 36: a URL in an extension too. Each now has
    the identifier's role: removed, or (a reference) pseudonymized."""
    patients = [{**planted(i), "meta": {"source": f"http://ehr.example/patient/MRN{i}"},
                 "extension": [{"url": "http://x/home", "valueUrl": f"http://ehr.example/p/MRN{i}"}],
                 "identifier": [{"system": "urn:mrn", "value": f"M{500 + i}"}]} for i in range(4)]
    import_patients(workspace, tmp_path, patients)
    columns = [{"name": "pid", "path": "getResourceKey()"},
               {"name": "neg_mrn", "path": "-(identifier.value.first().substring(1).toInteger())"},
               {"name": "source", "path": "meta.source"},
               {"name": "home", "path": "extension('http://x/home').value.ofType(url)"},
               {"name": "gender", "path": "gender"}]
    add_spec(workspace, {"name": "tested", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
                         "deidentify": "safe-harbor", "view": {**VIEW, "select": [{"column": columns}]}})
    build(workspace, "tested")
    version, table = read_table(workspace, "tested")
    assert table.column_names == ["pid", "gender"]
    assert sorted(version.privacy["removed"]) == ["home", "neg_mrn", "source"]
    text = json.dumps(table.to_pylist())
    assert not any(f"M{500 + i}" in text or f"-{500 + i}" in text or "MRN" in text for i in range(4))

    import_resources(workspace, tmp_path, "obs", [
        {"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "x"},
         "subject": {"reference": f"Patient/planted-{i}"}, "performer": [{"reference": f"Patient/planted-{i}"}]}
        for i in range(4)])
    rows = built_view(workspace, "performed", "obs", "Observation", [
        {"name": "oid", "path": "getResourceKey()"}, {"name": "by", "path": "performer.first().reference"},
        {"name": "by_key", "path": "performer.first().getReferenceKey()"}])
    assert len(rows) == 4
    assert not any("planted" in json.dumps(row) for row in rows), rows


def test_a_declared_type_classifies_nothing_under_a_profile(workspace, tmp_path):
    """Pass 35: inside a ``repeat`` the types are not followed, and a column's declared
    ``"type": "integer"`` made a relative's phone number (5550000) a value. Under a profile, the
    declared type says how to read a value, not what it is: the column is unclassified."""
    import_patients(workspace, tmp_path, [planted(i) for i in range(2)])
    view = {**VIEW, "select": [{"column": [{"name": "pid", "path": "getResourceKey()"}]},
                               {"repeat": ["contact"],
                                "column": [{"name": "kin_phone", "path": "telecom.value.first()",
                                            "type": "integer"}]}]}
    with pytest.raises(SpecError, match="unclassified column.*'kin_phone'"):
        add_spec(workspace, {"name": "kin", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
                             "deidentify": "safe-harbor", "view": view})


def test_rows_chosen_by_an_identifier_are_not_de_identified(workspace, tmp_path):
    """Pass 36: ``forEach`` branches choosing patients by their birth date beside a literal naming
    the date published the full birth dates of people over 89; under ``limited`` a view-level
    ``where`` on an MRN's digits gave every MRN back. Rows chosen by comparing an identifier are
    refused under either profile."""
    import_patients(workspace, tmp_path, [planted(i) for i in range(4)])
    branch = {"forEach": "where(birthDate = @1920-05-05)",
              "column": [{"name": "pid", "path": "getResourceKey()"}, {"name": "tag", "path": "'1920-05-05'"}]}
    for profile, view in [("safe-harbor", {**VIEW, "select": [{"unionAll": [branch]}]}),
                          ("limited", {**VIEW, "where": [{"path": "identifier.value.first().substring(4, 1) = '0'"}],
                                       "select": [{"column": [{"name": "pid", "path": "getResourceKey()"},
                                                              {"name": "gender", "path": "gender"}]}]})]:
        with pytest.raises(SpecError, match=re.escape(DEIDENTIFIED_PICK_RULE)):
            add_spec(workspace, {"name": "chosen", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
                                 "deidentify": profile, "view": view})


def test_ages_are_capped_and_unnamed_dates_grouped(workspace, tmp_path):
    """Pass 36: a FHIR ``Age`` (a Condition's onset at 99) was a plain value, and a birth date in a
    column nothing names was cut to its year with no grouping of people over 89. An ``Age``'s
    value is an age, capped at 90 (the whole quantity, read as text, holds no age the profile can
    read: removed); a date of unknown kind is grouped like a birth year."""
    import_patients(workspace, tmp_path, [planted(i) for i in range(4)])
    folder = tmp_path / "conditions"
    folder.mkdir()
    (folder / "Condition.ndjson").write_text("".join(json.dumps(
        {"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/planted-{i}"},
         "onsetAge": {"value": 89 + 3 * i, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
         "recordedDate": ["1920-05-05", "2001-07-14", "1930-01-02", "2020-03-04"][i]}) + "\n" for i in range(4)))
    workspace.add_source("cond", "fhir-files", {"path": str(folder)}, {})
    run_import(workspace, "cond")
    view = {"resourceType": "ViewDefinition", "resource": "Condition", "status": "active",
            "select": [{"column": [{"name": "cid", "path": "getResourceKey()"},
                                   {"name": "age", "path": "onset.ofType(Age).value"},
                                   {"name": "recorded", "path": "recordedDate"}]}]}
    add_spec(workspace, {"name": "onsets", "kind": "view", "input": {"source": "cond", "stream": "Condition"},
                         "deidentify": "safe-harbor", "view": view})
    build(workspace, "onsets")
    rows = sorted(read_table(workspace, "onsets")[1].to_pylist(), key=lambda r: r["age"])
    assert [float(r["age"]) for r in rows] == [89, 90, 90, 90]
    oldest = dt.date.today().year - 90
    assert sorted(r["recorded"] for r in rows) == sorted([oldest, 2001, oldest, 2020])
    whole = {**view, "select": [{"column": [view["select"][0]["column"][0],
                                            {"name": "onset", "path": "onset.ofType(Age)"}]}]}
    add_spec(workspace, {"name": "whole", "kind": "view", "input": {"source": "cond", "stream": "Condition"},
                         "deidentify": "safe-harbor", "view": whole})
    build(workspace, "whole")
    assert read_table(workspace, "whole")[1].column("onset").to_pylist() == [None] * 4


@pytest.mark.parametrize(("column", "path"), [
    ("digit", "('0' | '1' | '2' | '3' | '4' | '5' | '6' | '7' | '8' | '9')"
              "[birthDate.toString().substring(9, 1).toInteger()]"),
    ("zip_digit", "('0' | '1' | '2' | '3' | '4' | '5' | '6' | '7' | '8' | '9')"
                  "[address.postalCode.first().substring(4, 1).toInteger()]"),
    # pass 39: the same through substring's argument
    ("sub_digit", "'0123456789'.substring(birthDate.toString().substring(9, 1).toInteger(), 1)"),
])
def test_an_item_chosen_by_an_identifier_is_refused(workspace, tmp_path, column, path):
    """Pass 37: a list of digits indexed by a birth date's (or a ZIP code's) digit published
    every patient's full birth date and five-digit ZIP code, one digit per column: the index was
    never read."""
    import_patients(workspace, tmp_path, [planted(i) for i in range(4)])
    with pytest.raises(SpecError, match=f"rule: ({re.escape(DEIDENTIFIED_PICK_RULE)}|{re.escape(COMPUTED_RULE)})"):
        add_spec(workspace, {"name": "digits", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
                             "deidentify": "safe-harbor",
                             "view": {**VIEW, "select": [{"column": [{"name": "pid", "path": "getResourceKey()"},
                                                                     {"name": column, "path": path}]}]}})


def test_rows_a_repeat_chooses_by_an_identifier_are_refused(workspace, tmp_path):
    """Pass 37: ``repeat`` paths were not read for comparisons: branches repeating over
    ``birthDate.where(… = '09')`` beside a literal month published every birth month."""
    import_patients(workspace, tmp_path, [planted(i) for i in range(4)])
    branch = {"repeat": ["birthDate.where($this.toString().substring(5, 2) = '05')"],
              "column": [{"name": "month", "path": "'05'"}]}
    view = {**VIEW, "select": [{"column": [{"name": "pid", "path": "getResourceKey()"}]}, {"unionAll": [branch]}]}
    with pytest.raises(SpecError, match=re.escape(DEIDENTIFIED_PICK_RULE)):
        add_spec(workspace, {"name": "months", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
                             "deidentify": "safe-harbor", "view": view})


def test_an_age_range_is_an_age(workspace, tmp_path):
    """Pass 37: a Condition's ``onsetRange`` and a relative's ``ageRange`` were plain values:
    ages 91 to 99 published as they were."""
    import_resources(workspace, tmp_path, "cond", [
        {"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/p{i}"},
         "onsetRange": {"low": {"value": 85 + 3 * i, "unit": "a"}, "high": {"value": 86 + 3 * i, "unit": "a"}}}
        for i in range(4)])
    rows = built_view(workspace, "ranges", "cond", "Condition", [
        {"name": "cid", "path": "getResourceKey()"}, {"name": "low", "path": "onset.ofType(Range).low.value"},
        {"name": "high", "path": "onset.ofType(Range).high.value"}])
    assert sorted((float(r["low"]), float(r["high"])) for r in rows) == [(85, 86), (88, 89), (90, 90), (90, 90)]


def test_ages_held_as_decimals_are_capped():
    """Found beside pass 37: a decimal age column (``decimal(4, 1)``) crashed the profile: 90 could
    not be cast to a decimal of its precision."""
    import decimal

    import pyarrow as pa

    from lithotse_desktop.derive import deidentify

    ages = pa.table({"age": pa.array([decimal.Decimal("85.5"), decimal.Decimal("93.0")], pa.decimal128(4, 1))})
    table, report = deidentify.apply(ages, {"age": "age90"}, reference_year=2026, pseudonymize=lambda t, c: t)
    assert table.column("age").to_pylist() == [decimal.Decimal("85.5"), decimal.Decimal("90.0")]
    assert report["generalised"] == ["age: age90"]


def test_a_de_identified_year_counts_in_yearly_cells(workspace, tmp_path):
    """Safe Harbor keeps a visit date's year only (an integer); an aggregate over the
    de-identified rows can still count them by year (each year dated on its first day), and is
    told plainly that a year makes no month."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    visits = [("2023-03-04", "cardio", 12), ("2023-05-06", "derm", 20), ("2023-09-10", "gen", 30),
              ("2024-07-08", "cardio", 15), ("2024-08-09", "derm", 25), ("2024-10-11", "gen", 40),
              ("2024-11-12", "ortho", 3)]
    with (folder / "visits.csv").open("w") as out:
        out.write("patient_id,visit_date,dept\n")
        out.writelines(f"{dept}-{day[:4]}-{i},{day},{dept}\n" for day, dept, n in visits for i in range(n))
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "visit_date",
                                        "person_column": "patient_id"}, {})
    run_import(workspace, "ehr")
    add_spec(workspace, {"name": "visits_sh", "kind": "sql", "inputs": {"v": {"source": "ehr", "stream": "visits"}},
                         "sql": "SELECT patient_id, visit_date, dept FROM v", "deidentify": "safe-harbor",
                         "pseudonymize": ["patient_id"],
                         "columns": {"patient_id": "person_key", "visit_date": "date", "dept": "code"}})
    yearly = {"name": "by_year", "kind": "aggregate", "input": {"derivative": "visits_sh"},
              "date_field": "visit_date", "grain": "year", "group_by": ["dept"],
              "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "patients"}]}
    add_spec(workspace, yearly)
    build_all(workspace)
    rows = {(r["period"].year, r["dept"]): r for r in read_table(workspace, "by_year")[1].to_pylist()}
    assert set(rows) == {(int(day[:4]), dept) for day, dept, _n in visits}
    assert rows[(2024, "ortho")]["suppressed"]
    shown = {key: r["patients"] for key, r in rows.items() if not r["suppressed"]}
    assert shown and shown == {(int(day[:4]), dept): n for day, dept, n in visits if (int(day[:4]), dept) in shown}
    with pytest.raises(SpecError, match=r"not a date \(a year counts only in yearly cells"):
        add_spec(workspace, {**yearly, "name": "by_month", "grain": "month"})
