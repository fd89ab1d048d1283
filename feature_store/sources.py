"""Where the contract's features are recorded: one source group per kind of record (a lab draw, a scan,
the tumour board's plan), dated by its own event, with how long a value stays current and why. One
feature view each in the feature store; the same TTLs for point-in-time training and serving."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceGroup:
    """A kind of record features come from, dated by its own event (a lab draw, a scan, an MDT
    plan): one feature view in the feature store. `ttl_days` is how long a value stays the
    patient's current value for a decision; older values are missing, never carried forward
    (None: it never goes stale)."""

    name: str
    title: str
    ttl_days: int | None
    ttl_reason: str


SOURCE_GROUPS: dict[str, SourceGroup] = {g.name: g for g in (
    SourceGroup(
        "clinical_record", "clinical and pathology record", 365,
        "facts about the primary tumour (side, nodes, timing of metastases) do not change, but age does and "
        "the record is re-reviewed at every tumour board: a record older than a year predates the current "
        "line of treatment and is not the one a PVE decision is taken on"),
    SourceGroup(
        "tumour_genotype", "molecular pathology report", None,
        "a tumour's RAS/BRAF genotype does not go stale: the test is done once (the FHIR mapping reads it "
        "whatever its age too)"),
    SourceGroup(
        "imaging", "imaging and volumetry", 60,
        "metastases grow or shrink under chemotherapy within weeks; PVE and resection are planned on "
        "restaging CT/MRI and volumetry from the last 4-8 weeks, so a scan older than 60 days is not today's "
        "tumour burden or liver remnant"),
    SourceGroup(
        "laboratory", "laboratory values", 30,
        "liver function, coagulation and CEA change with chemotherapy and disease; labs before an "
        "interventional procedure are expected within about 30 days (a CEA from two years ago is not "
        "today's CEA)"),
    SourceGroup(
        "treatment_plan", "treatment plan", 90,
        "the plan (chemotherapy cycles, bridging chemotherapy, embolic agent, interval to surgery) is set by "
        "the tumour board for this PVE; a plan older than 3 months belongs to an earlier decision"),
)}
