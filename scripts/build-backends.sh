#!/usr/bin/env bash
# Builds (or reuses) the native backends VoxPulse runs without Docker:
#   - the OpenTelemetry Collector, from otel-collector/builder-config.yaml with the Collector Builder;
#   - Grafana Tempo, from its Go module through a wrapper module that repeats its replace directives;
#   - Grafana's dashboard-linter, from its module with one file swapped (see below);
#   - the Docker Compose CLI plugin, from its Go module, when a Docker CLI without it is installed
#     (or with --with-compose): `docker compose config` needs no engine, and the tests run it;
# and installs Prometheus, promtool, Alertmanager and amtool from Debian when they are missing.
# Binaries are cached in $VOXPULSE_CACHE_DIR (default ~/.cache/voxpulse), keyed by the inputs' hash,
# so a second run (or a fresh clone on the same machine) takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${VOXPULSE_CACHE_DIR:-$HOME/.cache/voxpulse}
bin="$cache/bin"
mkdir -p "$bin" "$cache/build"
# shellcheck source=../tempo/build.env
source "$root/tempo/build.env"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
# Docker Compose v2.40.x is the newest line whose go.mod accepts Go 1.26.8 (v5.x asks for 1.26.10).
COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
with_compose=0
only=""
for arg in "$@"; do
  case "$arg" in
    --with-linter) ;;  # accepted for old callers: the linter is always built now
    --with-compose) with_compose=1 ;;
    --only=*) only=${arg#--only=} ;;
    *) echo "usage: $0 [--with-compose] [--only=otelcol|tempo|linter|compose|debian]" >&2; exit 2 ;;
  esac
done
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
log() { printf '[build-backends] %s\n' "$*" >&2; }
key() { cat "$@" | sha256sum | cut -c1-16; }

# Keep a binary under $bin/<name> pointing at $bin/<name>-<key>.
install_bin() { # name key src
  cp "$3" "$bin/$1-$2.tmp" && mv "$bin/$1-$2.tmp" "$bin/$1-$2"
  ln -sfn "$1-$2" "$bin/$1"
}

wrapper_build() { # name key module@version package replaces go-version ldflags
  local name=$1 k=$2 modver=$3 pkg=$4 replaces=$5 gover=$6 ldflags=$7
  local dir="$cache/build/$name-$k"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  printf 'module local/%sbuild\n\ngo %s\n' "$name" "$gover" >go.mod
  local r
  for r in $replaces; do go mod edit -replace="$r"; done
  # The checksum database reachable here has no entry for Tempo's pseudo-version nor for many of
  # its dependencies, so the wrapper builds trust the module proxy (GOSUMDB=off) and pin what it
  # served in the wrapper's go.sum. The collector build keeps the default verification.
  export GOSUMDB=${VOXPULSE_WRAPPER_GOSUMDB:-off}
  go get "$modver"
  go build -trimpath -ldflags "$ldflags" -o "$dir/$name" "$pkg"
  install_bin "$name" "$k" "$dir/$name"
  cd "$root" && rm -rf "$dir"
}

# A writable copy of a module's source in a fresh build dir, to build it as the main module
# (so its own go.mod directives apply: `go install pkg@version` refuses replace/exclude).
module_copy() { # module@version dir
  local src
  src=$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$src" ] || { log "go mod download $1 failed"; return 1; }
  rm -rf "$2" && mkdir -p "$2" && cp -r "$src/." "$2/" && chmod -R u+w "$2"
}

if want otelcol; then
  k=$(key "$root/otel-collector/builder-config.yaml" "$root/tempo/build.env")
  if [ -x "$bin/otelcol-$k" ]; then
    ln -sfn "otelcol-$k" "$bin/otelcol"; log "collector: cached ($k)"
  else
    log "collector: building with builder v$BUILDER_VERSION (several minutes on 2 cores)"
    [ -x "$cache/tools/builder-$BUILDER_VERSION" ] || {
      GOBIN="$cache/tools/tmp" go install "go.opentelemetry.io/collector/cmd/builder@v$BUILDER_VERSION"
      mv "$cache/tools/tmp/builder" "$cache/tools/builder-$BUILDER_VERSION"; }
    dir="$cache/build/otelcol-$k"; rm -rf "$dir"; mkdir -p "$dir"
    sed "s#output_path: .*#output_path: $dir#" "$root/otel-collector/builder-config.yaml" >"$dir/manifest.yaml"
    "$cache/tools/builder-$BUILDER_VERSION" --config "$dir/manifest.yaml"
    install_bin otelcol "$k" "$dir/voxpulse-otelcol"; rm -rf "$dir"
  fi
