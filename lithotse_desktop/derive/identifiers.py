"""What a column holds, as far as identifying people goes: the roles, as data, and how columns get one.

A role says which of the 18 kinds of identifier of HIPAA's Safe Harbor method (45 CFR
164.514(b)(2); the list is in docs/privacy.md) a column carries, if any, and so what each
de-identification profile does with it, whether a published cell may be split by it, and how
a ``sql`` cells query sees it. Columns get their role

* from their FHIR type, for ViewDefinition columns (:func:`view_column_roles`: the FHIRPath is
  followed through the R4 element table of :mod:`.sof.cardinality`: HumanName, Address,
  ContactPoint, Identifier, Attachment, date/dateTime, references to a Patient, …);
* from the fixed columns of a FHIR stream (``resource``, ``id``, the date columns);
* from the spec's ``columns`` map (``{"zip": "zip", "dob": "birth_date", "mrn": "mrn"}``), which
  always wins;
* from a column's name, for CSV, spreadsheet and HL7 streams (:data:`NAME_ROLES`: whole names
  such as ``dob`` or ``phone``, also after words saying whose value it is, :data:`OWNERS`, as in
  ``patient_last_name``; so ``department_name`` is not taken for a name).

``None`` is "unclassified": the de-identification profiles refuse such a column until the spec
says what it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from .sof.cardinality import element
from .sof.errors import ViewError
from .sof.fhirpath import parse


@dataclass(frozen=True)
class Role:
    """One kind of column. ``items`` are Safe Harbor's identifier numbers (empty: not one of them)."""

    name: str
    items: tuple[int, ...]
    label: str
    cell_dimension: bool
    """Whether a published cell may be split by it (an aggregate's group-by, a sql cell's column)."""
    cell_input: str | None
    """How a ``sql`` cells query sees it: ``token`` (a pseudonym it cannot publish), ``year``
    (the 1st of January of its year), ``drop`` (the column is left out), None (as it is)."""
    safe_harbor: str
    limited: str
    """What the ``safe-harbor`` and ``limited`` profiles do: keep, remove, pseudonymize, year,
    birth_year, age90, zip3, zip5, or refuse (free text)."""

    def rule(self) -> str:
        """The rule a refusal names."""
        if not self.items:
            return self.label
        if len(self.items) > 2:
            return f"{self.label} (every one of Safe Harbor's 18 identifiers)"
        numbers = " and ".join(str(n) for n in self.items)
        return f"{self.label} (Safe Harbor identifier {numbers})"


def _role(name: str, items: tuple[int, ...], label: str, cell_dimension: bool, cell_input: str | None,
          safe_harbor: str, limited: str) -> Role:
    return Role(name, items, label, cell_dimension, cell_input, safe_harbor, limited)


_DIRECT = (False, "token", "remove", "remove")
ROLES: dict[str, Role] = {r.name: r for r in [
    _role("name", (1,), "a name", *_DIRECT),
    _role("address", (2,), "a street address", *_DIRECT),
    _role("geo", (2,), "a geographic code smaller than a state (geocode, precinct, coordinates)", *_DIRECT),
    _role("city", (2,), "a city", True, None, "remove", "keep"),
    _role("county", (2,), "a county", True, None, "remove", "remove"),
    _role("zip", (2,), "a ZIP code", True, None, "zip3", "zip5"),
    _role("state", (), "a state", True, None, "keep", "keep"),
    _role("country", (), "a country", True, None, "keep", "keep"),
    _role("birth_date", (3,), "a birth date", False, "year", "birth_year", "keep"),
    _role("date", (3,), "a date of the person's care or life (admission, discharge, service, death)",
          True, None, "birth_year", "keep"),
    _role("age", (3,), "an age", True, None, "age90", "keep"),
    _role("phone", (4,), "a telephone number", *_DIRECT),
    _role("fax", (5,), "a fax number", *_DIRECT),
    _role("email", (6,), "an email address", *_DIRECT),
    _role("telecom", (4, 6), "a telephone or fax number or email address", *_DIRECT),
    _role("ssn", (7,), "a social security number", *_DIRECT),
    _role("mrn", (8,), "a medical record number", *_DIRECT),
    _role("health_plan", (9,), "a health plan beneficiary number", *_DIRECT),
    _role("account", (10,), "an account number", *_DIRECT),
    _role("license", (11,), "a certificate or licence number", *_DIRECT),
    _role("vehicle", (12,), "a vehicle identifier", *_DIRECT),
    _role("device", (13,), "a device identifier or serial number", *_DIRECT),
    _role("url", (14,), "a web URL", *_DIRECT),
    _role("ip", (15,), "an IP address", *_DIRECT),
    _role("biometric", (16,), "a biometric identifier", *_DIRECT),
    _role("photo", (17,), "a photograph", *_DIRECT),
    _role("identifier", (18,), "an identifying number or code", *_DIRECT),
    _role("person_key", (18,), "a person's key (a patient id or reference)", False, "token",
          "pseudonymize", "pseudonymize"),
    _role("record_key", (18,), "a record's key", False, "token", "pseudonymize", "pseudonymize"),
    _role("resource", tuple(range(1, 19)), "a whole FHIR resource", False, "drop", "remove", "remove"),
    _role("text", (), "free text, which may hold any identifier", True, None, "refuse", "refuse"),
    _role("code", (), "a code", True, None, "keep", "keep"),
    _role("value", (), "a value", True, None, "keep", "keep"),
    _role("count", (), "a count of a group's rows computed before the cells (a window or a GROUP BY not by "
          "person), which as a key, filter or measure of a cell would show counts suppression hides",
          False, None, "keep", "keep"),
    _role("none", (), "declared as not identifying", True, None, "keep", "keep"),
]}
"""Every role a spec's ``columns`` map may name."""

