#!/usr/bin/env bash
# The web console's frontend: `npm ci` in web/ (only when package-lock.json changed) and `npm run build`
# into voxpulse_console/ui/static (only when a source changed). Both keyed by content hashes, so a
# second run takes a fraction of a second. Needs Node.js >= 20.19 and npm (Vite 8); no network at run time.
#
#   scripts/build-web.sh [--force]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/web"
out="$root/voxpulse_console/ui/static"
log() { printf '[build-web] %s\n' "$*" >&2; }

command -v node >/dev/null && command -v npm >/dev/null \
  || { log "error: Node.js and npm are needed to build the console's frontend (web/)"; exit 1; }
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || { log "error: Node.js $(node --version) is too old for Vite 8 (need >= 20.19)"; exit 1; }

force=${1:-}
lock_hash=$(cat "$web/package.json" "$web/package-lock.json" | sha256sum | cut -c1-16)
if [ "$force" = --force ] || [ ! -f "$web/node_modules/.voxpulse-lock" ] \
    || [ "$(cat "$web/node_modules/.voxpulse-lock")" != "$lock_hash" ]; then
  log "npm ci (package-lock.json $lock_hash)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" >"$web/node_modules/.voxpulse-lock"
fi

src_hash=$( (cd "$web" && find index.html login.html vite.config.ts tsconfig.json src public -type f -print0 \
  | sort -z | xargs -0 sha256sum; echo "$lock_hash") | sha256sum | cut -c1-16)
if [ "$force" != --force ] && [ -f "$out/.build-stamp" ] && [ "$(cat "$out/.build-stamp")" = "$src_hash" ] \
    && [ -f "$out/index.html" ]; then
  log "frontend up to date ($src_hash)"
  exit 0
fi
log "building the frontend ($src_hash)"
(cd "$web" && npm run --silent build >/dev/null)
echo "$src_hash" >"$out/.build-stamp"
log "built into ${out#"$root"/}"
