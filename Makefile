# Lastmile: `make run` (the embedded platform) and `make test` (everything, with real Kafka and PostgreSQL).
# Both do their own set-up on a fresh machine: virtual environment, packages, the Kafka broker, PostgreSQL.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := libs/common services/order-intake services/planner services/tracker services/notifier sim
DEPLOY_SCRIPTS := deploy/grafana/generate_dashboards.py deploy/prometheus/generate_rules.py
SOURCES := $(wildcard $(PACKAGES:%=%/src) $(PACKAGES:%=%/tests) tests bench) conftest.py $(DEPLOY_SCRIPTS)
PYTEST := $(PY) -m pytest -p no:randomly
export LASTMILE_SHARED ?= $(abspath ../shared)

.PHONY: run test unit service security integration e2e faults deploy-tests lint format venv infra-up infra-down infra-status \
        events-doc k8s up down lock clean help check-deploy deploy-gen system-deps bench-intake bench-notifier \
        bench-planner bench-tracker demo

help:
	@echo "make run        the embedded platform (one process, in-memory bus, SQLite under var/)"
	@echo "make test       every test tier plus lint, against a real Kafka broker and PostgreSQL it starts"
	@echo "make demo       a whole simulated day (2,000 orders, 40 vehicles), KPIs and var/report/index.html"
	@echo "                MODE=distributed: the same day on the four services, Kafka and PostgreSQL"
	@echo "make unit | service | security | integration | e2e | faults | lint     one tier"
	@echo "make infra-up | infra-down                         Kafka and PostgreSQL for local development"
	@echo "make check-deploy   manifests, compose file, alert rules, and dashboards against a scraped stack"
	@echo "make deploy-gen     regenerate the dashboards' JSON and the PrometheusRule after editing their sources"
	@echo "make bench-tracker  the tracker's throughput and latency figures (docs/benchmarks.md)"
	@echo "make bench-intake   order intake under load on the running Kafka and PostgreSQL (docs/benchmarks.md)"
	@echo "make bench-notifier customer messages under load on the running Kafka and PostgreSQL (docs/benchmarks.md)"

# ---------------------------------------------------------------------------------------------------------
# Set-up

venv: $(VENV)/.installed

