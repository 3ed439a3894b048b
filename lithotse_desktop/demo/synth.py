"""A small synthetic health system for the demo, made from a seed: no network, no licences.

Northwind General (an invented hospital) over five whole years: a few thousand patients,
encounters by class (ambulatory, emergency, inpatient) and department, diagnoses, and lab
results with units, written in the three shapes Lithotse reads:

* ``csv/`` - the EHR's exports: ``encounters.csv`` and ``conditions.csv``, each with a
  ``patient_id`` column;
* ``fhir/`` - FHIR R4 NDJSON: ``Patient``, ``Encounter``, ``Condition`` and ``Observation``;
* ``hl7v2/`` - HL7 v2.5.1 files per year: ADT A01/A03 for emergency and inpatient stays, ORU R01
  lab results (PID-3 holds the patient id).

The numbers have a shape worth charting: visits grow about 6% a year, respiratory illness
and emergency visits peak in winter, fractures in summer, weekends are quiet for clinics.
Every count a demo derivative shows by month and department rests on well over 11 distinct
patients, so small-cell suppression (k=11, whether it counts records or people) leaves the
charts readable. The same seed gives byte-identical files on every machine; nothing depends
on today's date, the locale or hash ordering.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20_240_611
FIRST_DAY = dt.date(2020, 1, 1)
YEARS = 5
PATIENTS = 2_000
HOSPITAL = "NORTHWIND"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

CLASS_NAMES = {"AMB": "ambulatory", "EMER": "emergency", "IMP": "inpatient encounter"}
HL7_CLASS = {"AMB": "O", "EMER": "E", "IMP": "I"}


@dataclass(frozen=True)
class Department:
    name: str
    code: str
    share: float  # of all encounters, before season and age
    winter: float  # seasonal swing: +winter in January, -winter in July
    classes: tuple[tuple[str, float], ...]  # encounter class and its weight
    ages: tuple[int, int] = (0, 120)
    sex: str | None = None


DEPARTMENTS = (
    Department("Emergency", "ED", 0.22, 0.18, (("EMER", 1.0),)),
    Department("General medicine", "GEN", 0.24, 0.22, (("AMB", 0.88), ("IMP", 0.12))),
    Department("Cardiology", "CAR", 0.14, 0.08, (("AMB", 0.85), ("IMP", 0.15)), ages=(30, 120)),
    Department("Orthopaedics", "ORT", 0.12, -0.10, (("AMB", 0.8), ("IMP", 0.2))),
    Department("Paediatrics", "PAE", 0.12, 0.25, (("AMB", 0.9), ("IMP", 0.1)), ages=(0, 17)),
    Department("Obstetrics", "OBS", 0.08, 0.0, (("AMB", 0.65), ("IMP", 0.35)), ages=(16, 45), sex="female"),
    Department("Oncology", "ONC", 0.08, 0.0, (("AMB", 0.88), ("IMP", 0.12)), ages=(25, 120)),
)


@dataclass(frozen=True)
class Diagnosis:
    snomed: str
    icd10: str
    text: str
    departments: tuple[str, ...]
    winter: float = 0.0


DIAGNOSES = (
    Diagnosis("38341003", "I10", "Hypertension", ("GEN", "CAR")),
    Diagnosis("44054006", "E11.9", "Type 2 diabetes mellitus", ("GEN",)),
    Diagnosis("53741008", "I25.10", "Coronary arteriosclerosis", ("CAR",)),
    Diagnosis("195967001", "J45.909", "Asthma", ("GEN", "PAE", "ED"), winter=0.3),
    Diagnosis("6142004", "J11.1", "Influenza", ("GEN", "PAE", "ED"), winter=0.9),
    Diagnosis("10509002", "J20.9", "Acute bronchitis", ("GEN", "PAE", "ED"), winter=0.6),
    Diagnosis("65363002", "H66.90", "Otitis media", ("PAE",), winter=0.4),
    Diagnosis("65966004", "S52.90XA", "Fracture of forearm", ("ORT", "ED"), winter=-0.4),
    Diagnosis("239873007", "M17.9", "Osteoarthritis of knee", ("ORT",)),
    Diagnosis("68566005", "N39.0", "Urinary tract infection", ("GEN", "ED")),
    Diagnosis("72892002", "Z34.90", "Normal pregnancy", ("OBS",)),
    Diagnosis("254837009", "C50.919", "Malignant neoplasm of breast", ("ONC",)),
)


@dataclass(frozen=True)
class Test:
    loinc: str
    text: str
    unit: str
    mean: float
    sd: float
    low: float
    high: float
    decimals: int


PANELS: dict[str, tuple[str, tuple[Test, ...]]] = {
    "BMP": ("51990-0^Basic metabolic panel", (
        Test("2345-7", "Glucose", "mg/dL", 102, 22, 70, 99, 0),
        Test("2951-2", "Sodium", "mmol/L", 139, 3, 135, 145, 0),
        Test("2823-3", "Potassium", "mmol/L", 4.2, 0.45, 3.5, 5.1, 1),
        Test("2160-0", "Creatinine", "mg/dL", 0.95, 0.25, 0.6, 1.3, 2),
    )),
    "CBC": ("58410-2^Complete blood count", (
        Test("718-7", "Hemoglobin", "g/dL", 13.6, 1.5, 12.0, 17.5, 1),
        Test("6690-2", "Leukocytes", "10*3/uL", 7.4, 2.2, 4.0, 11.0, 1),
    )),
    "A1C": ("4548-4^Hemoglobin A1c", (
        Test("4548-4", "Hemoglobin A1c", "%", 6.6, 1.1, 4.0, 5.6, 1),
    )),
    "LIPID": ("57698-3^Lipid panel", (
        Test("2093-3", "Cholesterol", "mg/dL", 196, 34, 0, 199, 0),
    )),
}

GIVEN = {"female": ("Ada", "Beatrix", "Clara", "Dina", "Elif", "Freya", "Greta", "Hana", "Ines", "Jana",
                    "Kaia", "Lena", "Maja", "Nora", "Olga", "Pia", "Runa", "Sofia", "Tove", "Vera"),
         "male": ("Aron", "Bruno", "Cyril", "David", "Emil", "Felix", "Goran", "Hugo", "Ivan", "Jonas",
                  "Karl", "Leon", "Milan", "Noah", "Oskar", "Pavel", "Rafael", "Stefan", "Tomas", "Viktor")}
FAMILY = ("Abbott", "Berg", "Castillo", "Dahl", "Eriksen", "Fontaine", "Gallo", "Hartmann", "Ibsen",
          "Jovanovic", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn",
          "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Weber", "Yilmaz", "Zhang")


@dataclass
class Patient:
    number: int
    birth: dt.date
    sex: str
    given: str
    family: str

    @property
    def mrn(self) -> str:
        return f"P{self.number:06d}"

    @property
    def fhir_id(self) -> str:
        return f"pat-{self.number:06d}"

    def age_on(self, day: dt.date) -> int:
        return day.year - self.birth.year - ((day.month, day.day) < (self.birth.month, self.birth.day))


@dataclass
class Encounter:
    number: int
    patient: Patient
    department: Department
    klass: str
    start: dt.datetime
    end: dt.datetime
    diagnoses: list[Diagnosis] = field(default_factory=list)
    panels: list[str] = field(default_factory=list)

    @property
    def ident(self) -> str:
        return f"E{self.number:07d}"

    @property
    def stay_days(self) -> int:
        return (self.end.date() - self.start.date()).days


@dataclass
class Summary:
    """What was written: counts per kind, for the demo's first lines."""

    patients: int = 0
    encounters: int = 0
    conditions: int = 0
    lab_results: int = 0
    clinic_observations: int = 0
    adt_messages: int = 0
    oru_messages: int = 0
    files: list[str] = field(default_factory=list)


