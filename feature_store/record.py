"""The pydantic model of one patient record, generated from the feature contract.

Error messages name the field, the problem and the allowed range or values; they
never repeat the submitted value (`hide_input_in_errors`), so logs stay clean.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator, create_model
from pydantic_core import PydanticCustomError

from feature_store import contract as c


def _checker(f: c.Feature) -> Callable[[Any, Any], Any]:
    allowed = f.range_text

    def check(value: Any, handler: Any) -> Any:
        if value is None:
            return None
        try:
            out = handler(value)
        except ValidationError:
            what = {c.Kind.NUMBER: "not a number", c.Kind.INTEGER: "not a whole number",
                    c.Kind.BOOLEAN: "not a boolean", c.Kind.CATEGORY: "unknown category"}[f.kind]
            raise PydanticCustomError(f"invalid_{f.kind.value}", "{what}; allowed {allowed}",
                                      {"what": what, "allowed": allowed}) from None
        if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER) and not (f.minimum <= out <= f.maximum):
            raise PydanticCustomError("out_of_range", "outside the allowed range {allowed}", {"allowed": allowed})
        return out

    return check


def _annotation(f: c.Feature) -> Any:
    base: Any = {
        c.Kind.NUMBER: float,
        c.Kind.INTEGER: int,
        c.Kind.BOOLEAN: bool,
        c.Kind.CATEGORY: Literal[tuple(f.categories)] if f.categories else str,  # type: ignore[misc]
    }[f.kind]
    extra: dict[str, Any] = {"x-timing": f.timing.value}
    if f.unit:
        extra["x-unit"] = f.unit
    if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER):
        extra.update(minimum=f.minimum, maximum=f.maximum)
    if f.codes:
        extra["x-codes"] = [f"{x.system}|{x.code}" for x in f.codes]
    unit = f" [{f.unit}]" if f.unit else ""
    description = f"{f.description}{unit}. Allowed: {f.range_text}." + ("" if f.required else " Optional.")
    field = Field(... if f.required else None, description=description, json_schema_extra=extra)
    typ = base if f.required else Optional[base]
    return Annotated[typ, WrapValidator(_checker(f)), field]


@lru_cache(maxsize=None)
def patient_model(timing: c.Timing = c.Timing.PRE_PVE, name: str = "PatientRecord") -> type[BaseModel]:
    """Pydantic model of one patient's pre-PVE inputs (unknown fields are rejected)."""
    fields = {f.name: _annotation(f) for f in c.features(timing)}
    example = c.example_record(timing)
    config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        # singular "example": BentoML 1.4.40's /docs.json fails on the plural "examples"
        json_schema_extra={"example": example},
    )
    return create_model(name, __config__=config, __doc__="One patient at the PVE decision. Units are part of "
                        "the contract: see each field's description.", **fields)  # type: ignore[call-overload]
