# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench bench-platform install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	# torch first and pinned: a looser request would pull a multi-GB CUDA build.
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(PIP) install --quiet -e ".[dev,bench]"
	touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

demo: $(STAMP)
	$(VENV)/bin/loyalfed demo

MYPY_PACKAGES := psi policies audit models protocol pki participant_node coordinator loyalfed

test: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy $(MYPY_PACKAGES)
	$(VENV)/bin/mypy --explicit-package-bases bench
	# Three workers on the 2 CI cores. `vmstat 10` through whole runs shows the cores busy from the
	# first test to the last with three workers as with four (the idle share once read from
	# `time -v` missed the CPU of the SuperLinks and SuperNodes the tests start): the suite is
	# CPU-bound, and four workers were slower (1,154 s against 1,005 s): the demo, the longest
	# file, took 764 s instead of ~490 s and became the suite's critical path.
	# Each file stays on one worker (its module fixtures are built once); the longest files start
	# first (tests/conftest.py orders them; xdist would otherwise put the files with the most tests
	# first). The four-host capture test once missed its probe with three workers; its capture now
	# drains the socket before it stops.
	$(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder --durations=30

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy $(MYPY_PACKAGES)
	$(VENV)/bin/mypy --explicit-package-bases bench

bench: $(DEV_STAMP)
	$(PY) bench/baselines.py
	$(PY) bench/psi_bench.py
	$(PY) bench/fl_utility.py
	$(PY) bench/audit_bench.py
	$(PY) bench/consent_bench.py

# The control plane's latency and throughput, with the deployment-vs-simulation job time beside them.
bench-platform: $(DEV_STAMP)
	$(PY) bench/deployment_job_bench.py --out bench-deployment-report.json
	$(PY) bench/control_plane_bench.py --deployment-report bench-deployment-report.json

clean:
	rm -rf $(VENV) loyalfed-demo