_SEVERITY = {name: (3 if not role.cell_dimension else 2 if role.items else 1 if name == "text" else 0)
             for name, role in ROLES.items()}


def role(name: str) -> Role:
    return ROLES[name]


def identifying(name: str | None) -> bool:
    """Whether a role says who someone is (no cell may be split by it); a ``count`` of a group's
    rows is no cell's key either, but it names no one."""
    return name is not None and not ROLES[name].cell_dimension and name != "count"


def strongest(*names: str | None) -> str | None:
    """The most identifying of several roles; unclassified wins over the harmless ones."""
    known = [n for n in names if n is not None]
    if not known:
        return None
    best = max(known, key=lambda n: _SEVERITY[n])
    if len(known) < len(names) and _SEVERITY[best] < 2:
        return None
    return best


# --- columns of CSV, spreadsheet and HL7 streams, by name -----------------------------------------
def _names(role_name: str, *names: str) -> dict[str, str]:
    return {n: role_name for n in names}


NAME_ROLES: dict[str, str] = {
    **_names("name", "name", "fullname", "firstname", "lastname", "givenname", "familyname", "surname",
             "middlename", "patientname", "given", "family", "forename", "maidenname", "mothersmaidenname",
             "fname", "lname", "firstnm", "lastnm", "nickname", "initials"),
    **_names("address", "address", "addressline", "address1", "address2", "street", "streetaddress", "addr",
             "homeaddress"),
    **_names("city", "city", "town"),
    **_names("county", "county"),
    **_names("zip", "zip", "zipcode", "postalcode", "postcode", "zip5"),
    **_names("state", "state"),
    **_names("geo", "lat", "lon", "lng", "latitude", "longitude", "geocode", "precinct", "censustract"),
    **_names("birth_date", "birthdate", "dob", "dateofbirth", "birthday", "birthdt", "birthdttm", "birthdatetime",
             "dobdt", "born", "birth", "bornon", "bdate"),
    **_names("date", "deathdate", "dod", "dateofdeath", "deceaseddate"),
    **_names("age", "age"),
    **_names("phone", "phone", "telephone", "phonenumber", "mobile", "homephone", "workphone", "cellphone"),
    **_names("fax", "fax", "faxnumber"),
    **_names("email", "email", "emailaddress"),
    **_names("ssn", "ssn", "socialsecuritynumber"),
    **_names("mrn", "mrn", "medicalrecordnumber", "medicalrecordno", "mrno", "mrnumber", "chartno", "chartnumber",
             "chartnum", "chartid"),
    **_names("health_plan", "memberid", "insuranceid", "healthplanid", "beneficiaryid", "subscriberid",
             "policynumber"),
    **_names("account", "account", "accountnumber", "visitnumber"),
    **_names("license", "license", "licence", "licensenumber", "driverslicense"),
    **_names("vehicle", "vin", "licenseplate"),
    **_names("device", "deviceid", "serialnumber", "udi"),
    **_names("url", "url", "website"),
    **_names("ip", "ip", "ipaddress"),
    **_names("person_key", "patient", "patientid", "personid", "subjectid", "pid"),
}
"""Column names (lower case, letters and digits only) that say what a CSV column holds."""


