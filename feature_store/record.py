"""The pydantic model of one patient record, generated from the feature contract.

Error messages name the field, the problem and the allowed range or values; they
never repeat the submitted value (`hide_input_in_errors`), so logs stay clean.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Annotated, Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator, create_model
from pydantic_core import PydanticCustomError

from feature_store import contract as c


def _checker(f: c.Feature, required: bool = False) -> Callable[[Any, Any], Any]:
    allowed = f.range_text

    what = {c.Kind.NUMBER: "not a number", c.Kind.INTEGER: "not a whole number",
            c.Kind.BOOLEAN: "not a boolean", c.Kind.CATEGORY: "unknown category"}[f.kind]
    numeric = f.kind in (c.Kind.NUMBER, c.Kind.INTEGER)

    def check(value: Any, handler: Any) -> Any:
        if value is None:
            if required:  # an explicit null is as missing as an absent field, and refused alike
                raise PydanticCustomError("missing", "required value missing; allowed {allowed}", {"allowed": allowed})
            return None
        # The JSON types the schema documents, no coercion: `true` is not 1 metastasis, "yes" and 1
        # are not booleans (pydantic's lax mode would take all of them silently).
        if (numeric and (isinstance(value, bool) or not isinstance(value, numbers.Real))) or (
                f.kind is c.Kind.BOOLEAN and not isinstance(value, bool)) or (
                f.kind is c.Kind.CATEGORY and not isinstance(value, str)):
            raise PydanticCustomError(f"invalid_{f.kind.value}", "{what}; allowed {allowed}",
                                      {"what": what, "allowed": allowed})
        if numeric and not math.isfinite(value):
            raise PydanticCustomError("not_finite", "not a finite number; allowed {allowed}", {"allowed": allowed})
        try:
            out = handler(value)
        except ValidationError:
            raise PydanticCustomError(f"invalid_{f.kind.value}", "{what}; allowed {allowed}",
                                      {"what": what, "allowed": allowed}) from None
        if numeric and not (f.minimum <= out <= f.maximum):
            raise PydanticCustomError("out_of_range", "outside the allowed range {allowed}", {"allowed": allowed})
        return out

    return check


def plain_problem(kind: str, field: str | None) -> str | None:
    """The problem in the contract's words for the refusals pydantic words itself (a field absent, a field
    not in the contract, a body that is not an object); None for the ones `_checker` already worded."""
    f = c.BY_NAME.get(field or "")
    if kind == "missing":
        return f"required value missing; allowed {f.range_text}" if f else "required value missing"
    if kind == "extra_forbidden":
        if f is not None and f.timing is c.Timing.POST_PVE:
            return "known only after PVE: never an input of the pre-PVE model"
        return "unknown field: not an input of the feature contract (GET /v1/model lists the model's inputs)"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "the body must be a JSON object of one patient's inputs (field: value)"
    return None


def _annotation(f: c.Feature, required: bool, role: str) -> Any:
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
    extra["x-role"] = role
    # the allowed values as the API's own error messages word them: the calculator page repeats them
    extra["x-allowed"] = f.range_text
    if required and f.coarse:
        extra["x-required-or"] = list(f.derivation.sources)  # type: ignore[union-attr]
    unit = f" [{f.unit}]" if f.unit else ""
    needed = ("Required." if not f.coarse else f"Required, or give {', '.join(f.derivation.sources)} "  # type: ignore[union-attr]
              "from which it derives.") if required else "Optional."
    description = (f"{f.description}{unit}. Allowed: {f.range_text}. " + needed
                   + {"input": "", "not used": " Not used by the served model: accepted and listed in "
                      "`unused_inputs`."}.get(role, f" {role[:1].upper()}{role[1:]}."))
    field_required = required and not f.coarse
    field = Field(... if field_required else None, description=description, json_schema_extra=extra)
    typ = base if field_required else Optional[base]
    return Annotated[typ, WrapValidator(_checker(f, field_required)), field]


def input_roles(model_features: tuple[str, ...]) -> dict[str, str]:
    """Every pre-PVE contract feature's role for a model: an input, the fine source a coarse input
    is derived from, or not used."""
    roles: dict[str, str] = {}
    for f in c.features():
        if f.name in model_features:
            roles[f.name] = "input"
        else:
            targets = [g.name for g in c.coarse_forms(f.name) if g.name in model_features]
            roles[f.name] = f"used to derive {', '.join(targets)}" if targets else "not used"
    return roles


@lru_cache(maxsize=None)
def patient_model(model_features: tuple[str, ...] | None = None, required: tuple[str, ...] = (),
                  name: str = "PatientRecord") -> type[BaseModel]:
    """Pydantic model of one patient for a model with these features (default: every fine pre-PVE
    feature). The model's features come first; every other pre-PVE contract feature is accepted
    as optional (reported as unused); unknown fields are rejected."""
    used = tuple(model_features) if model_features is not None else tuple(c.fine_feature_names())
    roles = input_roles(used)
    order = sorted(c.features(), key=lambda f: roles[f.name] == "not used")
    # A required coarse input may come as its fine form: checked after derivation (serving), so
    # the field itself is optional and says so.
    fields = {f.name: _annotation(f, f.name in required, roles[f.name]) for f in order}
    example = c.example_record(used)
    config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        # singular "example": BentoML 1.4.40's /docs.json fails on the plural "examples"
        json_schema_extra={"example": example},
    )
    return create_model(name, __config__=config, __doc__="One patient at the PVE decision. Units are part of "
                        "the contract: see each field's description.", **fields)  # type: ignore[call-overload]


def _struct_type(f: c.Feature) -> Any:
    import msgspec

    # JSON types as the request model takes them (no coercion), within the contract's range; a whole
    # number may be written 3 or 3.0 (what a DataFrame's float column exports)
    if f.kind in (c.Kind.NUMBER, c.Kind.INTEGER):
        meta = msgspec.Meta(ge=f.minimum, le=f.maximum, **({"multiple_of": 1} if f.kind is c.Kind.INTEGER else {}))
        return Optional[Annotated[float, meta]]
    if f.kind is c.Kind.BOOLEAN:
        return Optional[bool]
    return Optional[Literal[tuple(f.categories)]] if f.categories else Optional[str]  # type: ignore[misc]


@lru_cache(maxsize=None)
def record_struct() -> type:
    """One patient as a msgspec Struct generated from the contract: every pre-PVE feature optional,
    typed and bounded as `patient_model` types and bounds it, no other field. For reading large
    batches without a dict per patient: msgspec refuses what is not plainly valid (the first problem
    only), and such a body is then read by the request model's path, whose messages name every
    problem. Absent and null both read as None. Not tracked by the garbage collector (scalars only)."""
    import msgspec

    fields = [(f.name, _struct_type(f), None) for f in c.features()]
    return msgspec.defstruct("PatientStruct", fields, forbid_unknown_fields=True, gc=False)
