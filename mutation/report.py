"""docs/MUTATION.md from mutation/results.json and the checked-in list of equivalent mutants."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Sequence

EQUIVALENT = Path(__file__).resolve().parent / "equivalent.toml"
GOAL = 0.90
# A timeout is a detection (the mutant made the tests hang), as in mutmut's and Stryker's scores.
DETECTED = ("killed", "timeout", "caught by type check")


def load_equivalents() -> dict[str, dict[str, str]]:
    """mutant id -> {reason, change}: `change` is the mutant's '+' line, so an entry whose id now names
    another mutation (mutmut numbers mutants in source order) no longer applies."""
    return tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}


def is_equivalent(mutant: str, changed: list[str], equivalents: dict[str, dict[str, str]]) -> bool:
    entry = equivalents.get(mutant)
    if not entry:
        return False
    plus = [ln[1:].strip() for ln in changed if ln.startswith("+")]
    return entry.get("change", "").strip() in plus


def score(m: dict[str, Any]) -> tuple[int, int, float | None]:
    """(detected, scored, detected / scored): scored = mutants less the equivalent ones."""
    detected = sum(m["counts"].get(s, 0) for s in DETECTED)
    scored = m["mutants"] - len(m["equivalent"])
    return detected, scored, (detected / scored if scored else None)


def _row(path: str, what: str, m: dict[str, Any] | None, generated: int) -> str:
    if m is None:
        return f"| `{path}` | {what} | {generated} | not run | | | | | | | | |"
    n = m["counts"]
    detected, scored, s = score(m)
    verdict = "—" if s is None else ("PASS" if s >= GOAL else "MISS")
    shown = "—" if s is None else f"{100 * s:.1f}%"
    return (f"| `{path}` | {what} | {m['mutants']} | {n.get('killed', 0)} | {n.get('survived', 0)} | "
            f"{n.get('timeout', 0)} | {n.get('no tests', 0)} | {len(m['equivalent'])} | {shown} | {verdict} | "
            f"{m['wall_s']:.0f} s | {m['run_at']} |")


def _estimate(results: dict[str, Any]) -> list[str]:
    runs = [m for m in results["modules"].values() if m["wall_s"] > 0]
    done, wall = sum(m["mutants"] for m in runs), sum(m["wall_s"] for m in runs)
    total = sum(results.get("generated", {}).values())
    if not done or not wall:
        return []
    hours = total * wall / done / 3600
    return [f"Measured here: {done} mutants in {wall / 60:.0f} min ({done / wall:.2f} mutants/s on 2 shared cores). "
            f"All {len(results.get('generated', {}))} modules have {total} mutants in the functions they score, "
            f"so a full run takes about {hours:.1f} h at that rate (modules with slower tests take longer).", ""]


def _survivor_lines(results: dict[str, Any], equivalents: dict[str, dict[str, str]]) -> list[str]:
    eq, open_ = [], []
    for path, m in sorted(results["modules"].items()):
        for k, changed in sorted(m["survivors"].items()):
            change = "; ".join(f"`{ln}`" for ln in changed if ln.strip("-+ ")) or "(whitespace)"
            if k in m["equivalent"]:
                eq.append(f"- `{k}`: {equivalents[k]['reason']} ({change})")
            else:
                open_.append(f"- `{k}`: {change}")
    out = ["## Equivalent mutants", "",
           "Listed with their reason in `mutation/equivalent.toml` (an entry applies only while its id still names "
           "the same change):", ""] + (eq or ["None."]) + [""]
    out += ["## Survivors not (yet) killed", "", "Each wants a test, or an entry in `mutation/equivalent.toml` with "
            "the reason it cannot change behaviour:", ""] + (open_ or ["None."]) + [""]
    return out


# Why mutmut and not cosmic-ray: measured side by side on 2 shared cores, one module, the same three test files.
WHY_MUTMUT = (
    "Why mutmut: measured side by side (2026-12-05, 2 shared cores) on `model_runtime/bands.py` with the same "
    "three test files. mutmut 3.8.1 made 146 mutants and ran them in 20 s, with 2 workers, forking, each mutant "
    "against only the tests that call its function. cosmic-ray 8.7.0 made 141 and needed 782 s (its local "
    "distributor runs a whole pytest process per mutant, one at a time): 39x slower, about 7 h for the 4,700 "
    "mutants listed here against 9 min for a full `make mutation`. Of cosmic-ray's 27 survivors, 22 were "
    "type annotations (`float | None` made `float + None`), equivalent under "
    "`from __future__ import annotations`, and one was mutmut's known equivalent. Four were changes mutmut does not make (module constants, a dataclass's "
    "`frozen=True`, a floor of 0.01 made negative). tests/unit/test_bands.py now kills those four.")


def render(results: dict[str, Any], targets: Sequence[Any], equivalents: dict[str, dict[str, str]]) -> str:
    generated = results.get("generated", {})
    # equivalence is decided now, from the list as it stands, so an entry added after a run counts on re-render
    mods = {path: {**m, "equivalent": sorted(k for k, ch in m["survivors"].items() if is_equivalent(k, ch, equivalents))}
            for path, m in results["modules"].items()}
    results = {**results, "modules": mods}
    lines = [
        "# Mutation testing", "",
        "Generated by `make mutation` (`mutation/run.py`; not part of `make test`). mutmut changes one operator, "
        "constant or call at a time in the modules that decide, and runs that module's fast tests "
        "(`mutation/modules.py`) against each change: a mutant the tests do not notice *survived*. "
        f"Goal: at least {GOAL:.0%} of the non-equivalent mutants of every module detected.", "",
        "Score = (killed + timeout) / (mutants - equivalent). *No tests*: no listed test calls the function "
        "(counted as not detected). mutmut mutates function bodies only: module-level constants, class bodies "
        "and functions under decorators other than `@staticmethod`/`@classmethod` (e.g. `@property`, "
        "`@contextmanager`) are not mutated. Where the module lists functions, only those are scored.", "",
        WHY_MUTMUT, "",
        "Run one module: `MUTATION_SELECT=bands make mutation`; resume an interrupted run: `MUTATION_KEEP=1`; "
        "re-render this page only: `MUTATION_RENDER=1`. Each row says when that module was last run.", "",
        "| module | decides | mutants | killed | survived | timeout | no tests | equivalent | score | ≥ 90% | "
        "wall time | run at |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        label = t.path + (f" ({', '.join(t.functions)})" if t.functions else "")
        lines.append(_row(label, t.what, mods.get(t.path), generated.get(t.path, 0)))
    versions = sorted({m["mutmut"] for m in mods.values()})
    passing = sum(1 for m in mods.values() if (s := score(m)[2]) is not None and s >= GOAL)
    lines += ["", f"mutmut {', '.join(versions) or '—'}; {len(mods)} of {len(targets)} modules run, {passing} of them "
              f"at the goal.", ""]
    lines += _estimate(results)
    lines += _survivor_lines(results, equivalents)
    return "\n".join(lines)