OWNERS = ("patient", "pt", "pat", "person", "member", "subject", "client", "guarantor", "insured", "subscriber",
          "policyholder", "mother", "mothers", "father", "fathers", "parent", "guardian", "spouse", "nextofkin", "kin",
          "emergencycontact", "emergency", "contact", "home", "primary", "current", "mailing", "billing", "legal")
"""Words naming whose value a column holds, before what it holds (``patient_last_name``,
``guarantor_phone``): taken off the front of a name that is not known as it stands."""


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def role_by_name(column: str) -> str | None:
    """A CSV, spreadsheet or HL7 column's role from its name: the name as it stands, else without
    the words before it that say whose value it is (:data:`OWNERS`) and without a number after it
    (``zip_code5``, ``phone_2``); ``department_name`` is no one's name."""
    words = _words(column)
    while True:
        joined = "".join(words) if words else _normal(column)
        for candidate in (joined, joined.rstrip("0123456789")):
            if candidate in NAME_ROLES:
                return NAME_ROLES[candidate]
        owner = next((n for n in range(len(words) - 1, 0, -1) if "".join(words[:n]) in OWNERS), None)
        if owner is None:
            return None
        words = words[owner:]


def stream_roles(schema: pa.Schema, stream: str) -> dict[str, str | None]:
    """Roles of a raw stream's columns: FHIR streams by their fixed columns, the others by name."""
    names = schema.names
    if {"resource", "resourceType", "id"} <= set(names):
        out: dict[str, str | None] = {}
        for field in schema:
            if field.name == "resource":
                out[field.name] = "resource"
            elif field.name == "id":
                out[field.name] = "person_key" if stream == "Patient" else "record_key"
            elif field.name in ("resourceType", "versionId"):
                out[field.name] = "code"
            elif pa.types.is_date(field.type) or pa.types.is_timestamp(field.type):
                out[field.name] = "date"
            else:
                out[field.name] = role_by_name(field.name)
        return out
    return {name: role_by_name(name) for name in names}


def type_role(field: pa.Field, numbers: bool = True) -> str | None:
    """A column's role from its Arrow type alone: numbers are values (unless not ``numbers``: a
    number may be a phone number or an SSN), dates are dates."""
    typ = field.type
    if pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ) or \
            pa.types.is_decimal(typ):
        return "value" if numbers else None
    if pa.types.is_date(typ) or pa.types.is_timestamp(typ):
        return "date"
    return None


def check_columns_map(value: Any) -> dict[str, str]:
    """The spec's ``columns`` map: column name -> a role of :data:`ROLES` (raises ValueError)."""
    if not isinstance(value, dict):
        raise ValueError("must map column names to roles")
    for column, name in value.items():
        if name not in ROLES:
            raise ValueError(f"{column}: {name!r} is not a role; roles: {', '.join(ROLES)}")
    return value


# --- ViewDefinition columns, by FHIR type ------------------------------------------------------------
_DATATYPE_ROLES: dict[str, tuple[str, dict[str, str | None]]] = {
    "HumanName": ("name", {"use": "code", "period": None}),
    "Address": ("address", {"city": "city", "district": "county", "state": "state", "postalCode": "zip",
                            "country": "country", "use": "code", "type": "code", "period": None}),
    "ContactPoint": ("telecom", {"system": "code", "use": "code", "rank": "value", "period": None}),
    "Identifier": ("identifier", {"use": "code", "system": "code", "type": "code", "period": None,
                                  "assigner": None}),
    "Attachment": ("photo", {"contentType": "code", "language": "code"}),
}
"""Datatypes that carry identifiers: the role of the whole value and of any part not listed,
and the parts that are something else (None: by their own type)."""

_ELEMENT_ROLES = {("Patient", "birthDate"): "birth_date", ("Patient", "photo"): "photo",
                  ("Meta", "source"): "url", ("CodeableConcept", "text"): "code", ("Coding", "display"): "code",
                  ("Quantity", "unit"): "code", ("Duration", "unit"): "code"}
"""Elements whose role is not their type's: a concept's text is its term and a unit is a unit,
not free text."""
_EXTRA_ELEMENTS = {("Patient", "photo"): (True, "Attachment")}
_PERSON_REFERENCES = {"subject", "patient", "beneficiary", "other"}
_PROVIDER_REFERENCES = {"serviceProvider", "managingOrganization", "generalPractitioner", "location",
                        "organization", "assigner", "partOf", "custodian"}
