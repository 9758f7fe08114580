# One scripted toolchain. Every target works on a fresh clone with Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint fmt bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(PY) -m hotpath demo

lint: install
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

fmt: install
	$(PY) -m ruff format src tests bench
	$(PY) -m ruff check --fix src tests bench

test: install lint
	bash scripts/ensure-redis-server
	bash scripts/ensure-chromium
	$(PY) -m pytest -q

bench: install
	bash scripts/ensure-redis-server
	bash scripts/ensure-wrk
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hotpath
