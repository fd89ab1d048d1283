"""Unit conversions onto the contract's units.

Two paths, one module:
- tabular imports name their units in the mapping file (`UNIT_FACTORS`, exact factors);
- FHIR Quantities carry UCUM codes, or the display strings EHRs print instead ("K/uL",
  "mg/dl", "µmol/L"). Those go through a maintained UCUM implementation (ucumvert: a UCUM
  grammar and the UCUM unit table on top of pint), after one alias table maps the display
  strings seen in EHR exports onto UCUM codes. Factors are computed once per (unit, target)
  and cached: parsing costs about a millisecond, a cached look-up a dictionary access.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

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

# Contract unit -> UCUM code (the FHIR side converts through UCUM, never through names).
CONTRACT_UCUM: dict[str, str] = {
    "years": "a", "months": "mo", "weeks": "wk", "cm": "cm", "%": "%", "ng/mL": "ng/mL",
    "mg/dL": "mg/dL", "g/dL": "g/dL", "10^9/L": "10*9/L", "ratio": "1", "count": "1", "cycles": "1",
    "percentage points": "%", "%/week": "%/wk",
}

# Display strings EHRs send in Quantity.unit (often with no UCUM code) -> UCUM. Keys are
# compared after lower-casing and removing spaces, so "mg/dl", "MG/DL" and "mg / dL" are one entry.
# Only unambiguous spellings: "K/uL" is the US lab abbreviation for thousands per microlitre.
DISPLAY_ALIASES: dict[str, str] = {
    "k/ul": "10*3/uL", "k/µl": "10*3/uL", "k/μl": "10*3/uL", "x10e3/ul": "10*3/uL", "x10^3/ul": "10*3/uL",
    "10^3/ul": "10*3/uL", "10e3/ul": "10*3/uL", "thou/ul": "10*3/uL", "10*3/ul": "10*3/uL",
    "x10e9/l": "10*9/L", "x10^9/l": "10*9/L", "10^9/l": "10*9/L", "10e9/l": "10*9/L", "10*9/l": "10*9/L",
    "g/l(giga)": "10*9/L",
    "mg/dl": "mg/dL", "g/dl": "g/dL", "gm/dl": "g/dL", "g/l": "g/L", "mg/l": "mg/L",
    "µmol/l": "umol/L", "μmol/l": "umol/L", "umol/l": "umol/L", "mcmol/l": "umol/L", "mmol/l": "mmol/L",
    "ng/ml": "ng/mL", "µg/l": "ug/L", "μg/l": "ug/L", "ug/l": "ug/L", "mcg/l": "ug/L",
    "inr": "1", "{inr}": "1", "ratio": "1", "{ratio}": "1", "(ratio)": "1",
    "mm": "mm", "cm": "cm", "%": "%", "years": "a", "yr": "a", "weeks": "wk", "days": "d", "months": "mo",
}

_lock = threading.Lock()
_registry: Any = None


def _ureg() -> Any:
    """The UCUM registry, built once (about 0.4 s): lazily, so importing the mapper stays cheap."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                from ucumvert import PintUcumRegistry

                _registry = PintUcumRegistry()
    return _registry


def warm() -> None:
    """Build the registry and the common factors ahead of the first request."""
    for alias in set(DISPLAY_ALIASES.values()):
        for target in set(CONTRACT_UCUM.values()):
            _factor(alias, target, None)


def _parse(ucum: str) -> Any:
    """A UCUM code as a pint quantity; a code of annotations only ("{INR}", "{cells}") is 1."""
    stripped = ucum.strip()
    if stripped.startswith("{") and stripped.endswith("}") and stripped.count("{") == 1:
        stripped = "1"
    unit = _ureg().from_ucum(stripped)
    return unit if hasattr(unit, "to") else 1.0 * unit


def _clean(x: float) -> float:
    """Drop binary noise from chained factors (ug/L -> ng/mL is 1, not 0.9999999999999999)."""
    return float(f"{x:.12g}")


@lru_cache(maxsize=4096)
def _factor(source_ucum: str, target_ucum: str, molar_mass: float | None) -> float | None:
    """Multiply a value in `source_ucum` by this to get `target_ucum`; None when they do not
    convert (other dimension, not UCUM). Amount of substance converts to mass only with a molar mass."""
    try:
        src, dst = _parse(source_ucum), _parse(target_ucum)
    except Exception:  # noqa: BLE001 - any parse failure of a foreign string means "not understood"
        return None
    try:
        return _clean(float((1.0 * src).to(dst).magnitude))
    except Exception:  # noqa: BLE001 - pint raises DimensionalityError and friends
        pass
    if molar_mass:
        try:  # moles/volume -> mass/volume
            mass = (1.0 * src * molar_mass * _parse("g/mol")).to(dst)
            return _clean(float(mass.magnitude))
        except Exception:  # noqa: BLE001
            return None
    return None


def ucum_for(code: str | None, display: str | None, system_is_ucum: bool) -> str | None:
    """The UCUM code of a FHIR Quantity: its code when the system is UCUM, else the display
    string through the alias table, else the display tried as UCUM itself."""
    if code and system_is_ucum:
        return code
    for text in (code, display):
        if text:
            alias = DISPLAY_ALIASES.get("".join(text.split()).lower())
            if alias:
                return alias
    return code or display


def factor_to_contract(source_ucum: str, contract_unit: str, molar_mass: float | None = None) -> float | None:
    """Factor from a UCUM unit onto a contract unit; None when no conversion exists."""
    target = CONTRACT_UCUM.get(contract_unit)
    if target is None:
        return None
    f = _factor(source_ucum, target, molar_mass)
    if f is None and source_ucum != (alias := DISPLAY_ALIASES.get("".join(source_ucum.split()).lower(), source_ucum)):
        f = _factor(alias, target, molar_mass)
    return f


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert onto a contract unit; KeyError when no exact conversion is known."""
    return value * UNIT_FACTORS[(to_unit, from_unit)]
