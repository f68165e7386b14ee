# The two commands in README: `make run` (main job on the bundled sample) and `make test`.
# Only Python 3.11 is needed: uv is bootstrapped into .tools/, the project env lives in .venv/.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: setup run test test-fast lint bench screenshots clean-data help

help:
	@echo "make run    - set up .venv and run the full pipeline on the bundled sample (offline)"
	@echo "make test   - set up .venv, lint (ruff, mypy), and run the whole test suite"
	@echo "make test-fast - tests without the slow ones"
	@echo "make bench  - benchmarks (see bench/README.md); results go to bench/RESULTS.md by hand"
	@echo "make screenshots - headless-Chromium screenshots of the MLflow UI pages (needs chromium)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"

# hatch_build.py compiles the C scanner of `perfspec clean` into the editable install (needs a C compiler;
# without one it is skipped and clean uses its pure-Python path). Bytecode is compiled at install, as pip
# does (uv does not by default): otherwise a process that sets PYTHONDONTWRITEBYTECODE recompiles pyarrow,
# numpy, pydantic... at every start (~0.15 s for `perfspec clean`, and again for each of its workers).
.venv/.synced: $(UV) pyproject.toml uv.lock hatch_build.py $(wildcard perfspec/audit/_native/*)
	$(UV) sync --frozen --quiet --reinstall-package perfspec --compile-bytecode
	.venv/bin/python -m compileall -q perfspec tasks flows > /dev/null
	@touch $@

setup: .venv/.synced

run: setup
	.venv/bin/perfspec pipeline

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test: setup lint
	.venv/bin/pytest

test-fast: setup
	.venv/bin/pytest -m "not slow"

bench: setup
	.venv/bin/python -m bench

screenshots: setup
	.venv/bin/python scripts/screenshots.py --data-dir perfspec-data --out screenshots

clean-data:
	rm -rf perfspec-data
