# `make run` and `make test` create the virtual environment and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench clean deploy-tools

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(INSTALLED)
	$(BIN)/email-service dev

test: $(INSTALLED) deploy-tools
	$(BIN)/pytest -n 2 --dist loadfile  # two processes: most tests wait on servers, not the CPU

# Debian packages for the tests and benchmarks, installed only when missing (`make run` needs none of them):
# docker-compose checks docker-compose.yml (`docker-compose config` needs no Docker engine), nginx fronts the
# deployment test and the load benchmark, wrk drives the latter, and strace counts round trips in
# bench/round_trips.py. Where systemd runs, nginx starts on port 80.
deploy-tools:
	@test -x /usr/sbin/nginx && command -v wrk >/dev/null && command -v docker-compose >/dev/null && \
		command -v strace >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends docker-compose nginx wrk strace; }

lint: $(INSTALLED)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache  # the layers of docs/architecture.md, as pyproject.toml states them

bench: $(INSTALLED) deploy-tools
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/dkim_signing.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/round_trips.py
	$(BIN)/python bench/costs.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .hypothesis
