# The two commands: `make demo` and `make test`. Each creates .venv when missing and
# installs what it needs once (a stamp keyed on the project files skips the install
# when nothing changed). CI also runs `make compat` (the oldest supported stack).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Extras installed for development and CI.
EXTRAS ?= dev
KEY    := $(shell cat pyproject.toml constraints-dev.txt plugins/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(EXTRAS)-$(KEY)

# `make compat`: the oldest supported stack (constraints-oldest.txt, the floors of
# pyproject.toml) on the oldest supported Python, in .venv-compat.
COMPAT_VENV  := .venv-compat
COMPAT_PY    := $(COMPAT_VENV)/bin/python
COMPAT_KEY   := $(shell cat pyproject.toml constraints-oldest.txt 2>/dev/null | sha256sum | cut -c1-12)
COMPAT_STAMP := $(COMPAT_VENV)/.installed-$(COMPAT_KEY)
# python3.10 on PATH (a pyenv shim counts only if it runs), else pyenv's own 3.10
OLDEST_CANDIDATES := python3.10 $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3)

.PHONY: demo test bench bench-report lint install clean compat compat-run

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

# The README's performance table from benchmarks/results/latest.json (a full `make bench`
# run writes it too).
bench-report:
	$(PYTHON) benchmarks/report.py

compat: $(STAMP)
	@py="$(OLDEST_PYTHON)"; \
	if [ -z "$$py" ]; then for p in $(OLDEST_CANDIDATES); do \
		if $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then py=$$p; break; fi; \
	done; fi; \
	if [ -z "$$py" ]; then \
		echo "make compat: no Python 3.10 found (python3.10 on PATH or ~/.pyenv/versions/3.10*): the oldest supported stack is NOT tested here"; \
		exit 0; \
	fi; \
	$(MAKE) --no-print-directory compat-run OLDEST_PYTHON="$$py"

compat-run: $(COMPAT_STAMP)
	PYTHONPATH=$(CURDIR)/src $(COMPAT_PY) -m pytest tests/codecs tests/golden $(PYTEST_ARGS)
	REMOTE_RUNTIME_COMPAT_PYTHON=$(CURDIR)/$(COMPAT_PY) PYTHONPATH=$(CURDIR)/src \
		$(PY) -m pytest tests/codecs/test_python_versions.py $(PYTEST_ARGS)

$(COMPAT_STAMP):
	@test -x $(COMPAT_PY) || test -n "$(OLDEST_PYTHON)" || { echo "use: make compat"; exit 1; }
	@test -x $(COMPAT_PY) || $(OLDEST_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install --quiet --upgrade pip
	$(COMPAT_PY) -m pip install --quiet -c constraints-oldest.txt -e ".[numpy,pandas,sklearn,xgboost]" \
		scipy pytest pytest-timeout hypothesis
	@rm -f $(COMPAT_VENV)/.installed-*
	@touch $(COMPAT_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples plugins
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
