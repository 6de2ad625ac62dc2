# shoprank's entry points. Every target is idempotent: run any of them again and it only redoes what changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup export demo test test-unit proto bench clean

## setup: create .venv with shoprank and everything its tests, export and benchmarks need, and redis-server
## (Debian's package) for the shared profile store's tests, chromium with chromium-driver for the workbench's
## browser tests, and faketime for the tests of a wall clock that jumps
setup: $(STAMP)
$(STAMP): pyproject.toml
	command -v redis-server >/dev/null || apt-get install -y -q redis-server || (apt-get update -q && apt-get install -y -q redis-server)
	command -v chromedriver >/dev/null || apt-get install -y -q chromium chromium-driver || (apt-get update -q && apt-get install -y -q chromium chromium-driver)
	command -v faketime >/dev/null || apt-get install -y -q faketime || (apt-get update -q && apt-get install -y -q faketime)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[export,train,test,loadtest,dev,workbench]'
	touch $@

## export: export the models to ONNX (parity-checked) and fill model_repository/{cpu,gpu}
export: setup
	$(BIN)/shoprank export

## demo: the main job: start Triton and the orchestrator, index the demo catalog, answer queries, stop
demo: export
	$(BIN)/shoprank demo

## test: the whole suite, unit and integration (real tritonserver, real gRPC server)
test: export
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest tests/unit

## load: Locust's step load, headless for LOAD_SECONDS (default 60), against LOAD_HOST=host:port or, without it, a
## fresh Triton and service on the demo catalog (stopped at the end); CSV, HTML and a latency plot (PNG) go to
## benchmarks/results/<date-time>/. Fails past 1% failures or SHOPRANK_LOADTEST_P95_MS (default 500 ms).
LOAD_SECONDS ?= 60
LOAD_HOST ?=
.PHONY: load
load: export
	$(BIN)/python -m loadtest.run --seconds $(LOAD_SECONDS) $(if $(LOAD_HOST),--host $(LOAD_HOST))

## rollout-check: a whole release under steady Locust load (a few minutes): export a new reranker version, canary
## 10%, 50%, promote, unload the old one, then a canary rolled back; prints the figures per phase and, last,
## `failed=N requests=M degraded=D p50_ms=.. p99_ms=..`; fails if any request failed. Reports go to
## benchmarks/results/rollout-<date-time>/.
.PHONY: rollout-check
rollout-check: export
	$(BIN)/python -m loadtest.rollout_check

## catalog-check: a live catalog under load (a few minutes): Triton, a Milvus Lite server, Redis and two replicas
## sharing them, one Locust user per replica, catalog changes through both admin APIs for CATALOG_CHECK_SECONDS
## (default 90), and midway kill -9 of one replica and of Milvus, then both restarted; every acknowledged change is
## read back at the end. Prints last `failed=N lost=L updates=U freshness_p50_ms=X freshness_p99_ms=Y`; fails on a
## failed search or a lost change. Reports go to benchmarks/results/catalog-<date-time>/.
CATALOG_CHECK_SECONDS ?= 90
.PHONY: catalog-check
catalog-check: export
	$(BIN)/python -m loadtest.catalog_check --seconds $(CATALOG_CHECK_SECONDS)

## overload-check: on a fresh stack, find the capacity (the highest rate whose p99 stays within 100 ms), send 3x that
## open-loop for 60 s, then 1x for 30 s (a few minutes); prints last `requests=N ok=A shed=S other_errors=E
## accepted_p99_ms=P shed_p99_ms=R recovered_s=T capacity_rps=C`; fails when other errors reach 0.1%. The demo
## catalog by default; CATALOG=.../catalog.csv (JUDGMENTS=... for its queries, SHOP=... its shop's name, e.g.
## SHOP=home-depot for Home Depot's own weights) for another shop's.
CATALOG ?= data/demo/catalog.csv
JUDGMENTS ?=
SHOP ?=
.PHONY: overload-check
overload-check: export
	$(BIN)/python -m loadtest.overload_check --catalog $(CATALOG) $(if $(JUDGMENTS),--judgments $(JUDGMENTS)) \
		$(if $(SHOP),--shop $(SHOP))

## soak: a fresh stack (Triton, Milvus Lite, Redis, a service on the demo catalog in Milvus) under mixed load for
## SOAK_MINUTES (default 10): open-loop searches, feedback events and catalog changes, each acknowledged write kept;
## every 10 s each process's memory and open files. Every write is read back at the end. Samples, calls and a plot
## go to benchmarks/results/soak-<date-time>/; prints last `minutes=M searches=N events=E changes=C lost=L failed=F
## rss_growth_pct=R fd_growth_pct=D p99_first_ms=A p99_last_ms=B`; fails on a loss, a failed call, 5% growth of
## the orchestrator's or Triton's memory or files over the last 80% of the run, or an unsteady p99.
SOAK_MINUTES ?= 10
.PHONY: soak
soak: export
	$(BIN)/python -m loadtest.soak --minutes $(SOAK_MINUTES)

## workbench-check: the relevance workbench in headless Chromium against a fresh stack on the demo catalog (under a
## minute): search, compare, judge, feedback, errors, keyboard, console, a 390 px window. Screenshots and checks go to
## benchmarks/results/workbench-<date-time>/; prints last `pages=N checks=M failed=F`; fails if a check failed.
.PHONY: workbench-check
workbench-check: export
	$(BIN)/python -m workbench.check

## fuzz: the long run of the property-based fuzzing of the public and admin gRPC APIs against a real Triton, Milvus
## Lite and gRPC server (tests/integration/test_fuzz.py; docs/fuzzing.md): FUZZ_EXAMPLES examples for every RPC
## (default 30,000; `make test` runs 10,000 per RPC). No call may fail with INTERNAL, UNKNOWN or UNAVAILABLE or
## take over 1 s; prints each RPC's calls, statuses and slowest call.
FUZZ_EXAMPLES ?= 30000
.PHONY: fuzz
fuzz: export
	SHOPRANK_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/integration/test_fuzz.py -s -p no:cacheprovider

## proto: regenerate core/_proto from proto/
proto: setup
	PYTHON=$(BIN)/python scripts/gen_proto.sh

clean:
	rm -rf .shoprank model_repository/*/*/[0-9]* model_repository/*/*/tokenizer.json model_repository/*/*/sp.model model_repository/*/*/export.json model_repository/*/*/combination.json
