# Everything a fresh machine needs comes from here: `make demo` and `make test`.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
DEB_TOOLS := ssh:openssh-client snmpget:snmp tmux:tmux
STATE     ?= var/demo

.PHONY: setup demo test bench bench-quick lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; for pair in $(DEB_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m fleetd.demo --state-dir $(STATE)

# PostgreSQL's tests fail when no server answers; `make test REQUIRE_POSTGRES=0` skips them
# instead (a machine without PostgreSQL), saying why
REQUIRE_POSTGRES ?= 1

test: setup
	FLEETD_TEST_REQUIRE_POSTGRES=$(REQUIRE_POSTGRES) $(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

BENCH_STAMP := $(VENV)/.bench-installed

# valgrind (callgrind) counts the instructions a floor session and an engine operation take
$(BENCH_STAMP): $(STAMP)
	@command -v valgrind >/dev/null 2>&1 || { echo "installing Debian packages: valgrind"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# `make bench` writes docs/benchmarks.md; `make bench-quick` runs each benchmark small
bench: setup $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: setup $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) var
