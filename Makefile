# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
# The live parts (services, the stack with its LiveKit server, the agent worker, the callers, the
# tests and benchmarks that use them) run inside the media network namespace (scripts/netns.sh):
# the current one when it is not the host's, else the namespace $VOXPULSE_NETNS (default voxpulse).
# Downloads (bootstrap) happen outside it.
.PHONY: demo test bootstrap lint docs bench clean-state

SHELL := /bin/bash
VENV := .venv/bin
# The state folder of scripts/services.sh (services/) and of the native stack (stack/); exported so
# that every script and `voxpulse` command this Makefile runs uses the same one.
VOXPULSE_STATE_DIR ?= .voxpulse
export VOXPULSE_STATE_DIR
# Loads the env file scripts/services.sh writes (DATABASE_URL, REDIS_URL) into a recipe's shell.
LOAD_SERVICES_ENV := set -a; source "$$(bash scripts/services.sh env-path)"; set +a
NETNS := bash scripts/netns.sh exec --
LINT_PATHS := telemetry agent voxpulse_console tests bench grafana scripts

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	$(NETNS) bash -ec 'bash scripts/services.sh start; $(LOAD_SERVICES_ENV); $(VENV)/voxpulse demo'

test: bootstrap
	$(NETNS) bash -ec 'bash scripts/services.sh start; bash scripts/test.sh'

# The one definition of the static checks (scripts/test.sh runs it too): both run, either fails it.
lint:
	$(VENV)/ruff check $(LINT_PATHS); ruff=$$?; $(VENV)/mypy; mypy=$$?; exit $$((ruff || mypy))

docs:
	$(VENV)/python -m telemetry.semconv > docs/semantic-conventions.md
	$(VENV)/python -m telemetry._env > docs/configuration.md

bench: bootstrap bench/.venv-peers/installed
	$(NETNS) bash -ec 'bash scripts/services.sh start; $(LOAD_SERVICES_ENV); $(VENV)/python -m bench'

# the peers' own environment (bench/bench_peers.py): Logfire and Pipecat with their pinned resolve
bench/.venv-peers/installed: bench/requirements-peers.txt
	python3 -m venv bench/.venv-peers
	bench/.venv-peers/bin/pip install -q -r bench/requirements-peers.txt
	touch $@

clean-state:
	-$(NETNS) $(VENV)/voxpulse stack down
	-$(NETNS) bash scripts/services.sh stop
	rm -rf "$(VOXPULSE_STATE_DIR)"
