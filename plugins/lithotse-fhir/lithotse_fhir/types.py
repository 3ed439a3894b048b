"""FHIR R4 resource types, which date each one is filtered by, and how servers search that date.

Kept as plain tables so the rules are easy to read and to document: a stream's ``date``
column comes from the first present path of ``DATES[type].primary``; each alternative
becomes its own date column. Types in ``NO_DATE`` describe people, places and definitions
rather than events, so a date range must not drop them; any other type falls back to
``meta.lastUpdated``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

R4_TYPES: frozenset[str] = frozenset("""
Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice
Library Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner
PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject
RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen
SpecimenDefinition StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid
SubstancePolymer SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial
SubstanceSpecification SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport
TestScript ValueSet VerificationResult VisionPrescription
""".split())

TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")


@dataclass(frozen=True)
class DateSpec:
    """Where a type's clinical date lives: primary paths (first present wins) and alternatives."""

    primary: tuple[str, ...] = ()
    search: str | None = None
    alternatives: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _spec(primary: str, search: str | None = None, **alternatives: str) -> DateSpec:
    return DateSpec(tuple(primary.split()), search,
                    {name: tuple(paths.split()) for name, paths in alternatives.items()})


_EFFECTIVE = "effectiveDateTime effectivePeriod.start effectiveInstant"

DATES: dict[str, DateSpec] = {
    "Encounter": _spec("period.start", "date", period_end="period.end"),
    "Observation": _spec(_EFFECTIVE, "date", issued_date="issued"),
    "Condition": _spec("onsetDateTime onsetPeriod.start recordedDate", "onset-date",
                       onset_date="onsetDateTime onsetPeriod.start", recorded_date="recordedDate",
                       abatement_date="abatementDateTime abatementPeriod.start"),
    "Procedure": _spec("performedDateTime performedPeriod.start", "date",
                       performed_end="performedPeriod.end"),
    "MedicationRequest": _spec("authoredOn", "authoredon"),
    "MedicationAdministration": _spec("effectiveDateTime effectivePeriod.start", "effective-time"),
    "MedicationDispense": _spec("whenHandedOver whenPrepared", "whenhandedover",
                                prepared_date="whenPrepared"),
    "MedicationStatement": _spec("effectiveDateTime effectivePeriod.start dateAsserted", "effective",
                                 asserted_date="dateAsserted"),
    "Immunization": _spec("occurrenceDateTime recorded", "date", recorded_date="recorded"),
    "DiagnosticReport": _spec(f"{_EFFECTIVE} issued", "date", issued_date="issued"),
    "AllergyIntolerance": _spec("recordedDate onsetDateTime onsetPeriod.start", "date",
                                onset_date="onsetDateTime onsetPeriod.start"),
    "Claim": _spec("created", "created", billable_start="billablePeriod.start"),
    "ClaimResponse": _spec("created", "created"),
    "ExplanationOfBenefit": _spec("created", "created", billable_start="billablePeriod.start"),
    "CarePlan": _spec("period.start created", "date", created_date="created"),
    "CareTeam": _spec("period.start", "date"),
    "DocumentReference": _spec("date context.period.start", "date",
                               context_start="context.period.start"),
    "Composition": _spec("date", "date"),
    "ImagingStudy": _spec("started", "started"),
    "ServiceRequest": _spec("authoredOn", "authored",
                            occurrence_date="occurrenceDateTime occurrencePeriod.start"),
    "DeviceRequest": _spec("authoredOn", "authored-on"),
    "Goal": _spec("startDate", "start-date"),
    "Appointment": _spec("start", "date"),
    "QuestionnaireResponse": _spec("authored", "authored"),
    "Coverage": _spec("period.start"),
    "EpisodeOfCare": _spec("period.start", "date"),
    "Provenance": _spec("recorded", "recorded"),
    "Communication": _spec("sent", "sent"),
    "NutritionOrder": _spec("dateTime", "datetime"),
    "RiskAssessment": _spec("occurrenceDateTime occurrencePeriod.start", "date"),
    "ClinicalImpression": _spec("effectiveDateTime effectivePeriod.start date", "date"),
    "FamilyMemberHistory": _spec("date", "date"),
    "Media": _spec("createdDateTime createdPeriod.start", "created"),
    "Specimen": _spec("collection.collectedDateTime collection.collectedPeriod.start receivedTime",
                      "collected"),
    "SupplyDelivery": _spec("occurrenceDateTime occurrencePeriod.start"),
    "Flag": _spec("period.start", "date"),
    "AdverseEvent": _spec("date", "date"),
    "Consent": _spec("dateTime", "date"),
    "Invoice": _spec("date", "date"),
    "PaymentReconciliation": _spec("created", "created"),
    "DetectedIssue": _spec("identifiedDateTime identifiedPeriod.start", "identified"),
    "AuditEvent": _spec("recorded", "date"),
    "Task": _spec("authoredOn", "authored-on"),
}

