# aegis-hidden: the two commands are `make demo` and `make test`.
# Both do their own set-up on a fresh Debian machine: system packages (tor,
# i2pd), a virtualenv in .venv/, and the package with its test extras.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.aegis-installed
JS_DIR := tests/integration/js
JS_STAMP := $(JS_DIR)/node_modules/.aegis-installed
DEMO_ARGS ?=
FUZZ_RUNS ?= 1000000
FUZZ_JOBS ?= 1

.PHONY: demo test setup system-packages i2pd-testnet lint typecheck unit integration proto docs clean
.PHONY: fuzz

demo: setup
	$(BIN)/aegis-hidden demo $(DEMO_ARGS)

test: setup lint typecheck unit integration

setup: system-packages i2pd-testnet $(STAMP) $(JS_STAMP)

system-packages:
	@bash .ci/system-packages.sh

# The private I2P test network needs i2pd with reservedrange.patch: built once per
# machine from Debian's source package into ~/.cache/aegis-hidden (a no-op after).
i2pd-testnet: system-packages
	@bash .ci/build-i2pd.sh >/dev/null

$(STAMP): pyproject.toml setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# compat editable mode keeps twisted/plugins visible to twistd (see README).
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	@touch $@

# The seed spec's JavaScript client (tests/unit/test_api_seed_client.py,
# tests/integration/test_seed_client.py) needs the `ws` package from the npm registry,
# at the version package-lock.json pins.
$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	npm ci --prefix $(JS_DIR) --no-audit --no-fund
	@touch $@

lint:
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

typecheck:
	$(BIN)/mypy aegis_hidden tests benchmarks twisted/plugins fuzz

# Unit tests: in memory, no daemons. Integration tests: real tor / i2pd on
# 127.0.0.1 in a separate pytest process (one reactor style per process).
unit:
	$(BIN)/python -m pytest tests/unit -q

# Where network namespaces can be made (root), the integration suite runs inside the
# leak trap (aegis-hidden audit sealed): loopback works as usual, every packet that
# tries to leave is captured, the count is printed ("0 packets tried to leave") and
# any at all fails the target. Elsewhere the suite runs without the trap, and says so.
integration:
	@if $(BIN)/aegis-hidden audit sealed --check >/dev/null 2>&1; then \
		echo "integration: running inside the leak trap (aegis-hidden audit sealed)"; \
		$(BIN)/aegis-hidden audit sealed -- $(BIN)/python -m pytest tests/integration -q -m integration; \
	else \
		$(BIN)/aegis-hidden audit sealed --check; \
		echo "integration: network namespaces are not allowed here: running WITHOUT the leak trap"; \
		$(BIN)/python -m pytest tests/integration -q -m integration; \
	fi

# The long fuzz campaign: every decoder, FUZZ_RUNS inputs each (atheris when it is
# installed, else a seeded random mutator); the bounded version runs in `unit`.
fuzz:
	$(BIN)/python -m fuzz.run --runs $(FUZZ_RUNS) --jobs $(FUZZ_JOBS)

proto:
	$(BIN)/python -m grpc_tools.protoc -I aegis_hidden/wire --python_out=aegis_hidden/wire \
		--pyi_out=aegis_hidden/wire aegis_hidden/wire/*.proto

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .demo

# Regenerate the configuration reference from the schema (tests check they match).
docs: setup
	$(BIN)/aegis-hidden config defaults --example > docs/aegis-hidden.example.yaml
	$(BIN)/python -c "import re,subprocess,pathlib; p=pathlib.Path('docs/configuration.md'); t=p.read_text(); s=t.index('| key | default | meaning |'); table=subprocess.run(['$(BIN)/aegis-hidden','config','defaults','--markdown'],capture_output=True,text=True,check=True).stdout; p.write_text(t[:s]+table)"
