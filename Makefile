# Entry points. Each target bootstraps what it needs first; scripts/bootstrap.sh takes
# a second when there is nothing to do. Works on a fresh Debian 12 machine as root.
#
#   make demo        the main demo on the embedded demo fleet
#   make test        every test: unit, integration, molecule (podman), ansible-lint, ansible-test sanity
#
# PYTEST_ARGS passes extra pytest arguments, e.g. make test PYTEST_ARGS='-m "not molecule" -x'.
# DEMO_ARGS passes extra arguments to the demo, e.g. make demo DEMO_ARGS=--quiet (see esd demo --help).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: help bootstrap demo test test-fast lint sanity molecule test-image bench clean

help:
	@echo "make demo        run the main demo (bootstraps the venv first)"
	@echo "make test        run every test (bootstraps packages, venv and the podman test image)"
	@echo "make test-fast   unit and integration tests only (no podman, no lint/sanity)"
	@echo "make lint        ansible-lint, production profile"
	@echo "make sanity      ansible-test sanity on the esd.osp collection"
	@echo "make molecule    every molecule scenario (molecule test --all)"
	@echo "make test-image  build the podman test image localhost/esd-debian12:latest"
	@echo "make bench       the benchmarks (bench/run; BENCH_ARGS=--quick for small sizes)"
	@echo "make bootstrap   only create/update .venv"

bootstrap:
	scripts/bootstrap.sh

demo:
	scripts/demo.sh $(DEMO_ARGS)

# pytest exits 5 when it collected nothing: a test run that ran no test is a failure.
# --durations lists the slowest tests: the place to look when CI gets near its time limit.
define run_pytest
	source scripts/env.sh; \
	rc=0; pytest -ra --durations=15 $(1) || rc=$$?; \
	if [[ $$rc == 5 ]]; then echo "make: pytest collected no tests, which counts as a failure" >&2; exit 1; fi; \
	exit $$rc
endef

test:
	scripts/bootstrap.sh --test
	$(call run_pytest,$(PYTEST_ARGS))

test-fast:
	scripts/bootstrap.sh
	$(call run_pytest,-m 'not molecule and not quality' $(PYTEST_ARGS))

lint:
	scripts/bootstrap.sh
	source scripts/env.sh; ansible-lint --profile production

sanity:
	scripts/bootstrap.sh
	scripts/ansible-test-sanity.sh

molecule:
	scripts/bootstrap.sh --test
	source scripts/env.sh; molecule test --all

test-image:
	scripts/bootstrap.sh --test

bench:
	scripts/bootstrap.sh
	source scripts/env.sh; bench/run $(BENCH_ARGS)

# Leaves .venv and the podman images alone (rm -rf .venv / podman rmi to reset those).
clean:
	rm -rf .pytest_cache collections/ansible_collections/esd/osp/tests/output
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
