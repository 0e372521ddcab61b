# make test / make demo / make bench create .venv and install trustfix on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU build that lies on disk here; elsewhere: make CONSTRAINTS=/dev/null
CONSTRAINTS ?= constraints.txt
STAMP := $(VENV)/.installed
APT_BWRAP := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 bubblewrap >/dev/null 2>&1

.PHONY: install test demo bench clean e2e-setup

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	@# the sandbox's isolation tool: apt as root where there is apt; otherwise say so and go on
	@command -v bwrap >/dev/null 2>&1 || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null 2>&1 \
	  && { $(APT_BWRAP) || { apt-get update -qq >/dev/null 2>&1 && $(APT_BWRAP); }; }; } \
	  || echo "bubblewrap not installed: the sandbox refuses untrusted code unless sandbox.allow_weak (README, Sandbox)"
	$(MAKE) e2e-setup
	touch $(STAMP)

# The VS Code end-to-end test: (as root, with apt) libkrb5-dev, ripgrep and chromium, then with
# npm code-server and puppeteer-core; without npm or chromium the test skips, saying so.
e2e-setup:
	sh tests/e2e/install.sh || echo "e2e set-up failed; tests/e2e/test_vscode.py retries it"

test: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/trustfix demo

bench: $(STAMP)
	$(VENV)/bin/trustfix bench --condition all --ablations --out bench-results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
