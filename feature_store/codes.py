"""Code systems and the standard codes the contract and the EHR mapping read: one place for each
code (LOINC, SNOMED CT, ICD-10), with what it means for the contract."""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str
    unit: str | None = None  # UCUM unit the coded value is reported in, for lab observations
    # g/mol of the analyte: converts moles/volume results (umol/L) onto a mass/volume contract unit.
    molar_mass: float | None = None
    # Coded answers of a qualitative test: ((system, code), contract category).
    answers: tuple[tuple[tuple[str, str], str], ...] = ()
    # A tumour genotype does not go stale like a lab value: read whatever its age.
    never_stale: bool = False


# Bilirubin (C33H36N4O6, 584.66 g/mol): the molar mass that gives the conventional factor labs and
# the tabular import use, 1 mg/dL = 17.1 umol/L (584.66 would give 17.104).
BILIRUBIN_G_MOL = 10_000 / 17.1
# Qualitative mutation results as labs code them (LOINC answer lists, SNOMED CT qualifiers).
MUTATION_ANSWERS: tuple[tuple[tuple[str, str], str], ...] = (
    ((LOINC, "LA9633-4"), "mutant"),  # Present
    ((LOINC, "LA9634-2"), "wild_type"),  # Absent
    ((LOINC, "LA6576-8"), "mutant"),  # Positive
    ((LOINC, "LA6577-6"), "wild_type"),  # Negative
    ((SNOMED, "260373001"), "mutant"),  # Detected
    ((SNOMED, "260415000"), "wild_type"),  # Not detected
    ((SNOMED, "10828004"), "mutant"),  # Positive
    ((SNOMED, "260385009"), "wild_type"),  # Negative
)

# Applicability: an active Condition with one of these codes makes a patient a candidate.
LIVER_METASTASIS_CODES: tuple[Code, ...] = (
    Code(SNOMED, "94381002", "Secondary malignant neoplasm of liver"),
    Code(ICD10, "C78.7", "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
    Code(ICD10CM, "C78.7", "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
)
# Primary site -> primary_side, for problem lists coded in SNOMED CT (ICD-10 C18-C20 are read by
# their structure: C18.0-C18.4 right, C18.5-C18.7 and C19 left, C20 rectum). Only codes checked
# against a published SNOMED CT expansion are listed; unspecified "colon" codes give no side.
PRIMARY_SITE_SNOMED: dict[str, str] = {
    "93683002": "right_colon",  # Primary malignant neoplasm of ascending colon
    "93826009": "right_colon",  # Primary malignant neoplasm of hepatic flexure of colon
    "93771007": "left_colon",  # Primary malignant neoplasm of descending colon
    "94006002": "left_colon",  # Primary malignant neoplasm of sigmoid colon
    "93980002": "left_colon",  # Primary malignant neoplasm of rectosigmoid junction
    "93984006": "rectum",  # Primary malignant neoplasm of rectum
}
PRIMARY_SITE_ICD10 = tuple(f"C18.{i}" for i in range(10)) + ("C19", "C20")
