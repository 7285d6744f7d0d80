# Herald: `make demo`, `make test`. Everything runs from a local .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/herald
EXTRAS ?= embedded,prod,dev
TEST_EXTRAS := embedded,prod,dev,synthesis,asr

.PHONY: install install-test demo test test-sqlite test-postgres lint bench serve clean services

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Herald needs Python 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

# The suite also needs torch (GPT-SoVITS engine); the demo and the web/telephony processes do not.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -c constraints.txt -e '.[$(TEST_EXTRAS)]'
	touch $@

install-test: $(VENV)/.installed-test

demo: install
	$(PY) manage.py demo $(if $(SERVE),--serve)

serve: install
	$(PY) manage.py demo --serve

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# PostgreSQL, Redis, Chromium, docker-compose and sipp: installed (Debian packages, as root) and started if missing.
services:
	.ci/services

test: services lint test-sqlite test-postgres

# Everything on SQLite; then everything that touches the database again on PostgreSQL (the pure packages,
# gptsovits, the sandbox and the SIP user agent, do not depend on the database and run once; the demo test runs
# the demo on a database of its own, once). The order system's evening (1,000 contacts through the API to every
# result webhook, ~8 min here) runs once, on PostgreSQL, the database its bulk upsert is built for.
test-sqlite: install-test
	$(VENV)/bin/pytest --ignore=tests/e2e/test_order_system.py

test-postgres: install-test
	DATABASE_URL=$(PG_TEST_URL) $(VENV)/bin/pytest --ignore=tests/gptsovits --ignore=tests/sandbox --ignore=tests/telephony/sip --ignore=tests/test_demo_command.py

PG_BENCH_URL ?= postgres://postgres@127.0.0.1:5432/herald_bench

bench: install-test
	createdb -h 127.0.0.1 -U postgres herald_bench 2>/dev/null || true
	DATABASE_URL=$(PG_BENCH_URL) $(PY) manage.py migrate --verbosity 0
	DATABASE_URL=$(PG_BENCH_URL) $(PY) bench/plan.py
	DATABASE_URL=$(PG_BENCH_URL) $(PY) bench/report.py
	DATABASE_URL=$(PG_BENCH_URL) $(PY) bench/webhooks.py
	DATABASE_URL=$(PG_BENCH_URL) $(PY) bench/api.py
	$(PY) bench/gptsovits.py
	$(PY) bench/gptsovits.py --version v2Pro
	$(PY) bench/gptsovits.py --version v2ProPlus
	$(PY) bench/frontend.py
	$(PY) bench/sip_load.py
	$(PY) bench/sip_timers.py
	$(PY) bench/announce.py
	$(PY) bench/pacing.py
	$(PY) bench/pacing.py --store file
	$(PY) bench/pacing.py --lease-recovery

clean:
	rm -rf var/test var/demo-logs
