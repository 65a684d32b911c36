# The README's two commands. Each sets up .venv itself (torch pinned by constraints.txt).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --constraint constraints.txt

.PHONY: run test lint clean

$(VENV)/.run-installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --editable '.[lab]'
	touch $@

$(VENV)/.dev-installed: $(VENV)/.run-installed
	$(PIP) --editable '.[dev,lab]'
	touch $@

run: $(VENV)/.run-installed
	$(VENV)/bin/optimlab run

test: $(VENV)/.dev-installed
	$(PY) -m pytest -q -n auto --dist loadgroup

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
