#!/usr/bin/env bash
# Runs the CI command (`.ci/run`, i.e. `make test`) N times in a row, each on a fresh clone of this
# repository's HEAD, and writes what each run printed at its end to a log (default docs/test-runs.md).
#
#   bash scripts/repeat-ci.sh [N=3] [LOG]
#
# Each clone runs with its own state folder (PostgreSQL, Redis, the stack); what a run left running is
# stopped before the next one starts. Stops at the first red run (a flake is a red CI).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-3}
log=${2:-$root/docs/test-runs.md}
head=$(git -C "$root" rev-parse HEAD)
base=$(mktemp -d /tmp/voxpulse-ci.XXXXXX)
chmod 755 "$base"  # the services run as their own users (postgres): the clones must be reachable
{
  echo "# \`make test\` $n times in a row, each from a fresh clone"
  echo
  echo "Commit \`$head\`; machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo);"
  echo "written by \`scripts/repeat-ci.sh\` on $(date -u +%Y-%m-%dT%H:%MZ)."
  echo
  echo "| run | started (UTC) | wall | exit | pytest summary |"
  echo "|---|---|---|---|---|"
} >"$log.tmp"
status=0
for i in $(seq 1 "$n"); do
  dir="$base/run$i"
  git clone -q "$root" "$dir"
  start=$(date -u +%H:%M); t0=$(date +%s)
  (cd "$dir" && CI=true bash .ci/run) >"$base/run$i.log" 2>&1
  rc=$?
  t1=$(date +%s)
  (cd "$dir" && { .venv/bin/voxpulse stack down >/dev/null 2>&1; bash scripts/services.sh stop >/dev/null 2>&1; }) || true
  summary=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$base/run$i.log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
  echo "| $i | $start | $(( (t1 - t0) / 60 )) min $(( (t1 - t0) % 60 )) s | $rc | ${summary:-no pytest summary} |" >>"$log.tmp"
  if [ $rc -ne 0 ]; then
    status=$rc
    { echo; echo "Run $i failed; its last lines:"; echo; echo '```'; tail -n 40 "$base/run$i.log"; echo '```'; } >>"$log.tmp"
    break
  fi
  rm -rf "$dir"
done
mv "$log.tmp" "$log"
echo "logs: $base (run*.log); summary: $log" >&2
exit $status
