# `make run` and `make test` create the virtual environment and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench clean deploy-tools screenshots

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
# bench/round_trips.py. Where systemd runs, nginx starts on port 80. postfix is the real relay of the bounce
# tests (tests/support/postfix.py runs private instances on loopback ports that generate the DSNs); it is
# preseeded to "No configuration" and its system service is disabled, so nothing listens on port 25.
# dovecot-imapd is the IMAP server of the bounce mailbox tests (tests/support/imap_server.py runs private
# instances on loopback ports); its package would start a system Dovecot on ports 143 and 993, so a
# /usr/sbin/policy-rc.d that exits 101 (made for the install and removed after it, unless one is there, as in
# Docker images) keeps invoke-rc.d from starting it, and its systemd service is disabled like postfix's.
# chromium is the headless browser of the dashboard tests (Playwright drives it; no browser is downloaded).
deploy-tools:
	@test -x /usr/sbin/nginx && command -v wrk >/dev/null && command -v docker-compose >/dev/null && \
		command -v strace >/dev/null && test -x /usr/sbin/postfix && test -x /usr/sbin/dovecot && \
		test -x /usr/bin/chromium || { apt-get update -qq && \
			echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections && \
			{ test -e /usr/sbin/policy-rc.d || { trap 'rm -f /usr/sbin/policy-rc.d' EXIT && \
				printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }; } && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				docker-compose nginx wrk strace postfix dovecot-imapd chromium && \
			{ ! command -v systemctl >/dev/null || systemctl disable --now postfix dovecot >/dev/null 2>&1 || true; }; }

# The dashboard's screenshots in docs/screenshots, taken by its browser tests against `email-service dev`.
screenshots: $(INSTALLED) deploy-tools
	DASHBOARD_SCREENSHOTS=docs/screenshots $(BIN)/pytest -p no:xdist tests/integration/dashboard/test_browser.py

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
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/outcome_commits.py
	$(BIN)/python bench/render_bombs.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .hypothesis