def generate(folder: Path, *, seed: int = SEED, patients: int = PATIENTS, first_day: dt.date = FIRST_DAY,
             years: int = YEARS) -> Summary:
    """Write the demo's source files under ``folder`` (``csv/``, ``fhir/``, ``hl7v2/``)."""
    rng = random.Random(seed)
    last_day = dt.date(first_day.year + years, first_day.month, first_day.day) - dt.timedelta(days=1)
    people = _patients(rng, patients, first_day)
    encounters = list(_encounters(rng, people, first_day, last_day))
    summary = Summary(patients=len(people), encounters=len(encounters))
    folder = Path(folder)
    for sub in ("csv", "fhir", "hl7v2"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    results = _results(rng, encounters)
    summary.conditions = _write_csv(folder / "csv", encounters)
    summary.lab_results = len(results)
    summary.clinic_observations = _write_fhir(folder / "fhir", people, encounters, results)
    summary.adt_messages, summary.oru_messages = _write_hl7(folder / "hl7v2", encounters, results, rng)
    summary.files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return summary


# --- people and events ---------------------------------------------------------------------------

def _patients(rng: random.Random, count: int, first_day: dt.date) -> list[Patient]:
    """Ages spread like a town's: many children and working-age adults, fewer of the very old."""
    ages = [(0, 17, 0.22), (18, 44, 0.34), (45, 64, 0.24), (65, 84, 0.16), (85, 98, 0.04)]
    people = []
    for number in range(1, count + 1):
        lo, hi, _w = rng.choices(ages, weights=[a[2] for a in ages])[0]
        age_days = rng.randint(lo * 365, hi * 365 + 364)
        sex = "female" if rng.random() < 0.51 else "male"
        people.append(Patient(number, first_day - dt.timedelta(days=age_days), sex,
                              rng.choice(GIVEN[sex]), rng.choice(FAMILY)))
    return people


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method in steps, so large means do not underflow)."""
    count, left = 0, mean
    product = 1.0
    while True:
        step = min(left, 30.0)
        left -= step
        threshold = math.exp(-step)
        while True:
            product *= rng.random()
            if product <= threshold:
                break
            count += 1
        product /= threshold
        if left <= 0:
            return count


def _encounters(rng: random.Random, people: list[Patient], first_day: dt.date,
                last_day: dt.date) -> Iterator[Encounter]:
    """Each day's visits per department: a Poisson count around a trend, a season and the weekday."""
    per_day = len(people) * 2.6 / 365.0  # two or three visits a patient a year at the start
    pools: dict[str, tuple[list[Patient], list[float]]] = {}
    number = itertools.count(1)
    for offset in range((last_day - first_day).days + 1):
        day = first_day + dt.timedelta(days=offset)
        years = offset / 365.25
        season = math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)
        weekend = day.weekday() >= 5
        for dept in DEPARTMENTS:
            mean = per_day * dept.share * (1.06 ** years) * (1 + dept.winter * season)
            if weekend and dept.code != "ED":
                mean *= 0.35
            for _ in range(_poisson(rng, mean)):
                patient = _pick_patient(rng, people, dept, day, pools)
                if patient is None:
                    continue
                yield _encounter(rng, next(number), patient, dept, day, season)


