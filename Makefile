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

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .demo .pytest_cache
