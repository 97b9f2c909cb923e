# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs on first use (llama-cpp-python compiles
# from source once, about 6 minutes on 2 cores; pip caches the built wheel).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/promptops eval banking_intent --split dev --limit 30
	$(BIN)/promptops eval restaurant_booking --split dev --limit 30

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
