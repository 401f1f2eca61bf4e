# The two commands a newcomer needs are `make demo` and `make test`; each installs what it
# needs first. Everything generated goes under build/ (and cargo's target/).

SHELL := /bin/bash
CHARMS := keepalived-vip maas-rack maas-region postgresql-ha
BUILD := build
VENV := $(BUILD)/venv
CARGO ?= cargo
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
# Debian packages the tests and the local model use: the real daemons the charms drive, and
# the tools the test bed needs inside its hosts. nginx and its stream module: the MAAS stand-in
# runs Debian's nginx on 5240/5443 and 5242 as MAAS does (tests/maas-standin/src/nginx.rs).
# pgbackrest and prometheus-postgres-exporter: postgresql-ha installs them in its hosts; s3cmd:
# maas-region does, for its backups.
APT_PACKAGES := postgresql etcd-server etcd-client keepalived haproxy python3-venv psmisc iproute2 curl zip unzip util-linux procps libssl-dev pkg-config prometheus nginx libnginx-mod-stream pgbackrest prometheus-postgres-exporter s3cmd
CHARM_FILES := $(CHARMS:%=$(BUILD)/%.charm)
# pip's cache off for every pip call: a wheel cached by earlier work must not hide a build step
# that fails on a new machine (python-etcd and ydiff are sdists that need building).
export PIP_NO_CACHE_DIR := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all deps build catalog charms testcharms check-charms check-bundle check-wheelhouse check-cos-agent check-data-interfaces check-snap-library check-rules test unit-test demo bench lint clean

all: charms

## deps: Debian packages, cargo, a Python venv with charmcraft and ops, and the Patroni
## wheelhouse the local model attaches to postgresql-ha (its hosts have no internet), when missing.
deps: $(BUILD)/.apt-stamp $(VENV)/.stamp $(VENV)/.cos-stamp $(BUILD)/wheelhouse.tar.gz
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs) and retry"; exit 1; }

# Re-checked when this file changes (a package added to the list is installed on machines that
# had the stamp already).
$(BUILD)/.apt-stamp: Makefile
	@mkdir -p $(BUILD)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

$(VENV)/.stamp:
	@mkdir -p $(BUILD)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check charmcraft ops
	@touch $@

# cosl and Canonical's cos_agent charm library, to check charm-lib's cos_agent writer against
# (check-cos-agent). No PyPI package ships the library alone: opensearch-charms-single-kernel
# 2.0.3 carries it unchanged in lib/ (LIBPATCH 25, whose provider side LIBPATCH 26 keeps), so
# it comes without its own dependencies; the library needs only cosl, pydantic and ops.
COSL := cosl==1.11.3
COS_AGENT_CARRIER := opensearch-charms-single-kernel==2.0.3
$(VENV)/.cos-stamp: $(VENV)/.stamp
	$(VENV)/bin/pip install -q "$(COSL)" pydantic
	$(VENV)/bin/pip install -q --no-deps "$(COS_AGENT_CARRIER)"
	@touch $@

