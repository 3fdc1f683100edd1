# Set-up is two commands: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what is missing; torch is pinned because a range
# admitting newer releases downloads gigabytes of CUDA wheels.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir torch==2.13.0
	$(PY) -m pip install -q --no-cache-dir -e ".[test,live]"
	touch $@

.PHONY: demo test bench
demo: $(VENV)/.installed
	$(PY) -m experiments.quickstart

# two workers, a test file each at a time (a file's module fixtures, such as the testbed's namespaces, set up once)
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(VENV)/.installed
	$(PY) -m benchmarks.sim_throughput
