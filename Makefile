# pmoflow: `make demo` and `make test` work on a fresh machine with Python 3.11 or newer.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint bench bench-workers bench-web clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pmoflow demo

# The web workspace on a demo database at http://127.0.0.1:8080, with the worker; prints the demo passwords.
serve: $(STAMP)
	$(BIN)/pmoflow demo --serve

# The suite runs in parallel (pytest-xdist), one worker per CPU; `make test TEST_WORKERS=0` runs it in one process,
# `make test TESTS=tests/engine` runs one area.
TEST_WORKERS ?= auto
TESTS ?=
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(TESTS)

# ruff, then mypy on engine/ (its settings are in pyproject.toml's [tool.mypy]). mypy cannot see the editable
# install's mapping of pmoflow.engine to engine/, so build/typecheck/pmoflow/ links the folders under that name.
lint: $(STAMP)
	$(BIN)/ruff check .
	mkdir -p build/typecheck/pmoflow
	touch build/typecheck/pmoflow/__init__.py
	ln -sfn ../../../engine build/typecheck/pmoflow/engine
	ln -sfn ../../../workflows build/typecheck/pmoflow/workflows
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/step_cost.py

# Needs PostgreSQL (PMOFLOW_BENCH_PG_URL or PMOFLOW_TEST_PG_URL) and 5-10 minutes: see docs/performance.md.
bench-workers: $(STAMP)
	$(BIN)/python bench/workers.py --repeat 5 --quiet-wait 60

# The REST API under load: a real Uvicorn on PostgreSQL (PMOFLOW_BENCH_PG_URL or PMOFLOW_TEST_PG_URL), 20 simulated
# staff for 30 s, complete over the API against the Python API, the inbox at 1,000 and 100,000 open tasks.
bench-web: $(STAMP)
	$(BIN)/python bench/web_load.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
