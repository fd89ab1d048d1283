"""Where the contract's inputs live in a standard oncology chart: one table from HL7 mCODE (STU3/STU4),
US Core and the genomics-reporting IG to contract features. The FHIR mapping (ehr/), the CDS Hooks
prefetch templates and the coverage listing (GET /v1/model, `pverisk ehr-coverage`) all read it.

Every code here was checked against a published source (the mCODE IG's profiles, value sets and
examples, its TG263 concept map for body sites, LOINC, RxNorm ingredient concepts, HGNC); the source is
named beside it. Where no standard code exists the row says so and the input needs the project's local
code (LOCAL_SYSTEM, code = contract feature name)."""

from __future__ import annotations

from dataclasses import dataclass

from feature_store.codes import AJCC, HGNC, ICD10, ICD10CM, LOCAL_SYSTEM, LOINC, RXNORM, SNOMED

# --- profiles (canonical URLs) -----------------------------------------------------------------
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
PROFILES = {
    "us-core-patient": ("US Core Patient", US_CORE + "us-core-patient"),
    "us-core-lab": ("US Core Laboratory Result Observation", US_CORE + "us-core-observation-lab"),
    "us-core-service-request": ("US Core ServiceRequest", US_CORE + "us-core-servicerequest"),
    "primary": ("mCODE Primary Cancer Condition", MCODE + "mcode-primary-cancer-condition"),
    "secondary": ("mCODE Secondary Cancer Condition", MCODE + "mcode-secondary-cancer-condition"),
    "tnm-n": ("mCODE TNM Regional Nodes Category", MCODE + "mcode-tnm-regional-nodes-category"),
    "tumor": ("mCODE Tumor (BodyStructure)", MCODE + "mcode-tumor"),
    "tumor-size": ("mCODE Tumor Size", MCODE + "mcode-tumor-size"),
    "tumor-marker": ("mCODE Tumor Marker Test", MCODE + "mcode-tumor-marker-test"),
    "variant": ("mCODE Genomic Variant (genomics-reporting Variant)", MCODE + "mcode-genomic-variant"),
    "region": ("mCODE Genomic Region Studied", MCODE + "mcode-genomic-region-studied"),
    "med-admin": ("mCODE Cancer-Related Medication Administration",
                  MCODE + "mcode-cancer-related-medication-administration"),
    "med-request": ("mCODE Cancer-Related Medication Request", MCODE + "mcode-cancer-related-medication-request"),
    "local": ("Observation with the project's local code", LOCAL_SYSTEM),
}

# --- codes the mapping reads -------------------------------------------------------------------
# Body sites (SNOMED CT; mCODE's TG263 concept map, input/fsh/CM_TG263.fsh).
LIVER = "10200004"  # Liver structure
# Laterality qualifiers (mCODE LocationQualifierVS; TG263 map): a tumour's side of the liver.
LATERALITY = {"24028007": "right", "7771000": "left"}
# Primary tumour body site -> contract side. Checked in the TG263 map and a second published mapping of
# ICD-O C18.x sites; the splenic flexure and the rectosigmoid junction are left out (sources disagree).
COLON_SITE_SIDE = {
    "32713005": "right_colon",  # Cecum structure (C18.0)
    "9040008": "right_colon",  # Ascending colon structure (C18.2)
    "48338005": "right_colon",  # Structure of right colic (hepatic) flexure (C18.3)
    "485005": "right_colon",  # Transverse colon structure (C18.4)
    "32622004": "left_colon",  # Descending colon structure (C18.6)
    "60184004": "left_colon",  # Sigmoid colon structure (C18.7)
    "34402009": "rectum",  # Rectum structure (C20)
}
# Applicability: secondary malignant neoplasm of liver.
LIVER_METASTASIS = ((SNOMED, "94381002"), (ICD10, "C78.7"), (ICD10CM, "C78.7"))
# TNM regional nodes (N) category: the observation codes (mCODE TNMRegionalNodesStagingTypeVS and its
# maximum value set with the LOINC codes STU2 used) and the values (SNOMED CT AJCC N categories, as in
# mCODE's STU3 examples and the AJCC N value sets published with them).
N_CATEGORY_CODES = ((SNOMED, "399534004"), (SNOMED, "371494008"), (SNOMED, "277206009"),
                    (LOINC, "21906-3"), (LOINC, "21900-6"), (LOINC, "21912-1"))
