# Every target creates the virtualenv and installs Cadre into it when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Node tools (exact versions in clients/typescript/package-lock.json): the TypeScript client's
# generator and compiler, Spectral and the AsyncAPI CLI.
NODE_DIR := clients/typescript
NODE_BIN := $(NODE_DIR)/node_modules/.bin
# Cadre's own modules, compiled once before the tests: every live test starts `cadre serve`,
# which would otherwise compile them again wherever PYTHONDONTWRITEBYTECODE is set.
BYTECODE := cadre handlers storage models_gen scripts tests

.PHONY: install serve test gen lint format fuzz bench clean

$(STAMP): pyproject.toml $(NODE_DIR)/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The official AsyncAPI JSON Schemas, for the test that validates asyncapi.yaml.
	rm -rf $(VENV)/asyncapi-specs && mkdir -p $(VENV)/asyncapi-specs
	cd $(VENV)/asyncapi-specs && npm pack --silent @asyncapi/specs@6.11.1 >/dev/null && tar xzf asyncapi-specs-6.11.1.tgz
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/cadre migrate
	$(BIN)/cadre serve

test: $(STAMP)
	$(BIN)/python -m compileall -q $(BYTECODE)
	$(BIN)/python -m pytest -q --durations=15

gen: $(STAMP)
	PATH=$(BIN):$$PATH scripts/gen_models.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(NODE_BIN)/spectral lint --fail-severity=warn --ruleset .spectral.yaml openapi.yaml
	# Fails on errors only: its one warning asks info.contact for an email, which Cadre has none of.
	ASYNCAPI_METRICS_CONFIG_PATH=$(NODE_DIR)/asyncapi-analytics.json \
	  $(NODE_BIN)/asyncapi validate --fail-severity=error asyncapi.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

fuzz: $(STAMP)
	$(BIN)/python scripts/fuzz.py --max-examples 300

bench: $(STAMP)
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_executions.py
	$(BIN)/python scripts/bench_streams.py
	$(BIN)/python scripts/bench_lists.py
	$(BIN)/python scripts/bench_workers.py  # skipped unless CADRE_BENCH_DATABASE_URL is PostgreSQL

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache $(NODE_DIR)/node_modules $(NODE_DIR)/generated
