# The two set-up commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export UV_PYTHON ?= 3.11
# Compile bytecode at install: environments with PYTHONDONTWRITEBYTECODE otherwise
# recompile every import, which triples the service start-up time. UV_COMPILE_BYTECODE covers the
# installed packages; the project's own (an editable install) are compiled by COMPILE below.
export UV_COMPILE_BYTECODE := 1

# A uv already on PATH is used as it is. Otherwise uv is installed into a virtual environment of the
# checkout's own (.tools/, git-ignored), never into the system's or the user's site-packages: Debian's
# Python refuses `pip install --user` (PEP 668, externally-managed-environment). Its version is the one
# uv.lock pins for the project, so the bootstrap and the venv agree.
BOOT_UV := $(CURDIR)/.tools/uv-venv/bin/uv
UV := $(shell command -v uv 2>/dev/null || echo "$(BOOT_UV)")
UV_VERSION := $(shell awk '/^name = "uv"$$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' uv.lock)
RUN := $(UV) run --frozen --no-sync
COMPILE := $(RUN) python -m compileall -q -j0 feature_store model_runtime training serving ehr monitoring pverisk benchmarks

.PHONY: install install-dev install-federated demo test bench clean-stores audit mutation

# Flower (federated training) pins fastapi, starlette, protobuf, rich, typer and uvicorn to older releases
# than the serving stack uses, so it lives in an environment of its own (the `federated` extra, declared
# conflicting with `dev` in pyproject.toml): a hospital's site and the coordinator run from it, the
# service never sees it. The tests start Flower's processes from it.
FEDERATED_VENV := $(CURDIR)/.venv-federated

$(BOOT_UV):
	python3 -m venv $(CURDIR)/.tools/uv-venv
	$(CURDIR)/.tools/uv-venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

install: $(UV)
	$(UV) sync --frozen
	$(COMPILE)

install-dev: $(UV) install-federated
	$(UV) sync --frozen --extra dev
	$(COMPILE)

install-federated: $(UV)
	UV_PROJECT_ENVIRONMENT=$(FEDERATED_VENV) $(UV) sync --frozen --extra federated

demo: install
	$(RUN) pverisk demo

test: install-dev
	$(RUN) pytest

# Mutation testing of the modules that decide (mutation/modules.py), each against its own fast tests; writes
# docs/MUTATION.md. Not part of `test`: a full run takes hours. MUTATION_SELECT=<path substring>[,...] runs
# some modules, MUTATION_KEEP=1 resumes, MUTATION_RENDER=1 only re-renders the page (mutation/run.py).
mutation: install-dev
	$(RUN) python mutation/run.py

# Every benchmark writes build/bench/<name>.json (benchmarks/bench_common.py); one line each, the
# report last: it renders them all into BENCHMARKS.md.
bench: install-dev
	$(RUN) python -m benchmarks.bench_simulator
	$(RUN) python -m benchmarks.bench_training
	$(RUN) python -m benchmarks.bench_serving
	$(RUN) python -m benchmarks.bench_cds
	$(RUN) python -m benchmarks.bench_feast
	$(RUN) python -m benchmarks.bench_load --soak-minutes 10
	$(RUN) python -m benchmarks.bench_monitoring
	$(RUN) python -m benchmarks.bench_fuzz
	$(FEDERATED_VENV)/bin/python -m benchmarks.bench_federated
	$(RUN) python -m benchmarks.bench_report

# Known vulnerabilities in uv.lock (pip-audit; allowlist with reasons in security/). Says NOT AUDITED
# loudly when the vulnerability database cannot be reached.
audit: $(UV)
	UV=$(UV) bash security/pip-audit.sh

clean-stores:
	rm -rf mlflow/mlflow.db mlflow/artifacts data bentoml_home
