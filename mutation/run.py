"""`make mutation`: mutmut per listed module, each against only its own fast tests; writes docs/MUTATION.md.

mutmut keeps one configuration and one state per directory, while each module here has its own tests, so
every module gets a working directory of its own, mutants/<module>/ (git-ignored): a pyproject.toml with
the project's pytest settings plus a [tool.mutmut] section for that module, and a link to the module's
package. mutmut copies the package into mutants/<module>/mutants/ and runs pytest there; the other
packages are imported from the checkout (PYTHONPATH), unmutated.

Environment:
  MUTATION_SELECT=a,b  run only the modules whose path contains one of these substrings
  MUTATION_KEEP=1      resume: rerun only the mutants without a result yet (default: rerun them all)
  MUTATION_JOBS=n      mutmut worker processes (default 2)
  MUTATION_RENDER=1    only re-render docs/MUTATION.md from mutation/results.json
Results of modules not run this time are kept in mutation/results.json with the date they were run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from modules import TARGETS, Target
from report import is_equivalent, load_equivalents, render

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
RESULTS = ROOT / "mutation" / "results.json"
PAGE = ROOT / "docs" / "MUTATION.md"
OFFLINE = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# Added to every pytest call mutmut makes: no .pytest_cache writes into the copies, slow tests never.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-m", "not slow"]


def mutmut_config(t: Target) -> str:
    """The [tool.mutmut] section of a module's working directory (keys of mutmut 3.8's configuration.py)."""
    keys = {
        "source_paths": [t.path.split("/")[0]],
        "only_mutate": [t.path],
        "pytest_add_cli_args_test_selection": list(t.tests),
        "pytest_add_cli_args": PYTEST_ARGS,
        # A mutant is stopped after 2 x 15 x (its tests' time + 5 s) of CPU: mutmut times a test's call
        # only, so the constant covers fixture set-up (a session fixture is built again in every mutant).
        "timeout_multiplier": 15.0,
        "timeout_constant": 5.0,
    }
    return "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


def prepare(t: Target) -> Path:
    """The module's working directory, refreshed: links, config, and a fresh mutated copy if the source changed."""
    missing = [p for p in t.tests if not (ROOT / p.split("::")[0]).exists()]
    if missing:
        raise SystemExit(f"{t.path}: tests listed in mutation/modules.py do not exist: {missing}")
    work = WORK / t.slug
    work.mkdir(parents=True, exist_ok=True)
    for name in (t.path.split("/")[0], "tests"):
        link = work / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=True)
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + mutmut_config(t))
    # mutmut regenerates a mutated file only when the source's mtime is newer than the copy; a checkout or
    # a rebase can leave it older, so the source's hash decides and the stale copy is removed.
    digest = hashlib.sha256((ROOT / t.path).read_bytes()).hexdigest()
    stamp = work / "source.sha256"
    if not stamp.exists() or stamp.read_text() != digest:
        (work / "mutants" / t.path).unlink(missing_ok=True)
        stamp.write_text(digest)
    return work


@contextlib.contextmanager
def inside(work: Path) -> Iterator[None]:
    """mutmut's helpers read the configuration and files relative to the working directory."""
    import mutmut.configuration

    old = Path.cwd()
    os.chdir(work)
    mutmut.configuration.reset_config()
    try:
        yield
    finally:
        os.chdir(old)
        mutmut.configuration.reset_config()


def exit_codes(work: Path, t: Target) -> dict[str, int | None]:
    """mutmut's recorded result per mutant of the module (restricted to its deciding functions)."""
    meta = work / "mutants" / (t.path + ".meta")
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    globs = t.mutant_globs()
    return {k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, g) for g in globs)}


def run_mutmut(t: Target, work: Path, keep: bool) -> float:
    """Run mutmut on one module; the wall time in seconds."""
    names = t.mutant_globs()
    if keep:
        pending = [k for k, v in exit_codes(work, t).items() if v is None]
        if exit_codes(work, t) and not pending:
            return 0.0
        names = pending or names
    else:
        # A fresh run: test-to-function stats are collected again (cheap: the module's fast tests only).
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    # One thread per worker: two workers share two cores, and BLAS/OpenMP threads would only contend.
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT), "PVERISK_ROOT": str(ROOT), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    jobs = os.environ.get("MUTATION_JOBS", "2")
    log = work / "mutmut.log"
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", jobs, *names],
                            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - start
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"mutmut failed on {t.path} (exit {rc}); {log}:\n{tail}")
    return wall


def summarise(t: Target, work: Path, wall: float, equivalents: dict[str, str]) -> dict[str, Any]:
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    codes = exit_codes(work, t)
    statuses = {k: status_by_exit_code[v] for k, v in codes.items()}
    survivors = sorted(k for k, s in statuses.items() if s == "survived")
    with inside(work):
        diffs = {k: changed_lines(get_diff_for_mutant(k, path=Path(t.path))) for k in survivors}
    counts: dict[str, int] = {}
    for s in statuses.values():
        counts[s] = counts.get(s, 0) + 1
    return {"path": t.path, "what": t.what, "tests": list(t.tests), "functions": list(t.functions),
            "mutants": len(codes), "counts": counts, "survivors": diffs,
            "equivalent": sorted(k for k in survivors if is_equivalent(k, diffs[k], equivalents)),
            "wall_s": round(wall, 1), "run_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "mutmut": importlib.metadata.version("mutmut")}


def changed_lines(diff: str) -> list[str]:
    """The -/+ lines of a unified diff, without its file headers."""
    return [ln for ln in diff.splitlines() if ln[:1] in "-+" and not ln.startswith(("---", "+++"))]


def count_mutants(t: Target) -> int:
    """How many mutants a module would get (mutmut's generator only, no test run): for the estimate."""
    from mutmut.mutation.file_mutation import mutate_file_contents

    work = prepare(t)
    with inside(work):
        names = mutate_file_contents(t.path, (ROOT / t.path).read_text()).mutant_names
    prefix = t.module + "."
    return sum(any(fnmatch.fnmatch(prefix + n, g) for g in t.mutant_globs()) for n in names)


def selected() -> list[Target]:
    wanted = [s for s in os.environ.get("MUTATION_SELECT", "").split(",") if s.strip()]
    chosen = [t for t in TARGETS if not wanted or any(w.strip() in t.path for w in wanted)]
    if not chosen:
        raise SystemExit(f"MUTATION_SELECT={os.environ['MUTATION_SELECT']} matches no module of mutation/modules.py")
    return chosen


def main() -> None:
    if shutil.which("git") is None:
        print("note: git not found; mutmut's change detection is off")
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("modules", {})
    equivalents = load_equivalents()
    results["generated"] = {t.path: count_mutants(t) for t in TARGETS}
    if os.environ.get("MUTATION_RENDER") != "1":
        keep = os.environ.get("MUTATION_KEEP") == "1"
        for t in selected():
            print(f"mutation: {t.path} against {len(t.tests)} test file(s) ...", flush=True)
            work = prepare(t)
            wall = run_mutmut(t, work, keep)
            results["modules"][t.path] = summarise(t, work, wall, equivalents)
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            print(f"mutation: {t.path} done in {wall:.0f} s: {results['modules'][t.path]['counts']}", flush=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    PAGE.write_text(render(results, TARGETS, equivalents))
    print(f"mutation: wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