PATHOLOGICAL_N = {(SNOMED, "371494008"), (LOINC, "21900-6")}
N_VALUES: dict[str, bool | None] = {
    "1229966003": None, "1229945006": None,  # cNX, pNX: cannot be assessed
    "1229967007": False, "1229947003": False, "1229948008": False,  # cN0, pN0, pN0a
    "1229949000": False, "1229950000": False,  # pN0(i+), pN0(mol+): isolated tumour cells only
    **{code: True for code in (
        "1229973008", "1229975001", "1229976000", "1229978004", "1229981009", "1229984001",  # cN1 cN1a cN1b cN2 cN2a cN3
        "1229951001", "1229952008", "1229953003", "1229954009", "1229955005", "1229956006",  # pN1 pN1mi pN1a(sn) pN1a-c
        "1229957002", "1229958007", "1229959004", "1229960009", "1229961008",  # pN2 pN2mi pN2a-c
        "1229962001", "1229963006", "1229964000", "1229965004")},  # pN3 pN3a-c
}
# Tumour size (mCODE Tumor Size: LOINC 21889-1 with its dimension components).
TUMOR_SIZE = (LOINC, "21889-1")
LONGEST_DIMENSION = (LOINC, "33728-7")
# Genomics (genomics-reporting Variant / Region Studied as mCODE profiles them; HGNC gene ids).
VARIANT = (LOINC, "69548-6")  # Genetic variant assessment
REGION_STUDIED = (LOINC, "53041-0")  # DNA region of interest panel
GENE_STUDIED = (LOINC, "48018-6")
AMINO_ACID_CHANGE = (LOINC, "48005-3")  # pHGVS
DNA_CHANGE = (LOINC, "48004-6")  # cHGVS
GENOMIC_DNA_CHANGE = (LOINC, "81290-9")  # gHGVS
VARIANT_PRESENT = (LOINC, "LA9633-4")
VARIANT_ABSENT = (LOINC, "LA9634-2")
GENES = {"HGNC:6407": "KRAS", "HGNC:7989": "NRAS", "HGNC:1097": "BRAF"}
BRAF_V600E = ("p.Val600Glu", "p.V600E", "c.1799T>A")
# Cancer medications: RxNorm ingredient concepts (RxNav). Clinical-drug codes ("oxaliplatin 5 MG/ML
# Injectable Solution") name their ingredient: those are matched by the ingredient's name instead.
CHEMOTHERAPY = {"32592": "oxaliplatin", "51499": "irinotecan", "4492": "fluorouracil", "194000": "capecitabine"}
BEVACIZUMAB = {"253337": "bevacizumab"}
# Portal vein embolization: no single SNOMED CT concept (domain brief): transcatheter embolization with
# the portal vein as its site.
EMBOLIZATION = (SNOMED, "16736007")
PORTAL_VEIN = "32764006"
# The planned hepatectomy: a planned surgical procedure (ServiceRequest.category, FHIR's example value set)
# on the liver (bodySite). No verified list of SNOMED CT hepatectomy concepts is kept here, so the
# procedure is recognised by its category and site, whatever its code.
SURGICAL_PROCEDURE = (SNOMED, "387713003")


@dataclass(frozen=True)
class Row:
    """Where one or more contract inputs live in a standard chart."""

    features: tuple[str, ...]
    profile: str  # key of PROFILES
    resource: str  # FHIR resource type read
    reads: str  # the element and codes read, as an integrator would look for them
    rule: str  # how the input is derived
    short: str = ""  # the codes in a few words (the card's "would take")

    @property
    def profile_title(self) -> str:
        return PROFILES[self.profile][0]

    @property
    def profile_url(self) -> str:
        return PROFILES[self.profile][1]

    def as_dict(self) -> dict[str, object]:
        return {"profile": self.profile_title, "profile_url": self.profile_url, "resource": self.resource,
                "reads": self.reads, "rule": self.rule}

    @property
    def hint(self) -> str:
        return f"{self.profile_title}" + (f" ({self.short})" if self.short else "")