"""References that point at providers only. Others that usually do may also name a Patient or a
RelatedPerson in R4 (an Observation's ``performer``, a Condition's ``asserter``, an
AllergyIntolerance's ``recorder``, a request's ``requester``, a Composition's ``author``, an
Encounter participant's ``individual``): they are record keys, pseudonymized, unless
``getReferenceKey(Practitioner)`` or the like says which kind is read."""
_PROVIDER_TYPES = {"Practitioner", "PractitionerRole", "Organization", "Location", "HealthcareService"}
_TYPE_ROLES = {
    **{t: "date" for t in ("date", "dateTime", "instant", "Period")},
    **{t: "code" for t in ("code", "uri", "canonical", "Coding", "CodeableConcept", "Meta", "oid", "uuid")},
    "url": "url",
    "Age": "age",
    **{t: "value" for t in ("boolean", "integer", "decimal", "positiveInt", "unsignedInt", "integer64",
                            "Quantity", "Duration", "Range", "Count", "time")},
    **{t: "text" for t in ("string", "markdown", "xhtml", "Narrative", "Annotation")},
    "Resource": "resource",
}
_STRING_TYPES = ("string", "code", "uri", "id", "markdown")
_SAME_ROLE = {"first", "last", "single", "distinct", "where", "join", "upper", "lower", "trim", "replace",
              "substring", "toString", "toInteger", "toDecimal", "lowBoundary", "highBoundary"}
_VALUE_FUNCTIONS = {"exists", "empty", "all", "not", "count", "length", "startsWith", "endsWith", "contains",
                    "matches"}
_PRESENCE_FUNCTIONS = {"exists", "empty", "count", "hasValue"}
"""Functions telling only whether (or how many) values are there: a phone's presence names no one
(unless a criterion on the way tested it: ``telecom.where(value = '555-0100').exists()``)."""
_COMPUTING = frozenset({"join", "upper", "lower", "trim", "replace", "substring", "toString", "toInteger",
                        "toDecimal", "lowBoundary", "highBoundary"})
"""Functions of :data:`_SAME_ROLE` whose value is computed from the element, not the element."""
_PER_ITEM = frozenset({"where", "exists", "all", "select", "repeat"})


def _told(*found: _Typed) -> str:
    """The role of a value computed from ``found`` (a comparison, a length, a test): what it is
    computed from where that is one of the eighteen kinds of identifier (a test of a birth date
    against a day, a family name against a name, tells them), else a value."""
    read = strongest(*(_settled(f) for f in found))
    return read if read is not None and ROLES[read].items else "value"


@dataclass(frozen=True)
class _Typed:
    """Where a FHIRPath has got to: the FHIR type (None: unknown), the role decided so far, the
    identifying datatype we are inside, and for references which element held them; whether the
    value was computed (not an element as the resource holds it), and the most identifying role
    a criterion on the way tested (``name.where(family = 'Berg').count()`` tells a family name)."""

    fhir: str | None
    role: str | None = None
    inside: str | None = None
    element: str | None = None
    resource: str | None = None
    computed: bool = False
    tested: str | None = None

    def carrying(self, earlier: _Typed, computed: bool = False) -> _Typed:
        """This value, reached from ``earlier``: what was computed or tested on the way stays so."""
        tested = strongest(self.tested, earlier.tested) if self.tested or earlier.tested else None
        return replace(self, computed=self.computed or earlier.computed or computed, tested=tested)


def _settled(typed: _Typed) -> str | None:
    """The role of a value the path ends on, and of what was tested to reach it."""
    found = _own_role(typed)
    return strongest(found, typed.tested) if typed.tested is not None else found


def _tested(found: _Typed) -> str | None:
    """The identifying role a criterion reads, if any (a test of a code tells no one)."""
    read = _settled(found)
    return read if read is not None and ROLES[read].items else None


def _own_role(typed: _Typed) -> str | None:
    if typed.role is not None:
        return typed.role
    if typed.fhir == "Reference":
        return "person_key" if typed.element in _PERSON_REFERENCES else \
            "code" if typed.element in _PROVIDER_REFERENCES else "record_key"
    if typed.fhir == "id":
        return "code"
    if typed.fhir in _DATATYPE_ROLES:
        return _DATATYPE_ROLES[typed.fhir][0]
    return _TYPE_ROLES.get(typed.fhir or "")


