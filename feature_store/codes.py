"""Code systems and the codes the contract's features are defined with (LOINC, SNOMED CT, ICD-10), with what
they mean for the contract. Where each input lives in a standard chart (mCODE, US Core, genomics
reporting) is the mapping table in feature_store/standard_codes.py."""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HGNC = "http://www.genenames.org/geneId"  # as the genomics-reporting IG and mCODE write gene ids
AJCC = "http://cancerstaging.org"  # AJCC staging codes (mCODE STU2 examples; STU3 uses SNOMED CT)
# The project's own code system for inputs no standard code carries: code = contract feature name.
LOCAL_SYSTEM = "urn:pverisk:feature"


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
