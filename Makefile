# BotFlow Analytics. `make demo` runs the product; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install browsers lint format bench-seed bench-ingest bench-live bench-live-cluster bench-page bench-read bench-rollups bench-alerts bench-retention bench-receipts bench-erase bench-load clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

## Debian's chromium for the browser tests (Playwright cannot download browsers here).
browsers:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "color emoji"; } || { \
	  echo "installing chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium fonts-noto-color-emoji >/dev/null || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium fonts-noto-color-emoji >/dev/null; }; }

demo: install
	$(PY) -m config.launcher demo

test: install browsers
	$(PY) -m config.launcher run -- $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .

bench-seed: install
	$(PY) -m config.launcher run -- $(PY) bench/seed.py

bench-live: install
	$(PY) -m config.launcher run -- $(PY) bench/live.py $(BENCH_ARGS)

## bench-live on 2 web processes + 2 pulses on a private Redis Cluster (RabbitMQ as the broker;
## under the lock), e.g. BENCH_ARGS="--clients 2000".
bench-live-cluster: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/live.py --topology 2x2 $(BENCH_ARGS)

bench-ingest: install
	$(PY) -m config.launcher run -- $(PY) bench/ingest.py $(BENCH_ARGS)

## First render of the live page with 10M messages, and its first-load bytes (shares the 2 cores:
## waits for any other benchmark holding the lock).
bench-page: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/page.py $(BENCH_ARGS)

## Explorer, bot page, read API and CSV export on the 10M-message database (bench/bigdata.py).
bench-read: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/read_paths.py $(BENCH_ARGS)

## Rollups over 10M messages (bench/bigdata.py builds the shared database once; under the lock).
bench-rollups: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/rollups.py $(BENCH_ARGS)

## Dropping a month of ~10M messages by retention (bench/retention.py; under the lock).
bench-retention: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/retention.py $(BENCH_ARGS)

## One minute-cycle of alert evaluation over 1,000 rules (its own orgs, removed afterwards).
bench-alerts: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/alerts.py $(BENCH_ARGS)

bench-receipts: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/receipts.py $(BENCH_ARGS)

bench-erase: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/erase.py $(BENCH_ARGS)

## 200 users (Locust) on 2 web processes for 5 minutes while 200 events/s arrive (bench/load.py;
## a trial: BENCH_ARGS="--users 40 --duration 45s"; --strict exits 1 when a target is missed).
bench-load: install
	flock /tmp/botflow-bench.lock $(PY) -m config.launcher run -- $(PY) bench/load.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data
