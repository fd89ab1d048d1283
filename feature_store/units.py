"""Unit conversions onto the contract's units: one table for tabular imports and FHIR (UCUM)."""

from __future__ import annotations

# (contract unit, source unit) -> multiply by.  Only conversions that are exact.
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("cm", "mm"): 0.1,
    ("cm", "cm"): 1.0,
    ("%", "fraction"): 100.0,
    ("%", "%"): 1.0,
    ("ng/mL", "ug/L"): 1.0,
    ("ng/mL", "ng/mL"): 1.0,
    ("mg/dL", "umol/L"): 1 / 17.1,  # bilirubin: 1 mg/dL = 17.1 umol/L
    ("mg/dL", "mg/dL"): 1.0,
    ("g/dL", "g/L"): 0.1,
    ("g/dL", "g/dL"): 1.0,
    ("10^9/L", "10^3/uL"): 1.0,
    ("10^9/L", "10^9/L"): 1.0,
    ("weeks", "days"): 1 / 7,
    ("weeks", "weeks"): 1.0,
    ("months", "days"): 12 / 365.25,
    ("months", "months"): 1.0,
    ("years", "years"): 1.0,
    ("count", "count"): 1.0,
    ("cycles", "cycles"): 1.0,
    ("ratio", "ratio"): 1.0,
}

# UCUM codes (FHIR Quantity.code) -> the unit names of the table above.
UCUM_TO_UNIT = {
    "mg/dL": "mg/dL", "umol/L": "umol/L", "g/dL": "g/dL", "g/L": "g/L", "ng/mL": "ng/mL", "ug/L": "ug/L",
    "10*3/uL": "10^3/uL", "10*9/L": "10^9/L", "cm": "cm", "mm": "mm", "{INR}": "ratio", "1": "ratio",
    "{ratio}": "ratio", "a": "years", "%": "%", "wk": "weeks", "d": "days", "mo": "months", "{count}": "count",
    "{cycles}": "cycles",
}


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert onto a contract unit; KeyError when no exact conversion is known."""
    return value * UNIT_FACTORS[(to_unit, from_unit)]
