#!/usr/bin/env bash
# Lint, type-check and run the whole test suite against the real backends.
# In CI (CI=true) tests that need the stack, the databases, the browser or the LiveKit server (with its
# media network namespace: `make test` runs this inside it) fail instead of skipping.
# Not `set -e`: every step runs (lint, then pytest), and the exit status says whether any failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${CI:-}" = "true" ]; then
  export VOXPULSE_REQUIRE_STACK=1 VOXPULSE_REQUIRE_DB=1 VOXPULSE_REQUIRE_BROWSER=1 VOXPULSE_REQUIRE_LIVEKIT=1
fi
envfile=$(bash scripts/services.sh env-path)  # under $VOXPULSE_STATE_DIR, as services.sh has it
if [ -f "$envfile" ]; then
  set -a; source "$envfile"; set +a
fi
status=0
make -s lint || status=1
.venv/bin/pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests" >&2
  rc=1
fi
[ $rc -ne 0 ] && status=$rc
exit $status
