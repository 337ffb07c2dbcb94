# Two commands do all the set-up on a fresh clone:  make run  |  make test
PY      ?= python3
VENV    ?= .venv
PORT    ?= 8501
HOST    ?= 127.0.0.1
# pytest-xdist workers for the tests that are not browser tests (0: in this one process)
TEST_WORKERS ?= 2
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast bench bench-quick chromium clean

TSTAMP  := $(VENV)/.installed-cluster
# pip compiles what it installs one file at a time; compileall does the same on every core (a
# fresh venv with Ray, timed alternately: 113 and 95 s against 133 and 116 s). The .pyc files must
# exist: where PYTHONDONTWRITEBYTECODE is set (as on this CI) Python keeps none it compiles at import,
# and without them the first test part took 447 s instead of 284 s. torch ships one Python
# 3.12-only test file, so compile errors are ignored.
COMPILE  = @$(VENV)/bin/python -m compileall -qq -j 0 $(VENV)/lib >/dev/null || true

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	# torch is pinned here (the CPU build on this machine); pyproject.toml only declares a range.
	$(VENV)/bin/pip install -q --no-compile torch==2.13.0 -e ".[test]"
	$(COMPILE)
	@touch $(STAMP)

# make test also installs the cluster extra (Ray), so CI runs the sweep and job-runner tests on Ray
$(TSTAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --no-compile torch==2.13.0 -e ".[test,cluster]"
	$(COMPILE)
	@touch $(STAMP) $(TSTAMP)

chromium:
	@command -v chromium >/dev/null 2>&1 || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

run: $(STAMP)
	$(VENV)/bin/streamlit run dashboard/app.py --server.port $(PORT) --server.address $(HOST) --server.headless true

# the browser tests run after the others, in one process: beside a second worker a fresh server's
# first render could take longer than Playwright's 30 s. Both parts always run; either failing fails.
test: $(TSTAMP) chromium
	@rc=0; \
	$(VENV)/bin/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile -m "not browser" || rc=$$?; \
	$(VENV)/bin/python -m pytest -q -ra -m browser || rc=$$?; \
	exit $$rc

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile -m "not browser and not slow"

# make bench also installs the surprise extra: the recommender table compares AutoRec with Surprise's
# SVD, and without the package that row is left out (with a note on stderr)
SSTAMP  := $(VENV)/.installed-surprise
$(SSTAMP): $(STAMP)
	$(VENV)/bin/pip install -q --no-compile torch==2.13.0 -e ".[surprise]"
	@touch $(SSTAMP)

bench: $(SSTAMP)
	$(VENV)/bin/python -m bench

# CI-sized (under 3 minutes here): bench/out/quick/BENCHMARKS.md; the committed BENCHMARKS.md is untouched
bench-quick: $(STAMP)
	$(VENV)/bin/python -m bench --quick

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info screenshots
