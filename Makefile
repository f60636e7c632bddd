# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
.PHONY: demo test bootstrap lint typecheck unit docs bench clean-state

SHELL := /bin/bash
VENV := .venv/bin

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	bash scripts/services.sh start
	set -a; source .voxpulse/services/env; set +a; $(VENV)/voxpulse demo

test: bootstrap
	bash scripts/services.sh start
	bash scripts/test.sh

lint:
	$(VENV)/ruff check telemetry agent voxpulse_console tests bench grafana scripts
	$(VENV)/mypy

docs:
	$(VENV)/python -m telemetry.semconv > docs/semantic-conventions.md
	$(VENV)/python -m telemetry._env > docs/configuration.md

bench: bootstrap
	bash scripts/services.sh start
	set -a; source .voxpulse/services/env; set +a; $(VENV)/python -m bench

clean-state:
	-$(VENV)/voxpulse stack down
	-bash scripts/services.sh stop
	rm -rf .voxpulse
