#!/usr/bin/env bash
# Lint, type-check and run the whole test suite against the real backends.
# In CI (CI=true) tests that need the stack or the databases fail instead of skipping.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${CI:-}" = "true" ]; then
  export VOXPULSE_REQUIRE_STACK=1 VOXPULSE_REQUIRE_DB=1
fi
if [ -f .voxpulse/services/env ]; then
  set -a; source .voxpulse/services/env; set +a
fi
status=0
.venv/bin/ruff check telemetry agent voxpulse_console tests bench grafana scripts || status=1
.venv/bin/mypy || status=1
.venv/bin/pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests" >&2
  rc=1
fi
[ $rc -ne 0 ] && status=$rc
exit $status
