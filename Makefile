# Two entry points: `make book` builds the site into _build/html; `make test` runs the whole suite.
# Both create the virtual environment from the pinned requirements first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The machine keeps a CPU build of torch here; elsewhere pip takes torch from PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
export ATTNBOOK_DATA ?= $(abspath ../shared/data)
# Progress bars stay out of executed pages and test logs; kernels inherit this from the build.
export ATTNBOOK_PROGRESS := 0
# Kernels started by the build and by nbval must be the environment's Python.
export PATH := $(abspath $(BIN)):$(PATH)
# Nothing the book runs may download: transformers and sentence-transformers stay offline.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
WORKERS ?= 2
# One PyTorch thread per process: the book's models are tiny, and two workers with two threads each on two
# cores thrash (measured: a mini-BERT step took 32 ms on one thread and 1.3 s on two when the cores were busy).
export OMP_NUM_THREADS ?= 1

PACKAGE_SOURCES := $(shell find attnbook -name '*.py' -not -path '*/__pycache__/*')
VENDORED := site/vendor/.vendored.json
CACHE_STAMP := _build/.attnbook-sources.stamp

.PHONY: venv vendor book test lint unit notebooks notebooks-generated browser bench budget lab clean distclean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(FIND_LINKS) -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# JavaScript the pages serve themselves (widgets, MathJax): `npm ci` from site/package-lock.json,
# or the same pinned files from the jsDelivr CDN where npm is absent (see site/vendor_js.py).
vendor: $(VENDORED)

$(VENDORED): site/package.json site/package-lock.json site/vendor_js.py | $(VENV)/.installed
	$(BIN)/python site/vendor_js.py --force

# The execution cache keys on each notebook's code only; a change to the package, the environment or the
# variables set here must re-run the chapters, so it empties the cache rather than let the site show stale outputs.
$(CACHE_STAMP): $(PACKAGE_SOURCES) $(VENV)/.installed Makefile
	rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute
	mkdir -p _build
	touch $@

book: $(VENV)/.installed $(VENDORED) $(CACHE_STAMP)
	$(BIN)/jupyter-book build . -W --keep-going

# The whole suite: the chapters' formatting, unit and property tests, every chapter through nbval (with the real
# data, then with the generated fallback), the -W site build, the browser test.
test: lint unit notebooks notebooks-generated book browser

# The chapters' code is formatted (ruff, 80 columns: chapters/ruff.toml) so no line hides behind a scrollbar.
# `$(BIN)/ruff format chapters/` fixes most of what this reports; long strings and comments need a hand.
lint: venv
	$(BIN)/ruff format --check chapters/
	$(BIN)/ruff check chapters/

unit: venv
	$(BIN)/pytest tests -m "not browser" -n $(WORKERS) -q

notebooks: venv
	$(BIN)/pytest --nbval-lax -n $(WORKERS) --dist loadfile -q chapters/

# Every chapter again with ATTNBOOK_DATA empty: the generated data a reader without the real sets gets.
notebooks-generated: venv
	ATTNBOOK_DATA= $(BIN)/pytest --nbval-lax -n $(WORKERS) --dist loadfile -q chapters/

browser: book
	ATTNBOOK_REQUIRE_BROWSER=1 $(BIN)/pytest tests/test_site_browser.py -m browser -q

bench: venv
	$(BIN)/python benchmarks/chapter_times.py

# The same, failing if a chapter is over its budget (run it on an otherwise idle machine).
budget: venv
	$(BIN)/python benchmarks/chapter_times.py --fail-over-budget

# JupyterLab is not part of the pinned set (the build and the tests do not need it); this adds it on demand.
JUPYTERLAB_VERSION := 4.6.6
lab: venv
	$(BIN)/python -c 'import jupyterlab' 2>/dev/null || $(BIN)/pip install --quiet jupyterlab==$(JUPYTERLAB_VERSION)
	ATTNBOOK_PROGRESS=1 $(BIN)/jupyter lab chapters/

clean:
	rm -rf _build site/vendor site/node_modules .hypothesis

distclean: clean
	rm -rf $(VENV)
