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

# pytest's status is kept while the test PostgreSQL is stopped after it.
test: $(VENV) lint migrations-check
	$(VENV)/bin/pytest; status=$$?; $(STOP_TEST_POSTGRES); exit $$status

lint: $(VENV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

migrations-check: $(VENV)
	$(VENV_PY) manage.py makemigrations --check --dry-run
