# wirebook: two commands set up a fresh Debian machine.
#   make test   create .venv, install everything pinned (Python and Debian packages), run the whole suite
#   make run    the main job: exchange simulator + feed + card + agent, live view, summary
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := tshark g++ make perl postgresql libdpdk-dev pkg-config iproute2 openfpgaloader  # tshark: dissector cross-checks;
# g++, make, perl: Verilator builds; postgresql: the journal's PostgreSQL tests start their own server in a temporary
# directory; libdpdk-dev (DPDK 22.11 with every PMD, net_pcap/net_ring/net_af_packet included), pkg-config and gcc
# (from g++): driver/dpdk builds its shim on first use; iproute2: the DPDK af_packet test's `ip netns`;
# openfpgaloader: `wirebook hw flash`
OUT := out
PYTEST_ARGS ?=

.PHONY: test run install debian-packages lint bench bitstream lock clean

test: install debian-packages lint
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

run: install debian-packages
	$(BIN)/wirebook run --seconds 30 --workdir $(OUT)/run

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { \
		DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }

# The cffi extensions are built in place (editable install), so the build tools come from the lock too.
$(STAMP): pyproject.toml setup.py constraints.txt proto/itch_framer.c proto/itch_framer.h | $(BIN)/python
	$(PIP) install -q -c constraints.txt pip setuptools wheel cffi
	$(PIP) install -q -c constraints.txt --no-build-isolation -e '.[sim,hw,pynq,host,dev]'
	touch $@

# Debian packages the tests need, installed when missing (as root on a fresh machine).
debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/bench_model.py
	$(BIN)/python bench/bench_decode.py
	$(BIN)/python bench/bench_gateware.py
	$(BIN)/python bench/bench_components.py
	$(BIN)/python bench/bench_agent.py
	$(BIN)/python bench/bench_agent.py --stages
	$(BIN)/python bench/bench_dpdk.py
	$(BIN)/python bench/bench_sim_card.py
	$(BIN)/python bench/bench_cards.py
	$(BIN)/python bench/bench_boards.py --sweep

# A board's bitstream (ECP5 boards with YoWASP; the PYNQ-Z2 with Vivado, or its plan): make bitstream BOARD=NAME
BOARD ?= colorlight-5a75b
bitstream: install debian-packages
	$(BIN)/wirebook hw build --board $(BOARD)

# Re-pin every Python package after a dependency change in pyproject.toml.
lock: install
	{ head -2 constraints.txt; echo "pip==$$($(PIP) --version | cut -d' ' -f2)"; \
	  $(PIP) freeze --all --exclude-editable | grep -v -e '^-e' -e '^pip=='; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(OUT) build *.egg-info proto/*.so
