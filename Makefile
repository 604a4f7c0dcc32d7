# talon-bridge developer entry points. `make demo` and `make test` are the two README commands.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
CACHE      ?= $(HOME)/.cache/talon-bridge
TOOLS      := $(CACHE)/tools
UV         := $(TOOLS)/bin/uv
VENV       := .venv
BIN        := $(VENV)/bin
KAFKA_PORT ?= 9092
REGISTRY_PORT ?= 8081
# e.g. DEMO_ARGS="--encoding confluent": the demo through a Schema Registry.
DEMO_ARGS ?=
# pytest-xdist workers for `make test`, each with its own broker: most integration tests wait on
# rebalances and API latency rather than use a core.
TEST_WORKERS ?= 2
export UV_PYTHON_DOWNLOADS := never

.PHONY: help venv demo test lint typecheck unit kafka-up kafka-down kafka-jars bench clean
.PHONY: registry-build registry-up registry-down

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

venv: $(UV) ## create or refresh .venv from uv.lock
	$(UV) sync --locked --quiet

kafka-jars: venv ## resolve the Kafka broker jars from Maven Central into the cache
	$(BIN)/python -m bridge.tools.localkafka fetch >/dev/null

registry-build: venv ## build the local Schema Registry (Apicurio) from Maven Central into the cache
	$(BIN)/python -m bridge.tools.localregistry build >/dev/null

demo: venv kafka-jars ## set up and run the demo: local broker, simulator, bridge, load
	$(BIN)/talon-bridge demo $(DEMO_ARGS)

lint: venv ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv ## mypy --strict on the package
	$(BIN)/mypy --strict bridge

test: venv kafka-jars registry-build lint typecheck ## set up and run every check and the whole test suite
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

unit: venv ## the tests that need no broker
	$(BIN)/pytest -m "not kafka"

kafka-up: venv ## start a detached local broker on KAFKA_PORT (idempotent)
	$(BIN)/python -m bridge.tools.localkafka up --port $(KAFKA_PORT)

kafka-down: venv ## stop the detached local broker (idempotent)
	$(BIN)/python -m bridge.tools.localkafka down --port $(KAFKA_PORT)

registry-up: venv ## start a detached local Schema Registry on REGISTRY_PORT (idempotent)
	$(BIN)/python -m bridge.tools.localregistry up --port $(REGISTRY_PORT)

registry-down: venv ## stop the detached local Schema Registry (idempotent)
	$(BIN)/python -m bridge.tools.localregistry down --port $(REGISTRY_PORT)

clean: ## remove the virtualenv and caches inside the checkout
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# --- deployment: container image recipe and Helm chart -----------------------------------
DEPLOY_TOOLS_BIN ?= $(CACHE)/bin
CHART_DIR        := deploy/helm/talon-bridge

RELEASE_DIR      ?= dist/release
# The image's org.opencontainers.image.source label.
RELEASE_SOURCE   ?= $(shell git remote get-url origin 2>/dev/null || echo https://github.com/ORG/talon-bridge)

.PHONY: tools chart-check chart-readme release

tools: ## install helm, kubeconform, hadolint and readme-generator into the cache (built once, then reused)
	TALON_BRIDGE_TOOLS_BIN=$(DEPLOY_TOOLS_BIN) bash scripts/install-tools.sh >/dev/null

chart-readme: tools ## regenerate the chart README's parameter tables from values.yaml
	$(DEPLOY_TOOLS_BIN)/readme-generator -v $(CHART_DIR)/values.yaml -r $(CHART_DIR)/README.md >/dev/null

chart-check: venv tools ## hadolint, helm lint, kubeconform and the chart tests (no broker)
	$(DEPLOY_TOOLS_BIN)/hadolint Dockerfile
	$(DEPLOY_TOOLS_BIN)/helm lint --strict $(CHART_DIR)
	$(DEPLOY_TOOLS_BIN)/helm lint --strict $(CHART_DIR) -f $(CHART_DIR)/ci/full-values.yaml
	$(DEPLOY_TOOLS_BIN)/helm lint --strict $(CHART_DIR) -f $(CHART_DIR)/ci/statefulset-values.yaml
	TALON_BRIDGE_TOOLS_BIN=$(DEPLOY_TOOLS_BIN) $(BIN)/pytest -q tests/deploy -m "not kafka"

release: venv tools ## versioned artifacts in dist/release: wheel, sdist, chart package, image recipe
	rm -rf $(RELEASE_DIR)
	$(BIN)/python scripts/release.py --out $(RELEASE_DIR) --uv $(UV) --helm $(DEPLOY_TOOLS_BIN)/helm \
		--source "$(RELEASE_SOURCE)"