def _member(base: _Typed, name: str) -> _Typed:
    if base.role is not None and base.inside is None:
        # a settled role (a code, a value, text) stays what it is below, except dates in a period
        known = element(base.fhir, name)
        fhir = known[1] if known else None
        role_below = "date" if fhir in ("date", "dateTime", "instant", "Period") and base.role != "code" \
            else base.role
        return _Typed(fhir, role_below, None, name, base.resource)
    if base.inside is not None:
        whole, parts = _DATATYPE_ROLES[base.inside]
        known = element(base.fhir, name) or _EXTRA_ELEMENTS.get((base.fhir or "", name))
        fhir = known[1] if known else None
        if name in parts:
            override = parts[name]
            if override is None:
                return _Typed(fhir, None, None, name, base.resource)
            return _Typed(fhir, override, None, name, base.resource)
        return _Typed(fhir, whole, base.inside, name, base.resource)
    if base.fhir == "Reference":
        if name == "reference":
            return _Typed("string", _settled(base), None, name, base.resource)
        if name == "display":
            return _Typed("string", "name" if base.element in _PERSON_REFERENCES else "text", None, name,
                          base.resource)
        if name == "identifier":
            return _Typed("Identifier", "identifier", "Identifier", name, base.resource)
        if name == "type":
            return _Typed("uri", "code", None, name, base.resource)
    known = element(base.fhir, name) or _EXTRA_ELEMENTS.get((base.fhir or "", name))
    if known is None:
        return _Typed(None, None, None, name, base.resource)
    fhir = known[1]
    if (base.fhir or "", name) in _ELEMENT_ROLES:
        fixed = _ELEMENT_ROLES[(base.fhir or "", name)]
        return _Typed(fhir, fixed, fhir if fhir in _DATATYPE_ROLES else None, name, base.resource)
    if name == "implicitRules" or (base.fhir == "Extension" and fhir in ("uri", "url", "canonical")):
        # an address a system chose, or an extension's: may name a patient's page (Safe Harbor's URLs)
        return _Typed(fhir, "url", None, name, base.resource)
    if name == "id" and base.fhir == base.resource:
        return _Typed(fhir, "person_key" if base.resource == "Patient" else "record_key", None, name,
                      base.resource)
    if fhir in _DATATYPE_ROLES:
        return _Typed(fhir, _DATATYPE_ROLES[fhir][0], fhir, name, base.resource)
    return _Typed(fhir, None, None, name, base.resource)


def _reference_key(base: _Typed, args: list[tuple]) -> str:
    target = args[0][2] if args and args[0][0] == "member" and args[0][1] is None else None
    if target == "Patient":
        return "person_key"
    if target in _PROVIDER_TYPES:
        return "code"
    if target is None and base.element in _PERSON_REFERENCES:
        return "person_key"
    if target is None and base.element in _PROVIDER_REFERENCES:
        return "code"
    return "record_key"


def _of_type(base: _Typed, type_name: str) -> _Typed:
    if base.inside is not None or base.role is not None:
        return _Typed(type_name, base.role, base.inside, base.element, base.resource)
    if base.element == "value" and type_name in ("uri", "url", "canonical"):
        return _Typed(type_name, "url", None, base.element, base.resource)
    if type_name == "Age" or (type_name == "Range" and base.element in _AGE_ELEMENTS):
        # its value is an age (a Range of an onset or of a relative's age bounds one), capped at 90
        return _Typed(type_name, "age", None, base.element, base.resource)
    if type_name in _DATATYPE_ROLES:
        return _Typed(type_name, _DATATYPE_ROLES[type_name][0], type_name, base.element, base.resource)
    return _Typed(type_name, None, None, base.element, base.resource)


_AGE_ELEMENTS = frozenset({"onset", "abatement", "age", "deceased"})
"""Choice elements whose Range is an age (a Condition's or an allergy's onset, a relative's age)."""
_RESOURCE_CONSTANTS = frozenset({"resource", "rootResource", "context"})
"""FHIRPath's environment variables that stand for the resource a view reads (see ``sof.compile``)."""


