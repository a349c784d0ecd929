# One-command set-up: each target creates (or reuses) the project's virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: on this project's machines torch==2.13.0 is a local CPU wheel,
# while an unpinned "torch" would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

# `make test` also installs the optional parts (web page, Ray backend, video) so their tests run;
# `make demo` needs only the core.
EXTRAS ?= test,web-test,ray,video,defects

.PHONY: install install-core demo test test-all test-corpus clean

install: $(VENV)/.installed

install-core: $(VENV)/.installed-core

$(VENV)/.installed-core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.installed-core
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: install-core
	$(VENV)/bin/gafu demo --overwrite

test: install
	$(PY) -m pytest

# The whole robustness corpus (every malformed file x five commands) and the slow tests.
test-corpus: install
	$(PY) -m pytest -m "corpus or slow"

test-all: install
	$(PY) -m pytest -m "slow or corpus or not slow"

clean:
	rm -rf $(VENV) gafu-demo .pytest_cache
