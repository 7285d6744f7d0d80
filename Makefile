# Herald: `make demo`, `make test`. Everything runs from a local .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/herald
EXTRAS ?= embedded,prod,dev

.PHONY: install demo test test-sqlite test-postgres lint bench serve clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Herald needs Python 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) manage.py demo $(if $(SERVE),--serve)

serve: install
	$(PY) manage.py demo --serve

lint: install
	$(VENV)/bin/ruff check .

test: lint test-sqlite test-postgres

test-sqlite: install
	$(VENV)/bin/pytest

test-postgres: install
	DATABASE_URL=$(PG_TEST_URL) $(VENV)/bin/pytest

bench: install
	DATABASE_URL=$(PG_TEST_URL) $(PY) bench/plan.py

clean:
	rm -rf var/test var/demo-logs