$(VENV)/.installed: constraints.txt requirements-dev.txt $(PACKAGES:%=%/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements-dev.txt $(PACKAGES:%=-e %)
	@touch $@

# Java and Maven fetch and run the Kafka broker; PostgreSQL comes from Debian's packages (tools/pg/pg.sh);
# Chromium (Debian's, never a downloaded build) runs the tracking page's browser tests.
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java and Maven from Debian's packages"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq default-jdk-headless maven >/dev/null; }
	@tools/pg/pg.sh install
	@command -v chromium >/dev/null || { \
	  echo "installing Chromium from Debian's packages (the tracking page's browser tests)"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; }
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing Prometheus (promtool, and the server the dashboard test scrapes with) from Debian's packages"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v kubectl >/dev/null || { echo "kubectl is needed for make check-deploy (kubectl kustomize)"; exit 1; }

# ---------------------------------------------------------------------------------------------------------
# The two commands

run: venv
	$(PY) -m lastmile.sim

# A whole compressed day of the simulated city to the end: KPI table, var/report/{index.html,kpis.json,orders.csv}.
MODE ?= embedded
demo: venv
ifeq ($(MODE),distributed)
	@$(MAKE) --no-print-directory system-deps
	@tools/kafka/kafka.sh fetch
	tools/with-infra.sh $(PY) -m lastmile.sim.demo --mode distributed $(DEMO_ARGS)
else
	$(PY) -m lastmile.sim.demo --mode embedded $(DEMO_ARGS)
endif

test: venv system-deps
	@tools/kafka/kafka.sh fetch
	LASTMILE_REQUIRE_INFRA=1 tools/with-infra.sh $(MAKE) --no-print-directory lint unit service security integration e2e faults deploy-tests

# ---------------------------------------------------------------------------------------------------------
# Tiers

UNIT_DIRS := $(wildcard $(PACKAGES:%=%/tests/unit) tests/unit)
SERVICE_DIRS := $(wildcard $(PACKAGES:%=%/tests/service))
TEST_DIRS := $(wildcard $(PACKAGES:%=%/tests) tests)

unit: venv
	$(PYTEST) -q --timeout 60 -m "not integration and not e2e" $(UNIT_DIRS)

service: venv
	$(PYTEST) -q --timeout 120 -m "not integration and not e2e" $(SERVICE_DIRS)

# Attacks on the four services in one process (InMemoryBus, SQLite): tests/security, docs/security.md.
security: venv
	$(PYTEST) -q --timeout 120 -m security tests/security

integration: venv
	$(PYTEST) -q --timeout 300 -m integration $(TEST_DIRS)

e2e: venv
	$(PYTEST) -v -m e2e --timeout 600 tests --ignore=tests/deploy

# Faults on purpose (tests/faults): brokers and PostgreSQL of the tests' own killed, paused and restarted,
# consumers and relays SIGKILLed mid-way; each test bounded by its own timeout (pytest.mark.timeout).
faults: venv
	$(PYTEST) -v -m faults --timeout 300 --durations=0 tests/faults

# Deployment: kustomize renders and schemas, the Compose specification, promtool, and a real Prometheus scraping a
# running stack for every dashboard query (tests/deploy). `check-deploy` also sets up what it needs.
deploy-tests: venv
	$(PYTEST) -v --timeout 300 tests/deploy

check-deploy: venv system-deps
	@tools/kafka/kafka.sh fetch
	LASTMILE_REQUIRE_INFRA=1 tools/with-infra.sh $(MAKE) --no-print-directory deploy-tests

deploy-gen: venv
	$(PY) deploy/grafana/generate_dashboards.py
	$(PY) deploy/prometheus/generate_rules.py

lint: venv
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m ruff format --check $(SOURCES)
	$(PY) -m mypy $(PACKAGES:%=%/src) $(wildcard bench/*.py) $(DEPLOY_SCRIPTS)

format: venv
	$(PY) -m ruff check --fix $(SOURCES)
	$(PY) -m ruff format $(SOURCES)

# ---------------------------------------------------------------------------------------------------------
# Infrastructure for local development (make test starts and stops its own)

infra-up: system-deps
	tools/kafka/kafka.sh start
	tools/pg/pg.sh start

infra-down:
	-tools/kafka/kafka.sh stop
	-tools/pg/pg.sh stop

infra-status:
	-tools/kafka/kafka.sh status
	-tools/pg/pg.sh status

# ---------------------------------------------------------------------------------------------------------
# Benchmarks (not part of make test; figures and methods in docs/benchmarks.md)

# Solomon quality (var/bench/solomon.csv; BENCH_INSTANCES=<folder> for another set), then city scale.
bench-planner: venv
	@mkdir -p var/bench
	@echo "load before: $$(uptime)" | tee var/bench/planner.txt
	$(PY) bench/solomon.py | tee -a var/bench/planner.txt
	$(PY) bench/planner_scale.py | tee -a var/bench/planner.txt
	@echo "load after: $$(uptime)" | tee -a var/bench/planner.txt

# ---------------------------------------------------------------------------------------------------------
# Other

# Benchmarks (figures to docs/benchmarks.md; they need Kafka and PostgreSQL, started here when not running)
bench-tracker: venv
	tools/with-infra.sh $(PY) bench/tracker.py

events-doc: venv
	$(PY) -m lastmile.common.catalog docs/events

k8s:
	kubectl kustomize deploy/k8s/overlays/$(or $(OVERLAY),development)

# Benchmarks (figures and method in docs/benchmarks.md); they use the Kafka and PostgreSQL `make infra-up` starts.
bench-intake: venv
	$(PY) bench/intake.py $(BENCH_ARGS)

# Notifier throughput and latency (one process on the real Kafka and PostgreSQL, local Twilio and SMTP stand-ins).
bench-notifier: venv
	$(PY) bench/notifier.py --write docs/benchmarks.md $(BENCH_ARGS)

up down:
	@echo "docker compose $@: needs a Docker engine (none on CI machines); the file is validated by make test"
	docker compose $(if $(filter up,$@),up -d,down)

lock: venv
	$(PY) -m pip freeze --exclude-editable | sed '1i # Pinned versions of every dependency (pip install -c constraints.txt); refresh with `make lock`.' > constraints.txt

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
