"""Values as clinicians state them, from the contract: rounded to each feature's clinical precision and
written with its label and unit. One place for the FHIR mapping, the echoed inputs, the calculator
prefill and the CDS card."""

from __future__ import annotations

from typing import Any, Mapping

from feature_store import contract as c


def clinical_round(name: str, value: Any) -> Any:
    """A numeric value at its feature's clinical precision (an integer feature stays an integer); other
    values unchanged. Rounding removes conversion noise (0.99999999999927 -> 1.0), never a real digit."""
    f = c.BY_NAME.get(name)
    if f is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if f.kind is c.Kind.INTEGER or f.decimals == 0:  # 230 platelets, not 230.0
        return int(round(value))
    return round(float(value), f.decimals)


def clinical_record(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: clinical_round(k, v) for k, v in record.items()}


def unit_text(name: str) -> str:
    f = c.BY_NAME.get(name)
    if f is None or not f.unit:
        return ""
    return c.UNIT_TEXT.get(f.unit, f.unit)


def value_text(name: str, value: Any) -> str:
    """A value as a clinician reads it: "1.0 mg/dL", "19%", "yes", "right colon"."""
    if value is None:
        return "not known"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        f = c.BY_NAME.get(name)
        decimals = f.decimals if f else 2
        number = f"{value:.{decimals}f}" if not (f and f.kind is c.Kind.INTEGER) else f"{int(round(value))}"
        unit = unit_text(name)
        if unit == "%":
            return f"{number}%"
        return f"{number} {unit}" if unit else number
    return str(value).replace("_", " ")


def label(name: str) -> str:
    f = c.BY_NAME.get(name)
    return f.label if f and f.label else name.replace("_", " ")