class _Resolver:
    """Follows a parsed FHIRPath (see :mod:`.sof.fhirpath`) from a context to the role it ends on."""

    def __init__(self, resource: str) -> None:
        self.resource = resource

    def root(self) -> _Typed:
        return _Typed(self.resource, None, None, None, self.resource)

    def walk(self, node: tuple, this: _Typed) -> _Typed:
        tag = node[0]
        if tag == "lit":
            return _Typed(node[1], "none")
        if tag == "const" and node[1] in _RESOURCE_CONSTANTS:
            # the resource itself, as the compiler reads it: %resource.name is a HumanName
            return self.root()
        if tag in ("const", "empty", "index", "total"):
            return _Typed(None, "none")
        if tag == "this":
            return this
        if tag == "member":
            if node[1] is None and node[2] == self.resource and this.fhir == self.resource:
                return this
            base = this if node[1] is None else self.walk(node[1], this)
            return _member(base, node[2]).carrying(base)
        if tag == "indexer":
            # the item taken tells what the index read: ('0' | … | '9')[a birth date's digit] is that digit
            items, index = self.walk(node[1], this), self.walk(node[2], this)
            told = _tested(index)
            if told is None:
                return items
            return _Typed(items.fhir, strongest(_settled(items), told), computed=True)
        if tag == "neg":
            inner = self.walk(node[1], this)
            return _Typed("decimal", _told(inner), computed=True)
        if tag == "type":
            inner = self.walk(node[2], this)
            if node[1] == "as":
                return _of_type(inner, node[3]).carrying(inner)
            return _Typed("boolean", _told(inner), computed=True)
        if tag == "call":
            return self.call(node, this)
        _op, operator, left, right = node
        a, b = self.walk(left, this), self.walk(right, this)
        if operator == "|":
            joined = _Typed(a.fhir if a.fhir == b.fhir else None, strongest(_settled(a), _settled(b)))
            return joined.carrying(a).carrying(b)
        if operator in ("&", "+"):
            return _Typed(a.fhir if a.fhir == b.fhir else None, strongest(_settled(a), _settled(b)), computed=True)
        return _Typed("boolean", _told(a, b), computed=True)

    def call(self, node: tuple, this: _Typed) -> _Typed:
        _tag, base_node, name, args = node
        base = this if base_node is None else self.walk(base_node, this)
        if name in _PER_ITEM and args:
            # the criterion is evaluated on each item: what it tests is told by what passes it
            tested = _tested(self.walk(args[0], base))
            if tested is not None:
                base = replace(base, tested=strongest(base.tested, tested) if base.tested else tested)
        if name in _SAME_ROLE:
            if name in _COMPUTING:
                # what the arguments read counts too: '0123456789'.substring(a birth date's digit, 1) is that digit
                told = [t for a in args if (t := _tested(self.walk(a, this))) is not None]
                role = strongest(_settled(base), *told) if told else _settled(base)
                return _Typed("string", role, None, base.element, base.resource).carrying(base, True)
            return base
        if name in _VALUE_FUNCTIONS:
            if name in _PRESENCE_FUNCTIONS:
                return _Typed("boolean", base.tested or "value", computed=True)
            return _Typed("boolean", _told(base, *(self.walk(a, this) for a in args)), computed=True)
        if name == "ofType" and args and args[0][0] == "member":
            return _of_type(base, args[0][2]).carrying(base)
        if name == "getResourceKey":
            return _Typed("string", "person_key" if self.resource == "Patient" else "record_key")
        if name == "getReferenceKey":
            return _Typed("string", _reference_key(base, args)).carrying(base)
        if name == "select" and args:
            return self.walk(args[0], base).carrying(base)
        if name == "iif" and len(args) >= 2:
            # the branch taken tells what the condition found: a test of a birth month is a birth date
            condition = self.walk(args[0], this)
            branches = [self.walk(a, this) for a in args[1:]]
            return _Typed(None, strongest(_tested(condition), *(_settled(b) for b in branches)), computed=True)
        if name == "extension":
            return _Typed("Extension", None, None, "extension", base.resource).carrying(base)
        return _Typed(None, None)

    def role_of(self, path: str, context: _Typed) -> str | None:
        try:
            return _settled(self.walk(parse(path), context))
        except ViewError:
            return None

    def context_of(self, path: str, context: _Typed) -> _Typed:
        try:
            return self.walk(parse(path), context)
        except ViewError:
            return _Typed(None, None)


def _selects(resolver: _Resolver, selects: Any, context: _Typed,
             hints: bool) -> Iterator[tuple[str, str | None, bool]]:
    for select in selects or []:
        if not isinstance(select, dict):
            continue
        here = context
        for key in ("forEach", "forEachOrNull"):
            if isinstance(select.get(key), str):
                here = resolver.context_of(select[key], context)
        if "repeat" in select:
            here = _Typed(None, None)
        for column in select.get("column", []) or []:
            if not isinstance(column, dict) or not isinstance(column.get("name"), str):
                continue
            reached = resolver.context_of(str(column.get("path", "")), here)
            found = _settled(reached)
            hinted = column.get("type")
            if found is None and hints and isinstance(hinted, str) and hinted not in _STRING_TYPES:
                found = _TYPE_ROLES.get(hinted)
            yield column["name"], found, reached.computed
        yield from _selects(resolver, select.get("select"), here, hints)
        for branch in select.get("unionAll", []) or []:
            yield from _selects(resolver, [branch], here, hints)