NO_DATE: dict[str, DateSpec] = {
    "Patient": _spec("", birth_date="birthDate", deceased_date="deceasedDateTime"),
    **{name: DateSpec() for name in """
        Practitioner PractitionerRole Organization OrganizationAffiliation Location Device
        DeviceDefinition Medication MedicationKnowledge Substance HealthcareService Endpoint Group
        Person RelatedPerson InsurancePlan Questionnaire CodeSystem ValueSet ConceptMap NamingSystem
        StructureDefinition StructureMap SearchParameter OperationDefinition CapabilityStatement
        ImplementationGuide Library Measure PlanDefinition ActivityDefinition
        """.split()},
}


PATIENT_REFERENCE = ("subject", "patient")
"""Where most resource types name the patient they are about: the first present wins."""

PATIENT_REFERENCES: dict[str, tuple[str, ...]] = {
    "Coverage": ("beneficiary",),
    "Task": ("for",),
    "Claim": ("patient",),
    "ClaimResponse": ("patient",),
    "ExplanationOfBenefit": ("patient",),
    **{name: () for name in """
        Practitioner PractitionerRole Organization OrganizationAffiliation Location Device
        DeviceDefinition Medication MedicationKnowledge Substance HealthcareService Endpoint Group
        Person InsurancePlan Questionnaire CodeSystem ValueSet ConceptMap NamingSystem
        StructureDefinition StructureMap SearchParameter OperationDefinition CapabilityStatement
        ImplementationGuide Library Measure PlanDefinition ActivityDefinition Bundle Binary
        Appointment Schedule Slot Account
        """.split()},
}
"""Types whose patient is elsewhere, or that are about no patient (an empty tuple)."""


def patient_references(resource_type: str) -> tuple[str, ...]:
    """The Reference elements naming a resource's patient, first present wins (none for Patient,
    which is its own person, and for types about no patient)."""
    if resource_type == "Patient":
        return ()
    return PATIENT_REFERENCES.get(resource_type, PATIENT_REFERENCE)


def has_person(resource_type: str) -> bool:
    """Whether a type's ``patient_id`` column can hold a patient: Patient itself or a type
    with a patient reference."""
    return resource_type == "Patient" or bool(patient_references(resource_type))


def date_spec(resource_type: str) -> DateSpec:
    """The date rule of a type; types without one get no primary date (see ``date_field``)."""
    return DATES.get(resource_type) or NO_DATE.get(resource_type) or DateSpec()


def date_field(resource_type: str) -> str | None:
    """Name of the column a date range filters on for this type."""
    if resource_type in DATES:
        return "date"
    if resource_type in NO_DATE:
        return None
    return "lastUpdated"


def date_columns(resource_type: str) -> list[tuple[str, tuple[str, ...]]]:
    """(column, paths) for every date32 column of a type, the primary ``date`` first."""
    spec = date_spec(resource_type)
    return [("date", spec.primary), *spec.alternatives.items()]


def parse_type_list(text: str | None, what: str = "resource_types") -> list[str]:
    """A comma or space separated list of resource type names, checked against R4."""
    from lithotse_desktop.plugin import ConfigError

    names = [part.strip() for part in re.split(r"[,\s]+", text or "") if part.strip()]
    unknown = [name for name in names if name not in R4_TYPES]
    if unknown:
        raise ConfigError(f"setting {what}: {', '.join(unknown)} is not a FHIR R4 resource type")
    return list(dict.fromkeys(names))
