# One entry point for users and developers. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COLLECTION_LINK := build/collections/ansible_collections/codacy/selfhosted
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/build/collections
export ANSIBLE_LOCALHOST_WARNING := False
export ANSIBLE_INVENTORY_UNPARSED_WARNING := False
PYTEST_ARGS ?=

.PHONY: help demo demo-clean bench molecule system venv venv-run collection test pytest unit integration lint sanity clean constraints

help:
	@echo "make demo         migrate sample data between two throwaway local servers (DEMO_SCALE_MB=100)"
	@echo "make demo-clean   stop the demo's servers and remove build/demo"
	@echo "make bench        the benchmark (BENCH_ARGS=\"--scale-mb 1000 --runs 3\"), see bench/README.md"
	@echo "make test         create .venv and run every test (what CI runs)"
	@echo "make unit         unit tests only"
	@echo "make integration  module tests against throwaway PostgreSQL servers"
	@echo "make lint         ruff, yamllint, ansible-lint, antsibull-changelog lint"
	@echo "make sanity       antsibull-docs lint and ansible-test sanity"
	@echo "make molecule     the Molecule scenarios against containers (docker and images included)"
	@echo "make clean        remove .venv, build/ and test output"

# The quick start installs only what running the collection needs (requirements-run.txt).
demo: venv-run collection
	$(BIN)/python -m demo.run

bench: system venv collection
	$(BIN)/python -m bench.run $(BENCH_ARGS)

demo-clean: venv-run
	$(BIN)/python -m demo.run clean

# PostgreSQL server/client programs and npm; installed when missing (as root), else explained.
system:
	tests/ensure_system.sh

# Two stamps in one virtualenv: .installed-run (ansible-core, psycopg2: enough to run the
# collection and the demo) and .installed (everything `make test` needs, which includes the first).
venv-run: $(VENV)/.installed-run

venv: $(VENV)/.installed

$(VENV)/.installed-run: requirements-run.txt requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-run.txt -c constraints.txt
	touch $@

$(VENV)/.installed: requirements-dev.txt requirements-run.txt requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@ $(VENV)/.installed-run

# The collection is loaded from the checkout through a symlink in a collections path.
collection: $(COLLECTION_LINK)

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

# The Molecule images (mostly downloads) and PostgreSQL's regression database (tests/support/regressdb.py,
# a compiler and pg_regress on the core that lint and sanity leave free) build while lint, sanity and
# pytest run; the test that needs the database waits for it. The scenarios start once all is done.
# docker and mmdebstrap are installed first, so that no two apt-get run at once.
test: system venv collection
	tests/containers/ensure_docker.sh
	mkdir -p build
	BUILD_JOBS=1 extensions/molecule/run.sh images > build/images.log 2>&1 & images=$$!; \
	$(BIN)/python -m tests.support.regressdb > build/regress-prebuild.log 2>&1 & regress=$$!; \
	$(MAKE) lint sanity pytest; tests=$$?; \
	wait $$regress; \
	wait $$images || { cat build/images.log; echo "make test: the Molecule images did not build (build/images.log)"; exit 1; }; \
	[ $$tests = 0 ] || exit $$tests; \
	SKIP_IMAGES=1 $(MAKE) molecule

# Three test files at a time (most tests wait on servers and clients), the slowest files first
# (by their measured total) so that none of them starts last; --no-loadscope-reorder keeps this
# order (xdist otherwise orders files by their number of tests). pytest collects each file once.
SLOW_FIRST := $(addprefix tests/integration/,test_module.py test_faults.py test_online.py test_role.py \
	test_gold_standard.py test_faults_processes.py test_interrupt.py test_fidelity.py test_safety.py \
	test_parallel_engine.py test_secrets.py test_fleet.py) tests/bench
pytest: system venv collection
	$(BIN)/pytest -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder --durations=40 $(SLOW_FIRST) tests/unit tests/integration $(PYTEST_ARGS)

unit: venv collection
	$(BIN)/pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

integration: system venv collection
	$(BIN)/pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)

lint: venv collection
	$(BIN)/ruff check plugins tests bench demo
	$(BIN)/yamllint -s .
	ANSIBLE_HOME=$(CURDIR)/build/ansible-lint-home $(BIN)/ansible-lint   # not ~/.ansible: it installs a copy there
	$(BIN)/antsibull-changelog lint

# Molecule scenarios against containers (docker, images and all: see extensions/molecule/README.md)
molecule: venv
	MOLECULE=$(abspath $(BIN))/molecule extensions/molecule/run.sh

# antsibull-docs lint and ansible-test sanity on what the collection ships (tests/sanity/run.sh)
sanity: venv
	BIN=$(BIN) tests/sanity/run.sh

constraints: venv
	$(BIN)/pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) build tests/output .pytest_cache
