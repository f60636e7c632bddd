#!/usr/bin/env bash
# Everything a fresh machine of this kind needs, idempotent and cached:
#   Python venv (.venv) with the project and its dev tools,
#   the collector, Jaeger (the native trace store), the LiveKit server and Grafana's dashboard linter
#   built from Go modules
#   (cached in ~/.cache/voxpulse; module checksums verified; the build fails when its Go module cache
#   holds a module of scripts/go-not-to-use.txt, e.g. AGPL Tempo, Grafana or Loki),
#   Prometheus, Alertmanager, PostgreSQL, Redis, espeak-ng and sox from Debian,
#   the web console's frontend (npm ci + build, cached by content hash) and Debian's Chromium for the
#   browser tests (Playwright drives it; a browser download is impossible here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[bootstrap] %s\n' "$*" >&2; }

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.voxpulse-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  log "installing the project and its dev tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  touch "$stamp"
fi

log "building or reusing the collector, Jaeger, the LiveKit server and the dashboard linter; installing Debian packages"
bash scripts/build-backends.sh

log "building or reusing the web console's frontend (web/)"
bash scripts/build-web.sh

# Debian's Chromium for the browser tests (scripts/debian.sh, with every other Debian package)
if [ "$(id -u)" = 0 ]; then
  bash scripts/debian.sh install browser
elif [ -n "$(bash scripts/debian.sh list browser)" ]; then
  log "chromium is missing: the browser tests need it (as root: bash scripts/debian.sh install browser)"
fi
