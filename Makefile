# Monoenv: `make run` starts the whole stack, `make test` checks it.

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
# Tests get an embedded PostgreSQL of their own, apart from the one of `make run`.
TEST_DATA_DIR := $(CURDIR)/.monoenv/test

.PHONY: run test lint migrations-check

# The stamp reinstalls the project whenever pyproject.toml changes.
$(VENV): $(VENV)/.installed

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(VENV_PY)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)
	$(VENV_PY) -m monoenv_site.launcher

# When no database is named, the tests (tests/conftest.py) and manage.py start
# pgserver in MONOENV_DATA_DIR/pg; settings.py only computes where it listens.
ifeq ($(strip $(DATABASE_URL)$(DATABASE_URL_FILE)),)
test: export MONOENV_DATA_DIR := $(TEST_DATA_DIR)
STOP_TEST_POSTGRES = $(VENV_PY) -m monoenv_site.embedded stop
else
STOP_TEST_POSTGRES = true
endif

# The suite runs in parallel workers (pytest-xdist), each on its own test
# database; TEST_WORKERS=0 runs it in this one process. loadgroup without
# reordering hands tests out one at a time in the order tests/conftest.py
# sets (the minutes-long ones first).
TEST_WORKERS ?= auto
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# pytest's status is kept while the test PostgreSQL is stopped after it.
test: $(VENV) lint migrations-check
	$(VENV)/bin/pytest $(PYTEST_PARALLEL); status=$$?; $(STOP_TEST_POSTGRES); exit $$status

lint: $(VENV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

migrations-check: $(VENV)
	$(VENV_PY) manage.py makemigrations --check --dry-run
