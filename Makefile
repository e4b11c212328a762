# Every target runs inside the project's own virtualenv (.venv), made by `make install`.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: install system-deps edge-deps proto proto-check migrate run test test-unit test-integration test-e2e fuzz lint bench drills api-docs clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Debian's Chromium (browser tests), docker-compose (compose file check) and the rest the
# tests need, when missing (scripts/system_deps.sh says what each is for).
system-deps:
	bash scripts/system_deps.sh

# HAProxy alone: the edge `make run` starts in front of loyalty.
edge-deps:
	bash scripts/system_deps.sh haproxy

# Generated code is committed (so a plain install needs no protoc); proto-check fails when stale.
proto: install
	rm -rf protogen
	$(PY) scripts/gen_protos.py .
	$(PY) scripts/gen_api_docs.py

proto-check: install
	$(PY) scripts/gen_protos.py --check
	$(PY) scripts/gen_api_docs.py --check

# docs/api.md's reference part, from protos/ and the reason tables.
api-docs: install
	$(PY) scripts/gen_api_docs.py

migrate: install
	$(PY) -m auth_service migrate
	$(PY) -m loyalty_service migrate

# `make run REPLICAS=2`: two auth and two loyalty processes (replica k on port + 10·k).
REPLICAS ?= 1
# `make run EDGE=off`: loyalty without HAProxy in front (docs/operations.md).
EDGE ?= on
run: install edge-deps migrate
	$(PY) -m common.processes.launcher --replicas $(REPLICAS) $(if $(filter off,$(EDGE)),--no-edge)

test: install system-deps proto-check lint
	$(PY) -m pytest -q tests

# The two fuzzers of make test, run far longer (about twenty minutes).
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-40000} SCHEMATHESIS_EXAMPLES=$${SCHEMATHESIS_EXAMPLES:-100} \
		$(PY) -m pytest -q -s tests/integration/test_grpc_fuzz.py tests/integration/test_gateway_schemathesis.py

test-unit: install
	$(PY) -m pytest -q tests/unit

test-integration: install
	$(PY) -m pytest -q tests/integration

test-e2e: install system-deps
	$(PY) -m pytest -q tests/e2e

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	$(VENV)/bin/lint-imports

bench: install system-deps
	$(PY) -m bench.run

# Restarts or stops the machine's PostgreSQL, Redis and RabbitMQ (and brings them back):
# run it when no one else's tests need them. About 2 minutes; see docs/operations.md.
drills: install system-deps
	$(PY) -m bench.drills

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
