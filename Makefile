# make demo: serve real recommendations on an embedded database.  make test: run every test.
# make test-container: build the image and run the compose stack on a private Docker engine (root).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: setup test-tools demo docs test test-spark container-tools test-container bench bench-25m bench-refresh clean

# uv installs the pinned requirements in seconds where pip takes minutes (make test's budget is
# 10 minutes); --native-tls trusts the system's certificates, as pip does.
UV_VERSION := 0.13.9

$(BIN)/uv:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The demo installs what serving needs and the embedded PostgreSQL (requirements-demo.txt);
# the tests, benchmarks, evaluation and Spark the rest (requirements-dev.txt), into the same venv.
$(DEMO_STAMP): requirements.txt requirements-demo.txt | $(BIN)/uv
	$(BIN)/uv pip install --quiet --native-tls --python $(BIN)/python -r requirements-demo.txt
	touch $@

$(STAMP): requirements.txt requirements-demo.txt requirements-dev.txt requirements-eval.txt requirements-bench.txt requirements-spark.txt | $(BIN)/uv
	$(BIN)/uv pip install --quiet --native-tls --python $(BIN)/python -r requirements-dev.txt
	touch $@

setup: $(STAMP)

# Java, Node.js and Chromium for the client and docs-page tests, the fault tests' network tools and the
# PostgreSQL JDBC driver for the Spark refresh's test (installed when missing).
test-tools:
	@scripts/install-test-tools.sh

# make demo PORT=5050 serves on another port; DEMO_ARGS passes more options (python -m ml_service demo --help).
PORT ?= 5000
demo: $(DEMO_STAMP)
	$(BIN)/python -m ml_service demo --port $(PORT) $(DEMO_ARGS)

# The documentation site (docs/) on http://127.0.0.1:8000, rebuilt as its pages change.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# Two pytest-xdist workers (the 2-core machine), a test file at a time each, in the order
# collected (tests/conftest.py puts the fault matrix first: one worker stages its faults, about
# three minutes of mostly waiting, while the other runs the rest). Each run gets a temporary root
# of its own: two runs at once (other checkouts on the same machine) must not delete each other's
# PostgreSQL data directories. pytest's directories go in it, as --basetemp, short: PostgreSQL's
# socket path, inside a test's directory, must stay under 108 bytes. Python may write its
# bytecode caches (PYTHONDONTWRITEBYTECODE, set in these machines' environment, is unset): uv
# installs without them, and every Gunicorn worker and command the tests start would compile
# its imports again.
test: setup test-tools
	@unset PYTHONDONTWRITEBYTECODE; tmp=$$(mktemp -d -t ml-service-test-XXXXXX); \
	TMPDIR=$$tmp $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --basetemp=$$tmp/t; \
	rc=$$?; rm -rf $$tmp; exit $$rc

# The Spark refresh on a real standalone cluster (tests/cluster): a master and two workers on
# this machine, the refresh submitted with spark-submit (about 3 minutes).
test-spark: setup test-tools
	@unset PYTHONDONTWRITEBYTECODE; tmp=$$(mktemp -d -t ml-service-spark-XXXXXX); \
	TMPDIR=$$tmp $(BIN)/python -m pytest tests/cluster -s -p no:cacheprovider --basetemp=$$tmp/t; \
	rc=$$?; rm -rf $$tmp; exit $$rc

# The container deployment for real (tests/container): a private dockerd, stand-in base images
# built from Debian's packages (no registry is reachable), the Dockerfile and docker-compose.yml
# as they are. Installs Debian's docker.io and mmdebstrap when missing, and the compose v2 and
# buildx plugins into .container-tools/. Leaves the host as it found it.
container-tools:
	@scripts/install-container-tools.sh

test-container: setup container-tools
	@unset PYTHONDONTWRITEBYTECODE; tmp=$$(mktemp -d -t ml-service-container-XXXXXX); \
	TMPDIR=$$tmp $(BIN)/python -m pytest tests/container -s -p no:cacheprovider --basetemp=$$tmp/t; \
	rc=$$?; rm -rf $$tmp; exit $$rc

# Load benchmark on the bundled ml-latest-small (embedded PostgreSQL in .bench/); writes bench/RESULTS.md.
bench: setup
	$(BIN)/python -m bench.run --data movielens $(BENCH_ARGS)

# The same at MovieLens-25M size (synthetic; generated once into BENCH_PGDATA, ~10 minutes).
BENCH_PGDATA ?= ../bench-data/pg
bench-25m: setup
	$(BIN)/python -m bench.run --data synthetic --pgdata $(BENCH_PGDATA) $(BENCH_ARGS)

# The refresh on each engine (numpy untuned: the Spark engine's settings; Spark local[2] with a 6 GB
# driver heap) at 1M, 5M and 25M synthetic interactions (generated once into ../bench-data/refresh),
# and on a standalone cluster of two workers at 5M (about 50 minutes); the Spark models compared
# with numpy's; writes bench/RESULTS-refresh-engines.md.
bench-refresh: setup
	$(BIN)/python -m bench.refresh_engines --engines numpy-untuned,spark --spark-conf spark.driver.memory=6g $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo .bench .pytest_cache .container-tools .site
