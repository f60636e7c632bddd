#!/usr/bin/env bash
# PostgreSQL and Redis for development, tests and CI, run natively (no Docker) from Debian packages,
# by the native stack's supervisor (`voxpulse stack services`, voxpulse_console/stack/_services.py):
# each under a keeper that restarts it when it crashes, like every other component of the stack.
#
#   scripts/services.sh [start]        install when missing, start both (idempotent), write the env file
#   scripts/services.sh stop | status
#   scripts/services.sh stop-postgres | start-postgres | stop-redis | start-redis    (fault tests)
#   scripts/services.sh env            print the env file (DATABASE_URL=..., REDIS_URL=...)
#   scripts/services.sh env-path       print where the env file is
#
# State lives in the stack's state folder, ${VOXPULSE_STATE_DIR:-<repo>/.voxpulse}/stack (postgres/,
# redis/, services.env; $VOXPULSE_STACK_DIR when set). Ports: PGPORT and REDIS_PORT, both on 127.0.0.1
# only (defaults in voxpulse_console/stack/_services.py). Credentials: PGUSER (default voxpulse) and
# PGPASSWORD from the environment; when PGPASSWORD is not set a random password is generated once and
# kept in stack/postgres/password (mode 600, git-ignored). REDIS_PASSWORD, when set, becomes Redis'
# requirepass (in the mode-600 stack/redis/redis.conf, not on the command line). VOXPULSE_PG_FAST=1
# turns PostgreSQL's fsync off (throw-away CI). Debian packages: scripts/debian.sh.
# Source the env file to use them:  set -a; . "$(scripts/services.sh env-path)"; set +a
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${VOXPULSE_STATE_DIR:-$root/.voxpulse}
case "$state" in /*) ;; *) state="$root/$state" ;; esac
export VOXPULSE_STATE_DIR=$state
cmd=${1:-start}
case "$cmd" in
  start|stop|status|env|env-path|start-postgres|stop-postgres|start-redis|stop-redis) ;;
  *) echo "usage: $0 [start|stop|status|env|env-path|start-postgres|stop-postgres|start-redis|stop-redis]" >&2
     exit 2 ;;
esac
[ "$cmd" = start ] && bash "$root/scripts/debian.sh" install services
python=$root/.venv/bin/python
[ -x "$python" ] || python=python3
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m voxpulse_console.stack services "$cmd"
