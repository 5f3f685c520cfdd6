# Two commands do all the set-up on a fresh machine:
#   make demo   - creates .venv, installs everything, runs the quick demo on the bundled data
#   make test   - creates .venv, installs everything (with test extras), runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?= -n 2 --durations=15

.PHONY: demo test lint format bench bench-quick docs notebook clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev,docs]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m sklearn_metaedit demo --quick

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check sklearn_metaedit tests benchmarks examples
	$(PY) -m ruff format --check sklearn_metaedit tests benchmarks examples

format: $(VENV)/.installed
	$(PY) -m ruff format sklearn_metaedit tests benchmarks examples
	$(PY) -m ruff check --fix sklearn_metaedit tests benchmarks examples

# every benchmark script in turn (each writes its JSON and markdown to benchmarks/results/)
bench: $(VENV)/.installed
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done
	$(PY) benchmarks/render_tables.py

bench-quick: $(VENV)/.installed
	for script in benchmarks/bench_*.py; do $(PY) $$script --quick || exit 1; done

docs: $(VENV)/.installed-docs
	$(PY) -m sphinx -W -b html docs docs/_build/html

# reruns the fairlearn comparison notebook in place, in a kernel of this environment
notebook: $(VENV)/.installed
	$(PY) examples/run_notebook.py examples/fairlearn_comparison.ipynb

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build
