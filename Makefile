# The two commands: `make demo` and `make test`. Each creates .venv when missing and
# installs what it needs once (a stamp keyed on the project files skips the install
# when nothing changed).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Extras installed for development and CI.
EXTRAS ?= dev
KEY    := $(shell cat pyproject.toml constraints-dev.txt plugins/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(EXTRAS)-$(KEY)

.PHONY: demo test bench lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): | $(PY)
	$(PY) -m pip install --quiet -c constraints-dev.txt -e ".[$(EXTRAS)]"
	@for p in plugins/*/; do if [ -f "$$p/pyproject.toml" ]; then $(PY) -m pip install --quiet --no-deps -e "$$p" || exit 1; fi; done
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples plugins
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