fi

if want tempo; then
  k=$(key "$root/tempo/build.env")
  if [ -x "$bin/tempo-$k" ]; then
    ln -sfn "tempo-$k" "$bin/tempo"; log "tempo: cached ($k)"
  else
    log "tempo: building $TEMPO_VERSION ($TEMPO_MODULE_VERSION) from its Go module (several minutes)"
    wrapper_build tempo "$k" "github.com/grafana/tempo@$TEMPO_MODULE_VERSION" github.com/grafana/tempo/cmd/tempo \
      "$TEMPO_REPLACES" "$TEMPO_GO" "-s -w -X main.Version=$TEMPO_VERSION -X main.Revision=${TEMPO_MODULE_VERSION##*-}"
  fi
fi

# Grafana's dashboard-linter v0.2.0 (the only version the proxy serves) imports
# github.com/grafana/grafana/apps/dashboard for one file, lint/v2.go (v2 dashboard schema), and the
# proxy refuses that module's version (403). Build the linter's own module with that file replaced
# by grafana/linter/v2.go (every rule kept; v2 dashboards reported as unsupported; VoxPulse's are v1).
if want linter; then
  k=$(key "$root/tempo/build.env" "$root/grafana/linter/v2.go")
  if [ -x "$bin/dashboard-linter-$k" ]; then
    ln -sfn "dashboard-linter-$k" "$bin/dashboard-linter"; log "dashboard-linter: cached ($k)"
  else
    log "dashboard-linter: building $DASHBOARD_LINTER_VERSION (about 3 min)"
    export GOSUMDB=${VOXPULSE_WRAPPER_GOSUMDB:-off}
    dir="$cache/build/dashboard-linter-$k"
    module_copy "github.com/grafana/dashboard-linter@$DASHBOARD_LINTER_VERSION" "$dir"
    cp "$root/grafana/linter/v2.go" "$dir/lint/v2.go"; rm -f "$dir/lint/v2_test.go"
    (cd "$dir" && go mod edit -droprequire=github.com/grafana/grafana/apps/dashboard &&
      for r in $DASHBOARD_LINTER_REPLACES; do go mod edit -replace="$r"; done &&
      go build -trimpath -ldflags "-s -w" -o "$dir/dashboard-linter" .)
    install_bin dashboard-linter "$k" "$dir/dashboard-linter"; rm -rf "$dir"
  fi
fi

# The compose plugin is built when asked, or when a Docker CLI lacks it (tests run `docker compose config`).
need_compose() {
  [ $with_compose = 1 ] || [ "$only" = compose ] || [ -x "$bin/docker-compose" ] ||
    { command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; }
}
if want compose && need_compose; then
  k=$(printf '%s' "$COMPOSE_VERSION" | key /dev/stdin)
  if [ ! -x "$bin/docker-compose-$k" ]; then
    log "docker compose: building $COMPOSE_VERSION"
    # compose's go.mod has exclude directives, so `go install pkg@version` refuses it: build the
    # downloaded module as the main module instead.
    dir="$cache/build/compose-$k"
    module_copy "github.com/docker/compose/v2@$COMPOSE_VERSION" "$dir"
    (cd "$dir" && go build -trimpath -o "$dir/docker-compose" \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd)
    install_bin docker-compose "$k" "$dir/docker-compose"; rm -rf "$dir"
  else
    ln -sfn "docker-compose-$k" "$bin/docker-compose"; log "docker compose: cached ($k)"
  fi
  # make it a Docker CLI plugin (`docker compose ...`) unless one is installed already
  if ! docker compose version >/dev/null 2>&1; then
    mkdir -p "$HOME/.docker/cli-plugins" && ln -sfn "$bin/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
  fi
fi

if want debian; then
  missing=()
  command -v prometheus >/dev/null || missing+=(prometheus)
  # Debian names the binary prometheus-alertmanager
  command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v pg_ctlcluster >/dev/null || [ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing from Debian: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Debian's packages start system services we do not use; stop them so they do not hold our ports.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter redis-server postgresql; do
    service "$svc" stop >/dev/null 2>&1 || true
  done
fi
log "binaries in $bin"