def _pick_patient(rng: random.Random, people: list[Patient], dept: Department, day: dt.date,
                  pools: dict[str, tuple[list[Patient], list[float]]]) -> Patient | None:
    """A patient the department sees, older people more often (the pool is rebuilt each year)."""
    key = f"{dept.code}-{day.year}"
    if key not in pools:
        members = [p for p in people if dept.ages[0] <= p.age_on(day) <= dept.ages[1]
                   and (dept.sex is None or p.sex == dept.sex)]
        weights = list(itertools.accumulate(1.0 + p.age_on(day) / 40.0 for p in members))
        pools[key] = (members, weights)
    members, cumulative = pools[key]
    if not members:
        return None
    return members[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]


def _encounter(rng: random.Random, number: int, patient: Patient, dept: Department, day: dt.date,
               season: float) -> Encounter:
    klass = rng.choices([c for c, _w in dept.classes], weights=[w for _c, w in dept.classes])[0]
    hour = rng.randint(0, 23) if klass == "EMER" else rng.randint(8, 16)
    start = dt.datetime.combine(day, dt.time(hour, rng.choice((0, 15, 30, 45))))
    if klass == "IMP":
        end = start + dt.timedelta(days=1 + min(int(rng.expovariate(1 / 3.0)), 20), hours=rng.randint(0, 6))
    else:
        end = start + dt.timedelta(minutes=rng.choice((20, 30, 45, 60, 90, 180, 240)))
    enc = Encounter(number, patient, dept, klass, start, end)
    choices = [d for d in DIAGNOSES if dept.code in d.departments]
    if choices and rng.random() < 0.55:
        weights = [max(0.05, 1 + d.winter * season) for d in choices]
        enc.diagnoses.append(rng.choices(choices, weights=weights)[0])
    if klass == "IMP":
        enc.panels += ["BMP", "CBC"] if rng.random() < 0.5 else ["BMP"]
    elif klass == "AMB" and rng.random() < 0.15:
        enc.panels.append(rng.choice(("A1C", "LIPID")))
    return enc


# --- CSV exports -------------------------------------------------------------------------------------

def _csv_line(values: Sequence[object]) -> str:
    out = []
    for value in values:
        text = "" if value is None else str(value)
        out.append(f'"{text}"' if any(c in text for c in ',"\n') else text)
    return ",".join(out)


