# The front door. Every target is a one-liner a newcomer can read.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
HTMX_VERSION ?= 4.0.1
MARKDOWN_IT_VERSION ?= 14.1.0
DOMPURIFY_VERSION ?= 3.4.18
CHARTJS_VERSION ?= 4.6.1
TASK_LISTS_VERSION ?= 2.1.1
DOLLARMATH_VERSION ?= 0.5.0
TEXMATH_VERSION ?= 1.0.0
KATEX_VERSION ?= 0.19.1
AXE_CORE_VERSION ?= 4.14.1

.PHONY: run run-prod test lint bench bench-admin bench-page vendor pygments-css screenshots lock migrate superuser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock && $(BIN)/pip install -q --no-deps -e . && touch $@

$(VENV)/.installed-dev: requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.lock && $(BIN)/pip install -q --no-deps -e . && touch $@ $(VENV)/.installed

run: $(VENV)/.installed  ## Set up and serve on http://$(HOST):$(PORT)/streaming-demo
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python -m chatsite.serving.server --announce-url -b $(HOST) -p $(PORT) chatsite.asgi:application

run-prod: $(VENV)/.installed  ## Production: migrate, collectstatic, CHAT_WORKERS Daphne workers behind nginx (needs DATABASE_URL, REDIS_URL)
	$(BIN)/python scripts/run_prod.py --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev  ## Set up and run the whole suite: SQLite + Redis + Chromium, then PostgreSQL
	$(BIN)/python -m pytest
	$(BIN)/python scripts/with_postgres.py -m pytest -m "not e2e" --ignore=tests/e2e

lint: $(VENV)/.installed-dev  ## ruff, mypy, and the import contracts (layers, no cycles) in pyproject.toml
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy chat chatsite && $(BIN)/lint-imports

bench: $(VENV)/.installed-dev  ## chatsite vs a bare ASGI relay, side by side (≤ 15 min; BENCH_ARGS=--quick, --write-docs, "--production --workers 2")
	$(BIN)/python -m benchmarks.relay $(BENCH_ARGS)

bench-admin: $(VENV)/.installed-dev  ## Admin list and analytics pages with 1,000,000 seeded replies (SQLite, var/bench/)
	$(BIN)/python -m benchmarks.admin_pages --replies 1000000

bench-page: $(VENV)/.installed-dev  ## The page keeps up: a 2,000-token reply at 100 tok/s in headless Chromium
	$(BIN)/python -m benchmarks.page_render

migrate: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput

superuser: migrate
	$(BIN)/python manage.py createsuperuser

vendor:  ## Re-vendor the front-end libraries from npm (htmx + extensions, markdown-it + plugins, DOMPurify, KaTeX, Chart.js; axe-core for tests)
	HTMX_VERSION=$(HTMX_VERSION) MARKDOWN_IT_VERSION=$(MARKDOWN_IT_VERSION) DOMPURIFY_VERSION=$(DOMPURIFY_VERSION) CHARTJS_VERSION=$(CHARTJS_VERSION) \
	  TASK_LISTS_VERSION=$(TASK_LISTS_VERSION) DOLLARMATH_VERSION=$(DOLLARMATH_VERSION) TEXMATH_VERSION=$(TEXMATH_VERSION) KATEX_VERSION=$(KATEX_VERSION) AXE_CORE_VERSION=$(AXE_CORE_VERSION) \
	  bash scripts/vendor.sh

pygments-css: $(VENV)/.installed  ## Regenerate static/chat/pygments.css (code colours, light and dark)
	$(BIN)/python scripts/pygments_css.py

screenshots: $(VENV)/.installed-dev  ## Retake the README's screenshots (docs/screenshot-*.png) in headless Chromium
	$(BIN)/python scripts/screenshots.py
	$(BIN)/python scripts/screenshot_conversations.py
	$(BIN)/python scripts/screenshot_attachments.py

lock: | $(BIN)/python  ## Re-pin dependencies (needs network to PyPI)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml -o requirements.lock --python-version 3.11 -q
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements-dev.lock --python-version 3.11 -q

clean:
	rm -rf $(VENV) var