ROWS: tuple[Row, ...] = (
    Row(("age_years", "sex"), "us-core-patient", "Patient", "birthDate, gender, deceased[x]",
        "age at the decision date from birthDate (completed years); administrative gender",
        short="birthDate, gender"),
    Row(("primary_side",), "primary", "Condition",
        "code ICD-10(-CM) C18.x/C19/C20 or SNOMED CT; bodySite SNOMED CT colon segment",
        "C18.0-C18.4 (caecum to transverse) right, C18.5-C18.7 and C19 left, C20 rectum; or the bodySite",
        short="ICD-10 C18-C20 or bodySite"),
    Row(("synchronous_metastases", "disease_free_interval_months"), "secondary", "Condition",
        "onsetDateTime of the primary and of the liver-metastasis Conditions",
        "synchronous when the liver metastases appear within 3 months of the primary (interval 0); "
        "otherwise the interval in months",
        short="onset dates"),
    Row(("node_positive_primary",), "tnm-n", "Observation",
        "code SNOMED CT 371494008 (pN) / 399534004 (cN) / 277206009, or LOINC 21900-6 / 21906-3; value AJCC N "
        "category (SNOMED CT 1229xxxxxx or cancerstaging.org)",
        "pathological N when staged, else clinical: N0 negative, N1-N3 positive, NX not known; a fact of the "
        "primary, read whatever its age (as the primary Condition)",
        short="pN / cN category"),
    Row(("n_liver_metastases", "largest_metastasis_cm", "bilobar_disease"), "tumor", "BodyStructure",
        "one BodyStructure per tumour, location SNOMED CT 10200004 (liver), locationQualifier 24028007 right / "
        "7771000 left",
        "active liver tumours counted; bilobar when tumours sit in both the right and the left liver",
        short="location liver, right/left qualifier"),
    Row(("largest_metastasis_cm", "n_liver_metastases"), "tumor-size", "Observation",
        "code LOINC 21889-1, focus the Tumor, component LOINC 33728-7 (longest dimension, mm or cm)",
        "largest of the tumours' latest longest dimensions; the imaging date dates the count and the size",
        short="LOINC 21889-1 with 33728-7"),
    Row(("cea_ng_ml",), "tumor-marker", "Observation", "code LOINC 2039-6 or 83085-1, valueQuantity",
        "latest value; ng/mL (ug/L is the same number)",
        short="LOINC 2039-6"),
    Row(("bilirubin_mg_dl", "albumin_g_dl", "inr", "platelets_10e9_l"), "us-core-lab", "Observation",
        "code LOINC 1975-2 / 14631-6, 1751-7, 6301-6, 777-3 / 26515-7 (also as panel components)",
        "latest value converted through UCUM onto the contract unit",
        short="LOINC 1975-2, 1751-7, 6301-6, 777-3"),
    Row(("ras_status", "braf_v600e"), "variant", "Observation",
        "code LOINC 69548-6, component 48018-6 gene studied HGNC:6407 KRAS / HGNC:7989 NRAS / HGNC:1097 BRAF, "
        "value LA9633-4 present / LA9634-2 absent, component 48005-3 amino acid change (p.Val600Glu)",
        "RAS mutant when a KRAS or NRAS variant is present; BRAF V600E mutant for p.Val600Glu (c.1799T>A)",
        short="LOINC 69548-6, HGNC gene"),
    Row(("ras_status", "braf_v600e"), "region", "Observation",
        "code LOINC 53041-0, component 48018-6 gene studied (HGNC)",
        "a gene studied with no variant reported in it: wild type (KRAS studied for RAS; BRAF for V600E)",
        short="LOINC 53041-0"),
    Row(("chemo_cycles_pre_pve", "bevacizumab_pre_pve"), "med-admin", "MedicationAdministration",
        "medication RxNorm ingredient 32592 oxaliplatin, 51499 irinotecan, 4492 fluorouracil, 194000 "
        "capecitabine, 253337 bevacizumab (or a clinical drug naming one), effective[x]",
        "cycles: treatment days before the decision, a new cycle after a gap of more than 5 days; bevacizumab: "
        "any administration before the decision (no when chemotherapy is recorded without it)",
        short="RxNorm"),
    Row(("bridging_chemo_planned", "chemo_cycles_pre_pve"), "med-request", "MedicationRequest",
        "medication as above, status active / draft / on-hold, authoredOn, dosageInstruction.timing bounds",
        "bridging planned when a chemotherapy request starts after the decision; requests give the cycles "
        "when no administration is recorded",
        short="RxNorm, planned start"),
    Row(("planned_interval_weeks",), "us-core-service-request", "ServiceRequest",
        "PVE: code SNOMED CT 16736007 with bodySite 32764006 (portal vein); hepatectomy: category SNOMED CT "
        "387713003 (surgical procedure) with bodySite 10200004 (liver); occurrence[x]",
        "weeks from the planned (or done) PVE to the planned hepatectomy",
        short="PVE and hepatectomy dates"),
)

# Inputs no standard profile carries, and why (the local code is the way in).
NO_STANDARD = {
    "sflr_percent": "no LOINC or SNOMED CT code exists for the standardized future liver remnant (FLR volume as "
                    "a share of the standardized total liver volume); volumetry reports it as a number, so an "
                    f"Observation coded {LOCAL_SYSTEM}|sflr_percent with valueQuantity in % carries it",
    "chemo_response": "mCODE's Cancer Disease Status is the clinician's overall judgement, not the best RECIST 1.1 "
                      "response to chemotherapy before PVE; no standard code carries the latter",
    "embolic_agent": "the agent planned for PVE is not coded in the PVE order in any profile",
    "extrahepatic_disease": "a secondary cancer condition elsewhere shows extrahepatic disease, but no profile states "
                            "its absence: read from charts, the input could only ever be true, which would bias "
                            "the model",
}


# Inputs read only from the Patient and the problem list (never from a local-coded Observation).
FROM_PATIENT_AND_CONDITIONS = frozenset({"age_years", "sex", "primary_side"})


def rows_for(name: str) -> list[Row]:
    return [r for r in ROWS if name in r.features]


def local_code(name: str) -> str | None:
    return None if name in FROM_PATIENT_AND_CONDITIONS else f"{LOCAL_SYSTEM}|{name}"


__all__ = ["AJCC", "HGNC", "RXNORM", "ROWS", "Row", "rows_for", "local_code", "NO_STANDARD", "PROFILES"]
