# make test / make demo / make bench create .venv and install trustfix on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU build that lies on disk here; elsewhere: make CONSTRAINTS=/dev/null
CONSTRAINTS ?= constraints.txt
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/trustfix demo

bench: $(STAMP)
	$(VENV)/bin/trustfix bench --condition all --ablations --out bench-results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