def view_column_roles(view: dict, *, hints: bool = True) -> dict[str, str | None]:
    """The role of each column of a ViewDefinition, from the FHIR types its paths reach.

    A column named in several ``unionAll`` branches takes the most identifying of their roles.
    A column whose path the types do not follow (inside a ``repeat``, an unknown element) takes
    the role of its declared ``type`` where ``hints``; without them (under a de-identification
    profile) it stays unclassified: a declared integer may be a phone number.
    """
    resource = str(view.get("resource", ""))
    resolver = _Resolver(resource)
    out: dict[str, str | None] = {}
    seen: set[str] = set()
    for name, found, _computed in _selects(resolver, view.get("select"), resolver.root(), hints):
        out[name] = strongest(out[name], found) if name in seen else found
        seen.add(name)
    return out


def view_computed_columns(view: dict) -> set[str]:
    """Columns of a ViewDefinition whose values are computed (arithmetic, a substring, a test, an
    ``iif``), not an element as the resource holds it: a profile cannot generalise such a value
    by its form (``2000 + birth month`` reads as a year)."""
    resource = str(view.get("resource", ""))
    resolver = _Resolver(resource)
    return {name for name, _found, computed in _selects(resolver, view.get("select"), resolver.root(), True)
            if computed}


# --- ViewDefinitions that pick people out by an identifier ----------------------------------------------
_PATH_LOGIC = frozenset({"and", "or", "xor", "implies"})
_PATH_COMPARISONS = frozenset({"=", "!=", "~", "!~", "<", ">", "<=", ">=", "in", "contains"})
_PATH_MATCHES = frozenset({"startsWith", "endsWith", "contains", "matches", "matchesFull", "indexOf", "lastIndexOf",
                           "replaceMatches", "subsetOf", "supersetOf", "intersect", "exclude"})
"""Functions that compare what they are called on with their arguments."""
_PATH_CRITERIA = frozenset({"where", "exists", "all", "select", "repeat"})
"""Functions whose argument is evaluated for each item (``$this``): a ``where`` keeps the items it holds for."""
_PATH_PRESENCE = frozenset({"exists", "empty", "hasValue"})
_PATH_KEY_STEPS = frozenset({"first", "last", "single", "ofType", "getResourceKey", "getReferenceKey"})
"""Functions that pass a value on whole: a path through only these is an element's own value."""


@dataclass(frozen=True)
class ViewPicks:
    conditions: tuple[str, ...]
    """Each path (``where``, ``forEach`` or a column's) that compares an identifier, as written."""
    computed: frozenset[str]
    """Columns holding an identifier computed by a function, not an element's own value."""


