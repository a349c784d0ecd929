# One-command set-up: each target creates (or reuses) the project's virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: on this project's machines torch==2.13.0 is a local CPU wheel,
# while an unpinned "torch" would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-all bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/gafu demo --overwrite

test: install
	$(PY) -m pytest

test-all: install
	$(PY) -m pytest -m "slow or not slow"

clean:
	rm -rf $(VENV) gafu-demo .pytest_cache
