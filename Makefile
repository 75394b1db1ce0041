# make demo: serve real recommendations on an embedded database.  make test: run every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

$(STAMP): requirements.txt requirements-dev.txt requirements-eval.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/python -m ml_service demo

# pytest numbers its temporary directories per user and deletes all but the newest three, so
# two runs at once (other checkouts on the same machine) would delete each other's PostgreSQL
# data directory: each run gets a temporary root of its own.
test: setup
	@tmp=$$(mktemp -d -t ml-service-test-XXXXXX); \
	TMPDIR=$$tmp $(BIN)/python -m pytest; rc=$$?; rm -rf $$tmp; exit $$rc

clean:
	rm -rf $(VENV) .demo .pytest_cache