def _write_csv(folder: Path, encounters: list[Encounter]) -> int:
    header = ["encounter_id", "patient_id", "admit_date", "discharge_date", "class", "department",
              "length_of_stay_days"]
    lines = [_csv_line(header)]
    conditions = [_csv_line(["condition_id", "patient_id", "encounter_id", "onset_date", "snomed_code",
                             "icd10_code", "description"])]
    for enc in encounters:
        lines.append(_csv_line([enc.ident, enc.patient.mrn, enc.start.date().isoformat(),
                                enc.end.date().isoformat(), enc.klass, enc.department.name, enc.stay_days]))
        for n, diag in enumerate(enc.diagnoses, 1):
            conditions.append(_csv_line([f"{enc.ident}-{n}", enc.patient.mrn, enc.ident,
                                         enc.start.date().isoformat(), diag.snomed, diag.icd10, diag.text]))
    (folder / "encounters.csv").write_text("\n".join(lines) + "\n", "utf-8")
    (folder / "conditions.csv").write_text("\n".join(conditions) + "\n", "utf-8")
    return len(conditions) - 1


# --- FHIR NDJSON ---------------------------------------------------------------------------------------

def _instant(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds") + "+00:00"


def _meta(moment: dt.datetime) -> dict:
    return {"versionId": "1", "lastUpdated": _instant(moment + dt.timedelta(hours=1))}


def _write_ndjson(path: Path, resources: Iterator[dict]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for resource in resources:
            out.write(json.dumps(resource, separators=(",", ":"), sort_keys=True) + "\n")
            count += 1
    return count


def _fhir_patient(p: Patient) -> dict:
    return {"resourceType": "Patient", "id": p.fhir_id,
            "meta": {"versionId": "1", "lastUpdated": "2019-12-31T00:00:00+00:00"},
            "identifier": [{"system": "urn:lithotse-demo:mrn", "value": p.mrn}],
            "name": [{"family": p.family, "given": [p.given]}], "gender": p.sex,
            "birthDate": p.birth.isoformat()}


def _fhir_encounter(enc: Encounter) -> dict:
    return {"resourceType": "Encounter", "id": f"enc-{enc.number:07d}", "meta": _meta(enc.end),
            "status": "finished",
            "class": {"system": ACT_CODE, "code": enc.klass, "display": CLASS_NAMES[enc.klass]},
            "serviceType": {"text": enc.department.name,
                            "coding": [{"system": "urn:lithotse-demo:department",
                                        "code": enc.department.code, "display": enc.department.name}]},
            "type": [{"text": f"{enc.department.name} {CLASS_NAMES[enc.klass]}"}],
            "subject": {"reference": f"Patient/{enc.patient.fhir_id}"},
            "period": {"start": _instant(enc.start), "end": _instant(enc.end)}}


def _fhir_condition(enc: Encounter, n: int, diag: Diagnosis) -> dict:
    return {"resourceType": "Condition", "id": f"cond-{enc.number:07d}-{n}", "meta": _meta(enc.start),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": diag.snomed, "display": diag.text},
                                {"system": ICD10, "code": diag.icd10, "display": diag.text}],
                     "text": diag.text},
            "subject": {"reference": f"Patient/{enc.patient.fhir_id}"},
            "encounter": {"reference": f"Encounter/enc-{enc.number:07d}"},
            "onsetDateTime": _instant(enc.start), "recordedDate": enc.start.date().isoformat()}


@dataclass(frozen=True)
class Result:
    encounter: Encounter
    panel: str
    test: Test
    value: float
    taken: dt.datetime

    @property
    def flag(self) -> str:
        return "H" if self.value > self.test.high else "L" if self.value < self.test.low else "N"

    @property
    def text_value(self) -> str:
        return f"{self.value:.{self.test.decimals}f}"


def _results(rng: random.Random, encounters: list[Encounter]) -> list[Result]:
    """Every test of every ordered panel, drawn once so FHIR and HL7 carry the same values."""
    out = []
    for enc in encounters:
        taken = enc.start + dt.timedelta(minutes=rng.randint(10, 90))
        for panel in enc.panels:
            for test in PANELS[panel][1]:
                value = max(test.mean / 4, rng.gauss(test.mean, test.sd))
                out.append(Result(enc, panel, test, round(value, test.decimals), taken))
    return out


def _fhir_observation(n: int, r: Result) -> dict:
    enc, test = r.encounter, r.test
    return {"resourceType": "Observation", "id": f"obs-{n:07d}", "meta": _meta(r.taken), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": test.loinc, "display": test.text}], "text": test.text},
            "subject": {"reference": f"Patient/{enc.patient.fhir_id}"},
            "encounter": {"reference": f"Encounter/enc-{enc.number:07d}"},
            "effectiveDateTime": _instant(r.taken),
            "valueQuantity": {"value": r.value, "unit": test.unit, "system": "http://unitsofmeasure.org",
                              "code": test.unit},
            "interpretation": [{"coding": [{"code": r.flag}]}]}


