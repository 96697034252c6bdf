# Quick start: `make serve` (venv + install + server on the shipped checkpoint) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-fast lint install bench clean check-deploy check-browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(BIN)/elastic serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# tests/deploy needs real prometheus/promtool binaries: it runs in `make check-deploy`; tests/browser a real
# Chromium: `make check-browser`
test: lint
	$(BIN)/python -m pytest -q --ignore=tests/deploy --ignore=tests/browser

# The inner loop: `make test` without the tests marked `slow` (real servers and processes: tests/e2e, the CLI in a
# subprocess, torchrun, the benchmark runs; pyproject.toml registers the marker). CI runs `make test`.
test-fast: lint
	$(BIN)/python -m pytest -q --ignore=tests/deploy --ignore=tests/browser -m "not slow"

# Deploy checks with the real tools (README "Deploy"): static checks, then a live server scraped by a real
# Prometheus. Needs Debian's prometheus and docker-compose (.ci/run installs them).
$(VENV)/.installed-deploy: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,deploy]'
	touch $@

check-deploy: $(VENV)/.installed-deploy
	VENV=$(VENV) bash scripts/check_deploy.sh
	$(BIN)/python -m pytest -q tests/deploy

# The demo page (GET /) in a real browser: Playwright (the `browser` extra) drives Debian's chromium through its
# executable path (ELASTIC_CHROMIUM, default /usr/bin/chromium; .ci/run installs it). Never `playwright install`:
# it downloads browsers, which cannot work offline. Rewrites docs/demo.png, the README's screenshot.
$(VENV)/.installed-browser: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,browser]'
	touch $@

check-browser: $(VENV)/.installed-browser
	$(BIN)/python -m pytest -q tests/browser -m browser

# Benchmarks (BENCHMARKS.md): starts our server and LitServe on 127.0.0.1, runs the bounded sweep and the
# traffic shapes (about 12-13 minutes on 2 cores at BENCH_SIZE=full) and regenerates BENCHMARKS.md and
# docs/benchmarks/. One torch thread by default: the load generator and the HTTP side share the two cores.
# The paced-load phase needs `hey` (Debian package): installed here when missing, as root or with sudo;
# if that fails the suite skips the phase and says so in BENCHMARKS.md.
BENCH_SIZE ?= full
BENCH_THREADS ?= 1
BENCH_DATA ?= ../shared/data/cifar10

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	@command -v hey >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get install -y -q hey || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q hey; }; \
	} || echo "make bench: could not install hey; the suite skips its hey phase (noted in BENCHMARKS.md)" >&2
	$(BIN)/elastic bench suite --size $(BENCH_SIZE) --threads $(BENCH_THREADS) --data $(BENCH_DATA) \
		--out bench-out --doc BENCHMARKS.md --assets docs/benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
