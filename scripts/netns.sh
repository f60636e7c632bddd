#!/usr/bin/env bash
# The media network namespace: where LiveKit's server, the agent worker and the callers run.
#
# libwebrtc (the LiveKit rtc SDK of the agent and the callers) never offers loopback ICE
# candidates, so in a namespace with only `lo` calls cannot connect, and on the host's network
# the media would flow over the machine's own interface address. Every LiveKit media path of the
# tests, the demo and the benchmarks therefore runs inside a network namespace this script
# creates: `lo` up plus one veth end holding 198.18.0.1/32 (a benchmarking range, RFC 2544), with
# no route out. (`dummy` links are not available on every kernel; a veth pair always is.)
# The rest of the stack (collector, Prometheus, PostgreSQL, ...) runs in the same namespace, so
# everything talks over that namespace's loopback.
#
#   scripts/netns.sh exec [--] CMD...   run CMD in the media namespace:
#                                       - in the current namespace when it is not the host's (a
#                                         namespace you created for your work), after `setup`;
#                                       - else in the named namespace $VOXPULSE_NETNS (default
#                                         voxpulse), created when missing (needs root)
#   scripts/netns.sh setup              make the current (non-host) namespace a media namespace
#   scripts/netns.sh check              exit 0 when the current namespace is a media namespace
#   scripts/netns.sh delete             kill what runs in $VOXPULSE_NETNS and delete it
#
# Processes started in a namespace stay there; a later `exec` reaches them.
set -euo pipefail
NAME=${VOXPULSE_NETNS:-voxpulse}
ADDR=198.18.0.1
IF=lkv0
PEER=lkv1

log() { printf '[netns] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

in_host_ns() {
  # A namespace with a way out (a default route over an interface other than lo, IPv4 or IPv6)
  # is the machine's network as far as this project is concerned; a media namespace has none.
  awk 'NR > 1 && $2 == "00000000" && $8 == "00000000" { found = 1 } END { exit !found }' /proc/net/route ||
    awk '$1 == "00000000000000000000000000000000" && $2 == "00" && $10 != "lo" { found = 1 } END { exit !found }' \
      /proc/net/ipv6_route
}

has_media_addr() {
  ip -o -4 addr show dev "$IF" 2>/dev/null | grep -q " $ADDR/"
}

setup_here() {
  in_host_ns && die "refusing to add the media interface to the host's network namespace"
  ip link set lo up
  if ! ip link show "$IF" >/dev/null 2>&1; then
    ip link add "$IF" type veth peer name "$PEER"
  fi
  has_media_addr || ip addr add "$ADDR/32" dev "$IF"
  ip link set "$IF" up
  ip link set "$PEER" up
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup_here
    log "media namespace ready ($IF $ADDR)"
    ;;
  check)
    ! in_host_ns && has_media_addr
    ;;
  exec)
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: $0 exec [--] CMD..."
    if ! in_host_ns; then
      has_media_addr || setup_here
      exec "$@"
    fi
    [ "$(id -u)" = 0 ] || die "creating the network namespace $NAME needs root (or run inside a namespace of yours)"
    if ! ip netns list | grep -qw "^$NAME"; then
      log "creating network namespace $NAME"
      ip netns add "$NAME"
    fi
    ip netns exec "$NAME" bash "$0" setup 2>/dev/null
    exec ip netns exec "$NAME" "$@"
    ;;
  delete)
    if ip netns list | grep -qw "^$NAME"; then
      pids=$(ip netns pids "$NAME" || true)
      [ -n "$pids" ] && kill $pids 2>/dev/null || true
      ip netns delete "$NAME"
      log "deleted $NAME"
    fi
    ;;
  *)
    echo "usage: $0 exec [--] CMD... | setup | check | delete" >&2
    exit 2
    ;;
esac