class _Picker:
    """Finds the comparisons of identifiers in FHIRPaths (see :func:`view_picks`)."""

    def __init__(self, resolver: _Resolver) -> None:
        self.resolver = resolver
        self.found: dict[str, None] = {}

    def typed(self, node: tuple, this: _Typed) -> _Typed:
        try:
            return self.resolver.walk(node, this)
        except (ViewError, KeyError, IndexError, TypeError):
            return _Typed(None, None)

    def touches(self, node: tuple, this: _Typed) -> bool:
        """Whether any step of a path reaches a value that is no cell dimension."""
        tag = node[0]
        if tag in ("lit", "const", "empty", "index", "total"):
            return False
        settled = _settled(self.typed(node, this))
        if settled is not None and not ROLES[settled].cell_dimension:
            return True
        if tag == "member":
            return node[1] is not None and self.touches(node[1], this)
        if tag == "call":
            base = this if node[1] is None else self.typed(node[1], this)
            inner = base if node[2] in _PATH_CRITERIA else this
            return (node[1] is not None and self.touches(node[1], this)) or \
                any(self.touches(arg, inner) for arg in node[3])
        if tag == "op":
            return self.touches(node[2], this) or self.touches(node[3], this)
        if tag in ("indexer", "type"):
            return self.touches(node[1] if tag == "indexer" else node[2], this)
        if tag == "neg":
            return self.touches(node[1], this)
        return False

    def is_key(self, node: tuple) -> bool:
        tag = node[0]
        if tag == "member":
            return node[1] is None or self.is_key(node[1])
        if tag == "call" and node[2] in _PATH_KEY_STEPS:
            return (node[1] is None or self.is_key(node[1])) and all(a[0] == "member" for a in node[3])
        return tag == "this"

    def scan(self, node: tuple, this: _Typed, condition: bool, label: str) -> None:
        """Note ``label`` if the path compares an identifier; ``condition``: its value keeps or drops rows."""
        tag = node[0]
        if tag == "op" and node[1] in _PATH_LOGIC:
            self.scan(node[2], this, condition, label)
            self.scan(node[3], this, condition, label)
            return
        if tag == "indexer" and self.touches(node[2], this):
            self.found.setdefault(label)  # an item chosen by an identifier's value
        if tag == "op" and node[1] in _PATH_COMPARISONS:
            left, right = node[2], node[3]
            if (self.touches(left, this) or self.touches(right, this)) and not \
                    (node[1] in ("=", "~") and self.is_key(left) and self.is_key(right)):
                self.found.setdefault(label)
        elif tag == "call":
            self.scan_call(node, this, condition, label)
            return
        elif condition and self.touches(node, this):
            self.found.setdefault(label)
        for child in node[1:]:
            if isinstance(child, tuple):
                self.scan(child, this, False, label)

    def scan_call(self, node: tuple, this: _Typed, condition: bool, label: str) -> None:
        _tag, base_node, name, args = node
        base = this if base_node is None else self.typed(base_node, this)
        if base_node is not None:
            self.scan(base_node, this, False, label)
        if name == "not" and not args and base_node is not None:
            self.scan(base_node, this, condition, label)
        elif name in _PATH_PRESENCE and not args:
            return
        elif name in _PATH_CRITERIA:
            for arg in args:
                self.scan(arg, base, name not in ("select", "repeat"), label)
            return
        elif name == "iif" and args:
            self.scan(args[0], this, True, label)
            for arg in args[1:]:
                self.scan(arg, this, False, label)
            return
        elif name in _COMPUTING and any(self.touches(a, this) for a in args):
            self.found.setdefault(label)  # a part of a value chosen by an identifier's value
        elif name in _PATH_MATCHES and (base_node is None and self.touches(("this",), this) or
                                         base_node is not None and self.touches(base_node, this) or
                                         any(self.touches(a, this) for a in args)):
            self.found.setdefault(label)
        elif condition and self.touches(node, this):
            self.found.setdefault(label)
        for arg in args:
            self.scan(arg, this, False, label)

    def path(self, path: Any, this: _Typed, condition: bool, label: str) -> tuple | None:
        try:
            node = parse(path)
        except ViewError:
            return None
        self.scan(node, this, condition, label)
        return node

    def selects(self, selects: Any, context: _Typed, computed: set[str]) -> None:
        for select in selects or []:
            if not isinstance(select, dict):
                continue
            here = context
            for key in ("forEach", "forEachOrNull"):
                if isinstance(select.get(key), str):
                    self.path(select[key], context, False, f"{key} {select[key]}")
                    here = self.resolver.context_of(select[key], context)
            repeat = select.get("repeat")
            for path in (repeat if isinstance(repeat, list) else [repeat] if isinstance(repeat, str) else []):
                if isinstance(path, str):
                    self.path(path, context, False, f"repeat {path}")
            for column in select.get("column", []) or []:
                if not isinstance(column, dict) or not isinstance(column.get("path"), str):
                    continue
                name = str(column.get("name"))
                node = self.path(column["path"], here, False, f"column {name!r}: {column['path']}")
                found = self.resolver.role_of(column["path"], here)
                if node is not None and found is not None and not ROLES[found].cell_dimension and \
                        any(n[0] == "call" and n[2] not in _PATH_KEY_STEPS | {"where"} for n in _nodes(node)):
                    computed.add(name)
            self.selects(select.get("select"), here, computed)
            for branch in select.get("unionAll", []) or []:
                self.selects([branch], here, computed)


def _nodes(node: tuple) -> Iterator[tuple]:
    yield node
    for child in node[1:]:
        if isinstance(child, tuple):
            yield from _nodes(child)
        elif isinstance(child, list):
            for item in child:
                if isinstance(item, tuple):
                    yield from _nodes(item)


def view_picks(view: dict) -> ViewPicks:
    """The paths by which a ViewDefinition picks people out by an identifier: a ``where`` (or a
    ``forEach``, or a column) comparing a value whose FHIR type makes it an identifier (a reference to
    the patient, a name, an identifier's value, a birth date, …) with anything but another one. A
    presence test (``name.exists()``) picks no one."""
    resolver = _Resolver(str(view.get("resource", "")))
    picker = _Picker(resolver)
    for where in view.get("where", []) or []:
        if isinstance(where, dict) and isinstance(where.get("path"), str):
            picker.path(where["path"], resolver.root(), True, f"where {where['path']}")
    computed: set[str] = set()
    picker.selects(view.get("select"), resolver.root(), computed)
    return ViewPicks(tuple(picker.found), frozenset(computed))