def _write_fhir(folder: Path, people: list[Patient], encounters: list[Encounter], results: list[Result]) -> int:
    """The clinic's FHIR server: everyone, every encounter and diagnosis, and the outpatient labs."""
    _write_ndjson(folder / "Patient.ndjson", (_fhir_patient(p) for p in people))
    _write_ndjson(folder / "Encounter.ndjson", (_fhir_encounter(e) for e in encounters))
    _write_ndjson(folder / "Condition.ndjson", (_fhir_condition(e, n, d) for e in encounters
                                                for n, d in enumerate(e.diagnoses, 1)))
    clinic = [r for r in results if r.encounter.klass == "AMB"]
    return _write_ndjson(folder / "Observation.ndjson", (_fhir_observation(n, r) for n, r in enumerate(clinic, 1)))


# --- HL7 v2 ------------------------------------------------------------------------------------------

def _ts(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M")


def _segment(name: str, fields: dict[int, str]) -> str:
    """A segment with each numbered field in its place (1-based, as HL7 counts them)."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([name, *values]).rstrip("|")


def _msh(moment: dt.datetime, kind: str, control: str, receiver: str) -> str:
    return (f"MSH|^~\\&|EHR|{HOSPITAL}|{receiver}|{HOSPITAL}|{moment.strftime('%Y%m%d%H%M%S')}||"
            f"{kind}|{control}|P|2.5.1")


def _pid(p: Patient) -> str:
    sex = "F" if p.sex == "female" else "M"
    return _segment("PID", {1: "1", 3: f"{p.mrn}^^^{HOSPITAL}^MR", 5: f"{p.family}^{p.given}",
                            7: p.birth.strftime("%Y%m%d"), 8: sex})


def _pv1(enc: Encounter, discharged: bool) -> str:
    fields = {1: "1", 2: HL7_CLASS[enc.klass], 3: f"{enc.department.code}^^^{HOSPITAL}",
              10: enc.department.code, 19: enc.ident, 44: _ts(enc.start)}
    if discharged:
        fields[45] = _ts(enc.end)
    return _segment("PV1", fields)


def _write_hl7(folder: Path, encounters: list[Encounter], results: list[Result],
               rng: random.Random) -> tuple[int, int]:
    """The hospital's interface engine, per year: ``adt-YYYY.hl7`` (A01 on admission, A03 on
    discharge of every inpatient stay) and ``oru-YYYY.hl7`` (one ORU per stay, an OBR per panel)."""
    adt: dict[int, list[str]] = {}
    oru: dict[int, list[str]] = {}
    adt_count = oru_count = 0
    for enc in encounters:
        if enc.klass != "IMP":
            continue
        for event, moment in (("A01", enc.start), ("A03", enc.end)):
            adt_count += 1
            message = [_msh(moment, f"ADT^{event}^ADT_{event}", f"ADT{adt_count:08d}", "ADT"),
                       _segment("EVN", {1: event, 2: _ts(moment)}), _pid(enc.patient), _pv1(enc, event == "A03")]
            adt.setdefault(moment.year, []).append("\r".join(message))
    by_stay: dict[int, list[Result]] = {}
    for r in results:
        if r.encounter.klass == "IMP":
            by_stay.setdefault(r.encounter.number, []).append(r)
    for ordered in by_stay.values():
        oru_count += 1
        first = ordered[0]
        enc = first.encounter
        reported = first.taken + dt.timedelta(minutes=rng.randint(30, 240))
        segments = [_msh(reported, "ORU^R01^ORU_R01", f"ORU{oru_count:08d}", "LAB"), _pid(enc.patient),
                    _pv1(enc, False)]
        panel = None
        for n, r in enumerate(ordered, 1):
            if r.panel != panel:
                panel = r.panel
                segments.append(_segment("OBR", {1: "1", 3: f"ORD{oru_count:08d}{panel}",
                                                 4: f"{PANELS[panel][0]}^LN", 7: _ts(r.taken)}))
            segments.append(_segment("OBX", {1: str(n), 2: "NM", 3: f"{r.test.loinc}^{r.test.text}^LN",
                                             5: r.text_value, 6: r.test.unit,
                                             7: f"{r.test.low:g}-{r.test.high:g}", 8: r.flag, 11: "F",
                                             14: _ts(r.taken)}))
        oru.setdefault(reported.year, []).append("\r".join(segments))
    for prefix, files in (("adt", adt), ("oru", oru)):
        for year, messages in sorted(files.items()):
            (folder / f"{prefix}-{year}.hl7").write_text("\r\n".join(messages) + "\r\n", "utf-8")
    return adt_count, oru_count