## check-rules: every charm's Prometheus alert rules are valid, each alert has a promtool unit
## test (an alertname in the charm's tests/alert_rules/*_test.yaml), and the tests pass
## (promtool from Debian's prometheus package).
RULE_FILES := $(wildcard charms/*/src/prometheus_alert_rules/*.rules)
RULE_TESTS := $(wildcard charms/*/tests/alert_rules/*_test.yaml)
check-rules: $(BUILD)/.apt-stamp
	promtool check rules $(RULE_FILES)
	@for f in $(RULE_FILES); do \
		charm=$${f%%/src/*}; \
		for a in $$(sed -n 's/^ *- alert: *//p' "$$f"); do \
			grep -qs "alertname: $$a\b" $$charm/tests/alert_rules/*_test.yaml || { echo "check-rules: $$a ($$f) has no promtool test in $$charm/tests/alert_rules"; exit 1; }; \
		done; \
	done
	promtool test rules $(RULE_TESTS)

## check-cos-agent: what charm-lib writes on cos-agent is what Canonical's library writes for the
## same files and inputs, and its requirer (the collector's side) reads it back.
check-cos-agent: $(VENV)/.cos-stamp
	COS_AGENT_PYTHON=$(abspath $(VENV))/bin/python $(CARGO) test -q -p charm-lib --test cos_agent_library -- --ignored

## check-data-interfaces: postgresql-ha's data_interfaces v1 answer is what Canonical's v1
## requirer (PyPI dpcharmlibs-interfaces) takes: its request through the charm's hook and back.
## Its own venv, with the pins of the v1 test charm (the shared venv's ops and pydantic follow
## charmcraft).
DPV1_VENV := $(BUILD)/dpv1-venv
DPV1_REQUIREMENTS := tests/e2e/testcharms/database-requirer-v1-ops/requirements.txt
$(DPV1_VENV)/.stamp: $(DPV1_REQUIREMENTS)
	rm -rf $(DPV1_VENV) && $(HOST_PYTHON) -m venv $(DPV1_VENV)
	$(DPV1_VENV)/bin/pip install -q -r $(DPV1_REQUIREMENTS)
	@touch $@
check-data-interfaces: $(DPV1_VENV)/.stamp
	DATA_INTERFACES_PYTHON=$(abspath $(DPV1_VENV))/bin/python $(CARGO) test -q -p postgresql-ha --test data_interfaces_v1_library -- --ignored

## check-snap-library: Canonical's snap library (PyPI's charmlibs-snap, the SnapCache API of
## operator_libs_linux.v2.snap) in a host, against its snapd API socket and `snap` (root). Its own
## venv of the hosts' Python, pinned; hosts see the machine's build/ (only /tmp is theirs
## alone), so the test runs this venv's interpreter inside the host.
SNAPLIB_VENV := $(BUILD)/snaplib-venv
SNAPLIB_REQUIREMENTS := tests/hosts/tests/snap_library/requirements.txt
$(SNAPLIB_VENV)/.stamp: $(SNAPLIB_REQUIREMENTS)
	rm -rf $(SNAPLIB_VENV) && $(HOST_PYTHON) -m venv $(SNAPLIB_VENV)
	$(SNAPLIB_VENV)/bin/pip install -q -r $(SNAPLIB_REQUIREMENTS)
	@touch $@
check-snap-library: $(SNAPLIB_VENV)/.stamp
	SNAP_LIBRARY_PYTHON=$(abspath $(SNAPLIB_VENV))/bin/python $(CARGO) test -q -p hosts --test snap_library

# Wheels (sdists built into wheels, so installing needs no build tools) for the hosts' Python,
# as an air-gapped site would attach them. Built with the hosts' own interpreter
# (/usr/bin/python3, what the charm's virtualenv uses), not whichever python3 is first on PATH.
# PATRONI_VERSION is postgresql-ha's default patroni-version; PATRONI_PREVIOUS is an older
# Patroni 4 release the upgrade drill (tests/e2e/tests/pg_upgrade.rs) deploys first and rolls
# from. pip resolves one version of a package per run: two runs into the same directory.
PATRONI_VERSION := 4.1.5
PATRONI_PREVIOUS := 4.1.4
PATRONI := patroni[etcd3]==$(PATRONI_VERSION)
HOST_PYTHON := /usr/bin/python3
# $(call build_wheels,VENV,OUT): a fresh venv of the hosts' Python, the wheels into OUT.
build_wheels = $(HOST_PYTHON) -m venv $(1) && $(1)/bin/pip wheel -q --use-pep517 -w $(2) "$(PATRONI)" psycopg2-binary && \
	$(1)/bin/pip wheel -q --use-pep517 -w $(2) "patroni[etcd3]==$(PATRONI_PREVIOUS)"
# Renamed into place: a drill running meanwhile never reads half a tarball.
$(BUILD)/wheelhouse.tar.gz: $(BUILD)/.apt-stamp
	rm -rf $(BUILD)/wheelhouse $(BUILD)/wheel-venv
	$(call build_wheels,$(BUILD)/wheel-venv,$(BUILD)/wheelhouse)
	tar -C $(BUILD)/wheelhouse -czf $@.tmp . && mv $@.tmp $@

## check-wheelhouse: the wheelhouse builds from nothing, as on a new machine: a fresh directory,
## a fresh venv, pip's cache and config off (a wheel cached by earlier work must not hide a build
## that fails), and every wheel Patroni needs is there, sdists built.
check-wheelhouse: $(BUILD)/.apt-stamp
	@d=$$(mktemp -d /tmp/check-wheelhouse.XXXXXX) && trap 'rm -rf "$$d"' EXIT && \
	export PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 && \
	$(call build_wheels,$$d/venv,$$d/wheels) && \
	for w in patroni-$(PATRONI_VERSION) patroni-$(PATRONI_PREVIOUS) python_etcd ydiff psycopg2_binary; do \
		ls "$$d/wheels" | grep -qi "^$$w-.*\.whl$$" || { echo "check-wheelhouse: no $$w wheel in:" $$(ls "$$d/wheels"); exit 1; }; \
	done && \
	echo "check-wheelhouse: $$(ls "$$d/wheels" | wc -l) wheels built from scratch with pip's cache off"

## testcharms: the end-to-end tests' Python charms, packed as charmcraft packs them: the charm's
## lib/ (charm libraries, unchanged) and its PyPI packages installed into venv/ from wheels built
## with the hosts' Python (the hosts have no internet), pip's cache off.
TESTCHARM_NAMES := database-requirer-ops database-requirer-v1-ops site-ca-ops s3-provider-ops cos-collector-ops prometheus-ops
TESTCHARMS := $(TESTCHARM_NAMES:%=$(BUILD)/testcharms/%.charm)
testcharms: $(TESTCHARMS)

# $(1): the test charm's name (its directory under tests/e2e/testcharms).
define TESTCHARM_RULE
$(BUILD)/testcharms/$(1).charm: $(BUILD)/.apt-stamp $(shell find tests/e2e/testcharms/$(1) -type f)
	@d=$(BUILD)/testcharms/$(1).d && rm -rf "$$$$d" $$@ && mkdir -p "$$$$d/charm" && \
	$(HOST_PYTHON) -m venv "$$$$d/wheel-venv" && \
	"$$$$d/wheel-venv/bin/pip" wheel -q --use-pep517 -w "$$$$d/wheels" -r tests/e2e/testcharms/$(1)/requirements.txt && \
	"$$$$d/wheel-venv/bin/pip" install -q --no-index --find-links "$$$$d/wheels" --target "$$$$d/charm/venv" -r tests/e2e/testcharms/$(1)/requirements.txt && \
	cp -r tests/e2e/testcharms/$(1)/. "$$$$d/charm/" && rm "$$$$d/charm/requirements.txt" && \
	(cd "$$$$d/charm" && zip -qr ../../$(1).charm . -x '*/__pycache__/*') && \
	echo "packed $$@ ($$$$(ls "$$$$d/wheels" | wc -l) wheels into venv/)"
endef
$(foreach c,$(TESTCHARM_NAMES),$(eval $(call TESTCHARM_RULE,$(c))))

build:
	$(CARGO) build --workspace --all-features

## charms: build/<name>.charm for each charm, the binary built with the size-optimised profile.
charms: $(CHARM_FILES)

$(BUILD)/charm-pack: FORCE
	@$(CARGO) build -q -p charm-lib --features pack --bin charm-pack
	@mkdir -p $(BUILD) && cp target/debug/charm-pack $@

$(BUILD)/%.charm: $(BUILD)/charm-pack FORCE
	$(CARGO) build -q -p $* --profile charm
	$(BUILD)/charm-pack pack --charm-dir charms/$* --binary target/charm/$* --license LICENSE --version "$(VERSION)" --out $@

FORCE:

## check-charms: what Juju requires of each .charm, then charmcraft's own linters.
check-charms: charms $(VENV)/.stamp
	$(BUILD)/charm-pack check $(CHARM_FILES)
	cd $(BUILD) && ../$(VENV)/bin/python ../tests/scripts/charmcraft-analyse.py ../$(VENV)/bin/charmcraft $(CHARMS:%=%.charm)

## check-bundle: the bundle and its overlays against the packed charms.
check-bundle: charms
	$(BUILD)/charm-pack check-bundle bundles/maas-ha.yaml --overlay bundles/overlays/example-site.yaml
	$(BUILD)/charm-pack check-bundle bundles/maas-ha.yaml --overlay bundles/overlays/local-model.yaml

## catalog: the MAAS stand-in as packages the local model's apt-get and snap install.
catalog:
	$(CARGO) build -q -p maas-standin -p local-model
	target/debug/maas-standin catalog --out $(BUILD)/catalog --binary $(abspath target/debug/maas-standin)

## unit-test: every crate's tests; the end-to-end ones (tests/e2e, as root) use the packed
## charms, the catalog and the wheelhouse, so those come first.
unit-test: charms catalog testcharms
	# host-runtime next to lm, where the local model looks for it: without it the namespaced
	# local-model tests each build their own copy at once, and one ran before it existed.
	$(CARGO) build -q -p hosts --bins
	$(CARGO) test --workspace --all-features --no-fail-fast --exclude e2e --exclude hosts
	$(CARGO) test -p hosts --no-fail-fast
	$(CARGO) test -p e2e --no-fail-fast

## test: everything CI runs.
test: deps check-rules unit-test check-cos-agent check-data-interfaces check-snap-library check-charms check-bundle check-wheelhouse

## demo: builds and packs the charms, deploys the bundle with the local-model overlay into the
## local model (build/local-model, as root), shows it settle, prints the status and the URL, takes
## the region VIP holder's host down under requests, with a real Prometheus (the test charms) printing
## the alerts that fire meanwhile, and leaves the model up (`lm destroy` ends it).
demo: deps charms catalog testcharms check-bundle
	$(CARGO) build -q -p local-model -p e2e -p hosts --bins
	target/debug/demo

## bench: tables of hook wall time, peak RSS and packed size vs a Python ops baseline; then (root)
## the bundle in the local model: deploy to settled, drills, busiest hooks, add-unit 2 -> 5 regions;
## the MAAS channel upgrade and Patroni's rolling upgrade under traffic through both VIPs.
OPS_CHARM := $(BUILD)/bench/ops-charm
bench: deps charms catalog
	$(CARGO) build -q -p bench --profile charm --bin bench-charm
	$(CARGO) build -q -p bench --release --bin bench
	$(BUILD)/charm-pack pack --charm-dir tests/bench/rust-charm --binary target/charm/bench-charm --license LICENSE --version "$(VERSION)" --out $(BUILD)/bench/bench-charm.charm
	@if [ ! -f $(OPS_CHARM)/.stamp ]; then \
		rm -rf $(OPS_CHARM) && mkdir -p $(OPS_CHARM) && cp -r tests/bench/ops-charm/. $(OPS_CHARM)/ && \
		$(VENV)/bin/pip install -q --disable-pip-version-check --target $(OPS_CHARM)/venv ops && touch $(OPS_CHARM)/.stamp; \
	fi
	rm -f $(BUILD)/bench/bench-ops-charm.charm && cd $(OPS_CHARM) && zip -qr ../bench-ops-charm.charm . -x .stamp '.unit-state.db'
	target/release/bench --runs 30
	$(CARGO) build -q -p local-model -p e2e -p hosts --bins
	@if [ "$$(id -u)" = 0 ]; then target/debug/bench-bundle; else echo "(the bundle part of the bench needs root: skipped)"; fi
	@if [ "$$(id -u)" = 0 ]; then target/debug/bench-vip --runs 5; else echo "(the VIP failover part of the bench needs root: skipped)"; fi
	@if [ "$$(id -u)" = 0 ]; then target/debug/bench-pg; else echo "(the PostgreSQL drills part of the bench needs root: skipped)"; fi
	@if [ "$$(id -u)" = 0 ]; then target/debug/bench-upgrade; else echo "(the upgrades-under-traffic part of the bench needs root: skipped)"; fi
	$(CARGO) build -q -p local-model -p hosts --release --bins
	$(CARGO) run -q -p local-model --release --example bench

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-features -- -D warnings

clean:
	rm -rf $(BUILD) target
