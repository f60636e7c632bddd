# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
# Everything listens on the host's loopback (the console, Prometheus, the collector's OTLP ports,
# PostgreSQL, Redis); only our LiveKit server, the demo's agent worker and the speaking callers run in
# the media namespace, which the stack makes without root (voxpulse_console/stack/_media.py).
# Root is needed once, for the Debian packages (bootstrap says which when they are missing).
.PHONY: demo test bootstrap lint docs bench clean-state

SHELL := /bin/bash
VENV := .venv/bin
# The state folder of scripts/services.sh (services/) and of the native stack (stack/); exported so
# that every script and `voxpulse` command this Makefile runs uses the same one.
VOXPULSE_STATE_DIR ?= .voxpulse
export VOXPULSE_STATE_DIR
# Loads the env file scripts/services.sh writes (DATABASE_URL, REDIS_URL) into a recipe's shell.
LOAD_SERVICES_ENV := set -a; source "$$(bash scripts/services.sh env-path)"; set +a
LINT_PATHS := telemetry agent voxpulse_console tests bench grafana scripts

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	bash -ec 'bash scripts/services.sh start; $(LOAD_SERVICES_ENV); $(VENV)/voxpulse demo'

test: bootstrap
	bash -ec 'bash scripts/services.sh start; bash scripts/test.sh'

# The one definition of the static checks (scripts/test.sh runs it too): both run, either fails it.
lint:
	$(VENV)/ruff check $(LINT_PATHS); ruff=$$?; $(VENV)/mypy; mypy=$$?; exit $$((ruff || mypy))

docs:
	$(VENV)/python -m telemetry.semconv > docs/semantic-conventions.md
	$(VENV)/python -m telemetry._env voxpulse_console.settings agent.settings > docs/configuration.md

bench: bootstrap bench/.venv-peers/installed
	bash -ec 'bash scripts/services.sh start; $(LOAD_SERVICES_ENV); $(VENV)/python -m bench'

# the peers' own environment (bench/bench_peers.py): Logfire and Pipecat with their pinned resolve
bench/.venv-peers/installed: bench/requirements-peers.txt
	python3 -m venv bench/.venv-peers
	bench/.venv-peers/bin/pip install -q -r bench/requirements-peers.txt
	touch $@

clean-state:
	-$(VENV)/voxpulse stack down
	-bash scripts/services.sh stop
	rm -rf "$(VOXPULSE_STATE_DIR)"
