"""FHIR R4 element cardinalities and types for the commonly viewed resources and datatypes.

Why: without them every member access must check at run time whether the JSON holds an array or a
single item. For an element listed here the compiler knows the answer (0..1 or 0..*) and emits one
direct extraction instead. Only elements spelled out below are trusted; any other path (and any path
below an unknown element) keeps the generic checks. Values follow the R4 StructureDefinitions.

Each entry is "name:Type" for 0..1 / 1..1 and "name*:Type" for 0..* / 1..*; choice elements [x] are
listed by their JSON names (valueQuantity, effectiveDateTime, ...). Backbone elements are named
"Resource.element".
"""

from __future__ import annotations

_ELEMENT = "id:string extension*:Extension"
_BACKBONE = _ELEMENT + " modifierExtension*:Extension"
_RESOURCE = "id:id meta:Meta implicitRules:uri language:code text:Narrative contained*:Resource " \
            "extension*:Extension modifierExtension*:Extension"

_SPEC = {
    # Datatypes (every one also has Element's id and extension).
    "Reference": "reference:string type:uri identifier:Identifier display:string",
    "Coding": "system:uri version:string code:code display:string userSelected:boolean",
    "CodeableConcept": "coding*:Coding text:string",
    "Period": "start:dateTime end:dateTime",
    "Identifier": "use:code type:CodeableConcept system:uri value:string period:Period assigner:Reference",
    "HumanName": "use:code text:string family:string given*:string prefix*:string suffix*:string period:Period",
    "Address": "use:code type:code text:string line*:string city:string district:string state:string "
               "postalCode:string country:string period:Period",
    "ContactPoint": "system:code value:string use:code rank:positiveInt period:Period",
    "Quantity": "value:decimal comparator:code unit:string system:uri code:code",
    "Duration": "value:decimal comparator:code unit:string system:uri code:code",
    "Range": "low:Quantity high:Quantity",
    "Meta": "versionId:id lastUpdated:instant source:uri profile*:canonical security*:Coding tag*:Coding",
    "Narrative": "status:code div:xhtml",
    "Annotation": "authorReference:Reference authorString:string time:dateTime text:markdown",
    "Extension": "url:uri valueString:string valueCode:code valueBoolean:boolean valueInteger:integer "
                 "valueDecimal:decimal valueDateTime:dateTime valueDate:date valueUri:uri "
                 "valueCoding:Coding valueCodeableConcept:CodeableConcept valueReference:Reference "
                 "valueQuantity:Quantity valuePeriod:Period valueIdentifier:Identifier",
    # Resources (every one also has Resource/DomainResource's elements).
    "Patient": "identifier*:Identifier active:boolean name*:HumanName telecom*:ContactPoint gender:code "
               "birthDate:date deceasedBoolean:boolean deceasedDateTime:dateTime address*:Address "
               "maritalStatus:CodeableConcept multipleBirthBoolean:boolean multipleBirthInteger:integer "
               "contact*:Patient.contact communication*:Patient.communication "
               "generalPractitioner*:Reference managingOrganization:Reference link*:Patient.link",
    "Patient.contact": _BACKBONE + " relationship*:CodeableConcept name:HumanName telecom*:ContactPoint "
                       "address:Address gender:code organization:Reference period:Period",
    "Patient.communication": _BACKBONE + " language:CodeableConcept preferred:boolean",
    "Patient.link": _BACKBONE + " other:Reference type:code",
    "Encounter": "identifier*:Identifier status:code statusHistory*:Encounter.statusHistory class:Coding "
                 "classHistory*:Encounter.classHistory type*:CodeableConcept serviceType:CodeableConcept "
                 "priority:CodeableConcept subject:Reference episodeOfCare*:Reference basedOn*:Reference "
                 "participant*:Encounter.participant appointment*:Reference period:Period length:Duration "
                 "reasonCode*:CodeableConcept reasonReference*:Reference diagnosis*:Encounter.diagnosis "
                 "account*:Reference hospitalization:Encounter.hospitalization location*:Encounter.location "
                 "serviceProvider:Reference partOf:Reference",
    "Encounter.statusHistory": _BACKBONE + " status:code period:Period",
    "Encounter.classHistory": _BACKBONE + " class:Coding period:Period",
    "Encounter.participant": _BACKBONE + " type*:CodeableConcept period:Period individual:Reference",
    "Encounter.diagnosis": _BACKBONE + " condition:Reference use:CodeableConcept rank:positiveInt",
    "Encounter.hospitalization": _BACKBONE + " preAdmissionIdentifier:Identifier origin:Reference "
                                 "admitSource:CodeableConcept reAdmission:CodeableConcept "
                                 "dietPreference*:CodeableConcept specialCourtesy*:CodeableConcept "
                                 "specialArrangement*:CodeableConcept destination:Reference "
                                 "dischargeDisposition:CodeableConcept",
    "Encounter.location": _BACKBONE + " location:Reference status:code physicalType:CodeableConcept "
                          "period:Period",
    "Observation": "identifier*:Identifier basedOn*:Reference partOf*:Reference status:code "
                   "category*:CodeableConcept code:CodeableConcept subject:Reference focus*:Reference "
                   "encounter:Reference effectiveDateTime:dateTime effectivePeriod:Period "
                   "effectiveInstant:instant issued:instant performer*:Reference valueQuantity:Quantity "
                   "valueCodeableConcept:CodeableConcept valueString:string valueBoolean:boolean "
                   "valueInteger:integer valueRange:Range valueDateTime:dateTime valuePeriod:Period "
                   "dataAbsentReason:CodeableConcept interpretation*:CodeableConcept note*:Annotation "
                   "bodySite:CodeableConcept method:CodeableConcept specimen:Reference device:Reference "
                   "referenceRange*:Observation.referenceRange hasMember*:Reference derivedFrom*:Reference "
                   "component*:Observation.component",
    "Observation.referenceRange": _BACKBONE + " low:Quantity high:Quantity type:CodeableConcept "
                                  "appliesTo*:CodeableConcept age:Range text:string",
    "Observation.component": _BACKBONE + " code:CodeableConcept valueQuantity:Quantity "
                             "valueCodeableConcept:CodeableConcept valueString:string valueBoolean:boolean "
                             "valueInteger:integer valueRange:Range valueDateTime:dateTime valuePeriod:Period "
                             "dataAbsentReason:CodeableConcept interpretation*:CodeableConcept "
                             "referenceRange*:Observation.referenceRange",
    "Condition": "identifier*:Identifier clinicalStatus:CodeableConcept verificationStatus:CodeableConcept "
                 "category*:CodeableConcept severity:CodeableConcept code:CodeableConcept "
                 "bodySite*:CodeableConcept subject:Reference encounter:Reference onsetDateTime:dateTime "
                 "onsetPeriod:Period onsetString:string abatementDateTime:dateTime abatementPeriod:Period "
                 "abatementString:string recordedDate:dateTime recorder:Reference asserter:Reference "
                 "stage*:Condition.stage evidence*:Condition.evidence note*:Annotation",
    "Condition.stage": _BACKBONE + " summary:CodeableConcept assessment*:Reference type:CodeableConcept",
    "Condition.evidence": _BACKBONE + " code*:CodeableConcept detail*:Reference",
}

_RESOURCES = {"Patient", "Encounter", "Observation", "Condition"}


def _build() -> dict[str, dict[str, tuple[bool, str]]]:
    table: dict[str, dict[str, tuple[bool, str]]] = {}
    for type_name, spec in _SPEC.items():
        if type_name in _RESOURCES:
            spec = _RESOURCE + " " + spec
        elif "." not in type_name:
            spec = _ELEMENT + " " + spec
        elements: dict[str, tuple[bool, str]] = {}
        for entry in spec.split():
            name, element_type = entry.split(":")
            many = name.endswith("*")
            elements[name.rstrip("*")] = (many, element_type)
        table[type_name] = elements
    return table


ELEMENTS = _build()


def element(type_name: str | None, name: str) -> tuple[bool, str] | None:
    """(is 0..*, element type) of `type_name.name`, or None when the table does not know it."""
    if type_name is None:
        return None
    return ELEMENTS.get(type_name, {}).get(name)
