# forwarder — the two commands a newcomer needs: `make demo` and `make test`.
# Both set up everything they need (a virtualenv, and Dovecot from Debian's packages).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup dovecot imapfilter demo test lint format bench bench-quick clean

all: test

$(BIN)/forwarder: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Dovecot is a real IMAP server for the demo and the tests; they start their own copy
# in a temp dir on a free loopback port, so the packaged service is never touched.
dovecot:
	@command -v dovecot >/dev/null 2>&1 || { \
	  echo "installing dovecot-imapd (Debian package)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd; }

setup: $(BIN)/forwarder dovecot

demo: setup
	$(BIN)/python demo/demo.py

test: setup
	$(BIN)/python -m pytest

lint: $(BIN)/forwarder
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(BIN)/forwarder
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark, several runs each; writes BENCHMARKS.md (machine, commit, figures).
# imapfilter (a Debian package) does the catch-up job alongside, for comparison.
imapfilter:
	@command -v imapfilter >/dev/null 2>&1 || { \
	  echo "installing imapfilter (Debian package)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq imapfilter; }

bench: setup imapfilter
	$(BIN)/python bench/report.py

bench-quick: setup imapfilter
	$(BIN)/python bench/report.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis demo/run
