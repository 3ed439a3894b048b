"""Column roles: from FHIR types along a ViewDefinition's paths, from a FHIR stream's columns, from names."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from lithotse_desktop.derive.identifiers import (
    ROLES,
    role_by_name,
    stream_roles,
    strongest,
    view_column_roles,
)
from tests.conftest import TEST_DATA

PATIENT_PATHS = [
    ("getResourceKey()", "person_key"),
    ("id", "person_key"),
    ("name.family.first()", "name"),
    ("name.where(use = 'official').given.join(' ')", "name"),
    ("Patient.name.text", "name"),
    ("name.use.first()", "code"),
    ("name.period.start.first()", "date"),
    ("address.line.first()", "address"),
    ("address.city.first()", "city"),
    ("address.district.first()", "county"),
    ("address.state.first()", "state"),
    ("address.postalCode.first()", "zip"),
    ("address.country.first()", "country"),
    ("address.first()", "address"),
    ("telecom.where(system = 'phone').value.first()", "telecom"),
    ("telecom.where(system = 'email').value.first()", "telecom"),
    ("telecom.system.first()", "code"),
    ("identifier.where(type.coding.code = 'MR').value.first()", "identifier"),
    ("identifier.system.first()", "code"),
    ("identifier.type.coding.code.first()", "code"),
    ("birthDate", "birth_date"),
    ("deceased.ofType(dateTime)", "date"),
    ("deceasedDateTime", "date"),
    ("gender", "code"),
    ("maritalStatus.coding.code.first()", "code"),
    ("maritalStatus.text", "code"),
    ("multipleBirthInteger", "value"),
    ("active", "value"),
    ("photo.url.first()", "photo"),
    ("contact.name.family.first()", "name"),
    ("contact.telecom.value.first()", "telecom"),
    ("contact.address.postalCode.first()", "zip"),
    ("generalPractitioner.getReferenceKey(Practitioner).first()", "code"),
    ("managingOrganization.reference", "code"),
    ("link.other.getReferenceKey(Patient).first()", "person_key"),
    ("meta.lastUpdated", "date"),
    ("extension('http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName').valueString.first()", "text"),
    ("extension('http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.ofType(Address).city", "city"),
    ("extension('http://example.org/x').value", None),
    ("name.exists()", "value"),
    ("name.count()", "value"),
    ("name.family.first() & ', ' & gender", "name"),
    ("iif(active, name.family.first(), 'none')", "name"),
    ("text.div", "text"),
    # the resource reached through FHIRPath's environment variables is the resource itself
    ("%resource.name.family.first()", "name"),
    ("%resource.birthDate", "birth_date"),
    ("%rootResource.address.postalCode.first()", "zip"),
    ("%context.telecom.value.first()", "telecom"),
]


@pytest.mark.parametrize(("path", "expected"), PATIENT_PATHS)
def test_patient_paths_take_the_role_of_the_fhir_type_they_reach(path, expected):
    view = {"resource": "Patient", "select": [{"column": [{"name": "c", "path": path}]}]}
    assert view_column_roles(view) == {"c": expected}


ENCOUNTER_PATHS = [
    ("getResourceKey()", "record_key"),
    ("subject.getReferenceKey(Patient)", "person_key"),
    ("subject.getReferenceKey()", "person_key"),
    ("subject.reference", "person_key"),
    ("subject.display", "name"),
    ("subject.identifier.value", "identifier"),
    ("serviceProvider.getReferenceKey(Organization)", "code"),
    ("participant.individual.getReferenceKey(Practitioner).first()", "code"),
    ("episodeOfCare.getReferenceKey(EpisodeOfCare).first()", "record_key"),
    ("period.start", "date"),
    ("period", "date"),
    ("class.code", "code"),
    ("type.first().text", "code"),
    ("length.value", "value"),
    ("length.unit", "code"),
    ("hospitalization.dischargeDisposition.coding.code.first()", "code"),
]


@pytest.mark.parametrize(("path", "expected"), ENCOUNTER_PATHS)
def test_encounter_paths(path, expected):
    view = {"resource": "Encounter", "select": [{"column": [{"name": "c", "path": path}]}]}
    assert view_column_roles(view) == {"c": expected}


def test_foreach_contexts_carry_the_datatype_down():
    view = {"resource": "Patient", "select": [
        {"column": [{"name": "pid", "path": "getResourceKey()"}]},
        {"forEach": "name", "column": [{"name": "family", "path": "family"}, {"name": "use", "path": "use"}]},
        {"forEachOrNull": "address", "column": [{"name": "zip", "path": "postalCode"},
                                                {"name": "street", "path": "line.join(', ')"}],
         "select": [{"forEach": "period", "column": [{"name": "since", "path": "start"}]}]},
        {"forEach": "telecom.where(system = 'fax')", "column": [{"name": "fax", "path": "value"}]},
        {"forEach": "contact", "column": [{"name": "relative", "path": "name.given.first()"}]},
    ]}
    assert view_column_roles(view) == {"pid": "person_key", "family": "name", "use": "code", "zip": "zip",
                                       "street": "address", "since": "date", "fax": "telecom",
                                       "relative": "name"}


def test_union_branches_take_the_most_identifying_role_and_type_hints_fill_unknown_paths():
    view = {"resource": "Patient", "select": [{"unionAll": [
        {"column": [{"name": "v", "path": "gender"}]},
        {"column": [{"name": "v", "path": "name.family.first()"}]}]},
        {"column": [{"name": "when", "path": "extension('u').value", "type": "dateTime"},
                    {"name": "what", "path": "extension('u').value", "type": "string"}]}]}
    assert view_column_roles(view) == {"v": "name", "when": "date", "what": None}


def test_benchmark_view_definitions_are_classified_as_their_fhir_types_say():
    folder = TEST_DATA / "fhir" / "viewdefinitions-pathling-benchmark"
    demographics = view_column_roles(json.loads((folder / "PatientDemographics.json").read_text()))
    assert demographics == {"id": "person_key", "gender": "code", "given_name": "name", "family_name": "name"}
    addresses = view_column_roles(json.loads((folder / "PatientAddresses.json").read_text()))
    assert addresses == {"patient_id": "person_key", "street": "address", "use": "code", "city": "city",
                         "zip": "zip"}
    encounters = view_column_roles(json.loads((folder / "EncounterFlat.json").read_text()))
    assert encounters["patient_id"] == "person_key" and encounters["period_start"] == "date"
    assert encounters["type_code"] == "code" and encounters["id"] == "record_key"


def test_csv_columns_are_classified_by_name():
    assert [role_by_name(n) for n in ("DOB", "Birth_Date", "ZIP", "zip_code", "PATIENT", "patient_id", "MRN",
                                      "E-mail", "Phone", "SSN", "Address", "First Name")] == \
        ["birth_date", "birth_date", "zip", "zip", "person_key", "person_key", "mrn", "email", "phone", "ssn",
         "address", "name"]
    assert [role_by_name(n) for n in ("department_name", "DESCRIPTION", "CODE", "grp", "stateful")] == \
        [None, None, None, None, None]


def test_csv_columns_named_for_whose_value_they_hold_are_classified_too():
    """The twenty-first review grouped an aggregate by ``patient_last_name`` and ``chart_no``: not
    known by their names, they were published as the keys of suppressed cells, every patient's."""
    assert [role_by_name(n) for n in ("patient_last_name", "patientLastName", "chart_no", "guarantor_phone",
                                      "emergency_contact_phone", "pt_dob", "birth_dt", "zip_code5", "phone_2",
                                      "mother_maiden_name", "home_address")] == \
        ["name", "name", "mrn", "phone", "phone", "birth_date", "birth_date", "zip", "phone", "name", "address"]
    assert [role_by_name(n) for n in ("primary_diagnosis", "contact_reason", "current_status", "patient_class",
                                      "department_name")] == [None, None, None, None, None]


def test_fhir_stream_columns():
    schema = pa.schema([("id", pa.string()), ("resourceType", pa.string()), ("versionId", pa.string()),
                        ("lastUpdated", pa.timestamp("us", "UTC")), ("date", pa.date32()),
                        ("resource", pa.string())])
    assert stream_roles(schema, "Patient") == {"id": "person_key", "resourceType": "code", "versionId": "code",
                                                "lastUpdated": "date", "date": "date", "resource": "resource"}
    assert stream_roles(schema, "Encounter")["id"] == "record_key"


def test_every_safe_harbor_identifier_has_a_role_and_direct_ones_never_split_a_cell():
    covered = {n for role in ROLES.values() for n in role.items}
    assert covered == set(range(1, 19))
    for name in ("name", "address", "phone", "fax", "email", "ssn", "mrn", "health_plan", "account", "license",
                 "vehicle", "device", "url", "ip", "biometric", "photo", "identifier", "person_key",
                 "birth_date", "resource"):
        assert not ROLES[name].cell_dimension, name
        assert ROLES[name].safe_harbor in ("remove", "pseudonymize", "birth_year"), name
    assert strongest("code", "name") == "name"
    assert strongest("code", None) is None
    assert strongest("zip", None) == "zip"
