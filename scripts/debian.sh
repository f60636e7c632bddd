#!/usr/bin/env bash
# The Debian packages VoxPulse runs natively, installed in this one place.
#
#   scripts/debian.sh install [GROUP...]   install what is missing (default: every group), then stop
#                                         the system services the packages start
#   scripts/debian.sh stop-services        stop those system services (they would hold our ports)
#   scripts/debian.sh list [GROUP...]      print the packages that are missing
#
# Groups: services (PostgreSQL, Redis: scripts/services.sh), stack (Prometheus, promtool,
# Alertmanager, amtool, node_exporter, the blackbox exporter: scripts/build-backends.sh --only=debian), media (the real calls: espeak-ng
# speaks the callers' lines and the agent's answers in Ukrainian and Russian, sox resamples them to
# 48 kHz, iproute2's `ip` sets up the media namespace (voxpulse_console/stack/_media.py); also
# build-backends.sh --only=debian) and browser (Chromium for the web console's browser tests:
# scripts/bootstrap.sh). Those scripts call this one.
# A new package is one line of PACKAGES: its group, a shell test that is true when it is installed,
# and the Debian package names.
set -euo pipefail

log() { printf '[debian] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Tests that are more than one command (a check below holds no "|").
have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
have_alertmanager() { command -v prometheus-alertmanager || command -v alertmanager; }

PACKAGES=(
  # group    | installed when                                | packages
  "services  | have_postgres                                 | postgresql postgresql-client"
  "services  | command -v redis-server                       | redis-server"
  "services  | command -v redis-cli                          | redis-tools"
  "stack     | command -v prometheus && command -v promtool  | prometheus"
  "stack     | have_alertmanager                             | prometheus-alertmanager"
  "stack     | command -v prometheus-node-exporter           | prometheus-node-exporter"
  "stack     | command -v prometheus-blackbox-exporter       | prometheus-blackbox-exporter"
  "media     | command -v espeak-ng                        | espeak-ng"
  "media     | command -v sox                              | sox"
  "media     | command -v ip                               | iproute2"
  "media     | command -v unshare && command -v nsenter    | util-linux"
  "browser   | command -v chromium                           | chromium"
)
# The system services those packages start on install (our processes use their own data dirs).
SYSTEM_SERVICES=(postgresql redis-server prometheus prometheus-alertmanager prometheus-node-exporter
                 prometheus-blackbox-exporter)

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

missing() { # GROUP... -> the packages to install, one per line
  local line group check pkgs want g
  for line in "${PACKAGES[@]}"; do
    IFS='|' read -r group check pkgs <<<"$line"
    group=$(trim "$group"); check=$(trim "$check"); pkgs=$(trim "$pkgs")
    want=$#
    for g in "$@"; do [ "$g" = "$group" ] && want=0; done
    [ "$want" = 0 ] || continue
    eval "$check" >/dev/null 2>&1 || printf '%s\n' $pkgs
  done
}

stop_services() {
  local ver name svc
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | awk '$4=="online"{print $1, $2}' | while read -r ver name; do
      log "stopping Debian's PostgreSQL cluster $ver/$name"
      pg_ctlcluster "$ver" "$name" stop || true
    done
  fi
  for svc in "${SYSTEM_SERVICES[@]}"; do
    (service "$svc" stop || systemctl stop "$svc") >/dev/null 2>&1 || true
  done
}

install() {
  local pkgs
  mapfile -t pkgs < <(missing "$@")
  [ ${#pkgs[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${pkgs[*]}; run as root (or apt-get install them)"
  log "installing ${pkgs[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # another apt (unattended-upgrades, a second bootstrap) holding dpkg's lock: wait for it, not fail
  local wait=(-o DPkg::Lock::Timeout=600)
  apt-get "${wait[@]}" update -qq >/dev/null
  apt-get "${wait[@]}" install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  stop_services
}

cmd=${1:-install}
[ $# -gt 0 ] && shift
case "$cmd" in
  install) install "$@" ;;
  stop-services) stop_services ;;
  list) missing "$@" ;;
  *) echo "usage: $0 [install|stop-services|list] [services|stack|media|browser ...]" >&2; exit 2 ;;
esac
