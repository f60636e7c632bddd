#!/usr/bin/env bash
# Builds (or reuses) the native backends VoxPulse runs without Docker:
#   - the OpenTelemetry Collector, from otel-collector/builder-config.yaml with the Collector Builder;
#   - Jaeger v2, the trace store (Apache-2.0), built as the main module from its Go module;
#   - Grafana's dashboard-linter, from its module with one file swapped (see below);
#   - LiveKit's media server (livekit-server), from its Go module with a plain `go install`;
#   - telemetrygen, the OpenTelemetry load generator (bench/bench_scaling.py), from its module;
#   - voxpulse-s3, the S3-compatible server of the insights receiver's S3 tests (s3server/: gofakes3, MIT);
#   - voxpulse-cassandra, Apache Cassandra from Maven Central: the scale-out trace store option;
#   - the Docker Compose CLI plugin, from its Go module, when a Docker CLI without it is installed
#     (or with --with-compose): `docker compose config` needs no engine, and the tests run it;
# and installs Prometheus, promtool, Alertmanager and amtool (and scripts/services.sh's PostgreSQL and
# Redis, and the real calls' espeak-ng, sox and iproute2) from Debian when they are missing, through
# scripts/debian.sh.
#
# Versions: scripts/versions.env (the one place they are pinned).
# Binaries are cached in $VOXPULSE_CACHE_DIR (default ~/.cache/voxpulse), keyed by the hash of their
# inputs, so a second run (or a fresh clone on the same machine) takes seconds.
# Go modules go into a module cache of their own, $VOXPULSE_GOMODCACHE (default
# $VOXPULSE_CACHE_DIR/go/mod), so that what these builds fetched can be checked: the last step
# fails when it holds a module that scripts/go-not-to-use.txt lists (Tempo, Grafana, Loki: AGPL).
# Every module is verified against the checksum database (GOSUMDB is left at its default; the
# script refuses to build with GOSUMDB=off).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${VOXPULSE_CACHE_DIR:-$HOME/.cache/voxpulse}
bin="$cache/bin"
mkdir -p "$bin" "$cache/build"
# shellcheck source=versions.env
source "$root/scripts/versions.env"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
export GOMODCACHE=${VOXPULSE_GOMODCACHE:-$cache/go/mod}
with_compose=0
only=""
for arg in "$@"; do
  case "$arg" in
    --with-linter) ;;  # accepted for old callers: the linter is always built now
    --with-compose) with_compose=1 ;;
    --only=*) only=${arg#--only=} ;;
    *) echo "usage: $0 [--with-compose] [--only=otelcol|jaeger|livekit|linter|telemetrygen|s3server|cassandra|compose|licences|debian]" >&2
       exit 2 ;;
  esac
done
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
log() { printf '[build-backends] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# key FILE... : a short hash of the files' contents (use <(printf ...) for values)
key() { cat "$@" | sha256sum | cut -c1-16; }

go_build_env_ok() {
  command -v go >/dev/null || die "go not found (Go 1.26 is needed to build the backends)"
  [ "$(go env GOSUMDB)" != off ] || die "GOSUMDB=off: module checksums must be verified; unset GOSUMDB"
  [ -z "$(go env GONOSUMDB)" ] && [ -z "$(go env GONOSUMCHECK)" ] && [ -z "$(go env GOINSECURE)" ] ||
    die "GONOSUMDB/GONOSUMCHECK/GOINSECURE set: module checksums must be verified; unset them"
}

# Keep a binary under $bin/<name> pointing at $bin/<name>-<key>.
install_bin() { # name key src
  cp "$3" "$bin/$1-$2.tmp" && mv "$bin/$1-$2.tmp" "$bin/$1-$2"
  ln -sfn "$1-$2" "$bin/$1"
}

cached() { # name key: link and say so when built already
  if [ -x "$bin/$1-$2" ]; then
    ln -sfn "$1-$2" "$bin/$1"; log "$1: cached ($2)"; return 0
  fi
  return 1
}

# A writable copy of a module's source in a fresh build dir, to build it as the main module
# (so its own go.mod directives apply: `go install pkg@version` refuses replace/exclude).
module_copy() { # module@version dir
  local src
  src=$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$src" ] || { log "go mod download $1 failed"; return 1; }
  rm -rf "$2" && mkdir -p "$2" && cp -r "$src/." "$2/" && chmod -R u+w "$2"
}

# Fails when the module cache holds a module that scripts/go-not-to-use.txt lists (the path itself
# or a module below it), unless a "!path" line allows it. Prints the offending modules.
check_licences() { # module-cache
  local dl="$1/cache/download" list="$root/scripts/go-not-to-use.txt" bad
  [ -d "$dl" ] || { log "licences: no module cache at $1 (nothing fetched yet)"; return 0; }
  # every folder holding an @v/ is a module path; the cache writes upper-case letters as !lower
  bad=$(cd "$dl" && find . -path ./sumdb -prune -o -type d -name '@v' -print |
    sed 's#^\./##; s#/@v$##; s/!\([a-z]\)/\U\1/g' | sort -u |
    awk -v list="$list" '
      BEGIN { while ((getline line < list) > 0) {
                if (line ~ /^[[:space:]]*(#|$)/) continue
                if (line ~ /^!/) allow[substr(line, 2)] = 1; else deny[line] = 1 } }
      function under(m, p) { return m == p || index(m, p "/") == 1 }
      { hit = 0; for (p in deny) if (under($0, p)) hit = 1
        for (p in allow) if (under($0, p)) hit = 0
        if (hit) print }')
  if [ -n "$bad" ]; then
    log "licences: the Go module cache $1 holds modules that must not be used (scripts/go-not-to-use.txt):"
    printf '  %s\n' $bad >&2
    return 1
  fi
  log "licences: no module of scripts/go-not-to-use.txt in $1"
}

if want otelcol; then
  k=$(key "$root/otel-collector/builder-config.yaml" <(printf 'builder %s\n' "$BUILDER_VERSION"))
  if ! cached otelcol "$k"; then
    go_build_env_ok
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

# Jaeger's go.mod has a replace directive, so `go install pkg@version` refuses it: build the
# downloaded module as the main module, with its own go.mod and go.sum.
if want jaeger; then
  recipe="jaeger $JAEGER_MODULE_VERSION $JAEGER_VERSION module-copy ./cmd/jaeger -trimpath -s -w"
  k=$(key <(printf '%s\n' "$recipe"))
  if ! cached jaeger "$k"; then
    go_build_env_ok
    log "jaeger: building $JAEGER_VERSION (module $JAEGER_MODULE_VERSION; about 6 min on 2 cores)"
    dir="$cache/build/jaeger-$k"
    module_copy "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" "$dir"
    (cd "$dir" && go build -trimpath -o "$dir/jaeger.bin" \
      -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" ./cmd/jaeger)
    install_bin jaeger "$k" "$dir/jaeger.bin"; rm -rf "$dir"
  fi
fi

# LiveKit's media server (Apache-2.0): v1.13.5 is the newest release whose go.mod has no `replace`
# lines (later ones replace pion modules with LiveKit forks the module proxy refuses), so a plain
# `go install` builds it, every module checked against the checksum database.
if want livekit; then
  k=$(key <(printf 'livekit-server %s' "$LIVEKIT_SERVER_VERSION"))
  if ! cached livekit-server "$k"; then
    go_build_env_ok
    log "livekit-server: building $LIVEKIT_SERVER_VERSION (about 1.5 min on 2 cores)"
    dir="$cache/build/livekit-server-$k"; rm -rf "$dir"; mkdir -p "$dir"
    GOBIN="$dir" go install -trimpath -ldflags "-s -w" \
      "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
    install_bin livekit-server "$k" "$dir/server"; rm -rf "$dir"
  fi
fi

# Grafana's dashboard-linter v0.2.0 (the only version the proxy serves; Apache-2.0) imports two
# modules that must not be used (scripts/go-not-to-use.txt), each for one file:
#   - lint/v2.go (v2 dashboard schema) imports github.com/grafana/grafana/apps/dashboard (AGPL);
#     replaced by grafana/linter/v2.go: v2 dashboards reported as unsupported (VoxPulse's are v1);
#   - lint/rule_target_logql_auto.go (LogQL) imports github.com/grafana/loki/v3 (AGPL); replaced by
#     grafana/linter/logql.go: Loki targets reported as unsupported (VoxPulse has no Loki).
# Every other rule is the linter's own. The build drops those requirements from the linter's go.mod,
# so neither module is fetched.
if want linter; then
  k=$(key "$root/grafana/linter/v2.go" "$root/grafana/linter/logql.go" \
    <(printf '%s\n' "linter $DASHBOARD_LINTER_VERSION $DASHBOARD_LINTER_REPLACES"))
  if ! cached dashboard-linter "$k"; then
    go_build_env_ok
    log "dashboard-linter: building $DASHBOARD_LINTER_VERSION (about 3 min)"
    dir="$cache/build/dashboard-linter-$k"
    module_copy "github.com/grafana/dashboard-linter@$DASHBOARD_LINTER_VERSION" "$dir"
    cp "$root/grafana/linter/v2.go" "$dir/lint/v2.go"
    cp "$root/grafana/linter/logql.go" "$dir/lint/rule_target_logql_auto.go"
    rm -f "$dir/lint/v2_test.go" "$dir/lint/rule_target_logql_auto_test.go" "$dir/lint/rule_target_logql_test.go"
    (cd "$dir" && go mod edit -droprequire=github.com/grafana/grafana/apps/dashboard \
        -droprequire=github.com/grafana/loki/v3 -droprequire=github.com/grafana/loki/pkg/push &&
      for r in $DASHBOARD_LINTER_REPLACES; do go mod edit -replace="$r"; done &&
      go build -trimpath -ldflags "-s -w" -o "$dir/dashboard-linter.bin" .)
    install_bin dashboard-linter "$k" "$dir/dashboard-linter.bin"; rm -rf "$dir"
  fi
fi

# telemetrygen's go.mod has no replace or exclude directive: `go install pkg@version` builds it,
# its modules verified against the checksum database like every other build.
if want telemetrygen; then
  k=$(key <(printf 'telemetrygen %s -trimpath -s -w\n' "$TELEMETRYGEN_VERSION"))
  if ! cached telemetrygen "$k"; then
    go_build_env_ok
    log "telemetrygen: building $TELEMETRYGEN_VERSION (about a minute)"
    dir="$cache/build/telemetrygen-$k"; rm -rf "$dir"; mkdir -p "$dir"
    GOBIN="$dir" go install -trimpath -ldflags "-s -w" \
      "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION"
    install_bin telemetrygen "$k" "$dir/telemetrygen"; rm -rf "$dir"
  fi
fi

# voxpulse-s3 (s3server/): gofakes3 v1.2.0 (MIT) with its filesystem backend, each request's SigV4
# signature checked with the AWS SDK's signer; our own module, its go.sum checked like every build.
# (SeaweedFS, Apache-2.0, was tried first: its build passed 12 minutes on 2 cores; docs/insights.md.)
if want s3server; then
  k=$(key "$root/s3server/main.go" "$root/s3server/go.mod" "$root/s3server/go.sum")
  if ! cached voxpulse-s3 "$k"; then
    go_build_env_ok
    log "voxpulse-s3: building (about 10 s)"
    dir="$cache/build/voxpulse-s3-$k"; rm -rf "$dir"; mkdir -p "$dir"
    (cd "$root/s3server" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$dir/voxpulse-s3" .)
    install_bin voxpulse-s3 "$k" "$dir/voxpulse-s3"; rm -rf "$dir"
  fi
fi

# voxpulse-cassandra: Apache Cassandra (Apache-2.0) from Maven Central, the scale-out trace store
# option (`voxpulse stack up --trace-store cassandra`): cassandra/pom.xml's jars, fetched by Maven
# with strict checksums into $cache/cassandra/<key>/lib, and a launcher holding
# cassandra/jvm-server.options. A JVM, not a Go build: it needs java (17) and mvn.
if want cassandra; then
  k=$(key "$root/cassandra/pom.xml" "$root/cassandra/jvm-server.options" <(printf '%s launcher 1' "$CASSANDRA_VERSION"))
  if ! cached voxpulse-cassandra "$k"; then
    command -v java >/dev/null || die "java not found (Cassandra $CASSANDRA_VERSION runs on Java 17)"
    command -v mvn >/dev/null || die "mvn not found (Cassandra's jars come from Maven Central)"
    jv=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    [ "$jv" = 17 ] || [ "$jv" = 11 ] || die "java $jv: Cassandra $CASSANDRA_VERSION runs on Java 11 or 17"
    log "voxpulse-cassandra: fetching Cassandra $CASSANDRA_VERSION from Maven Central (about 70 MB)"
    lib="$cache/cassandra/$k/lib"; rm -rf "$lib.tmp"
    mvn -q -B -C --no-transfer-progress -Dstyle.color=never -f "$root/cassandra/pom.xml" -Dmaven.repo.local="$cache/m2" \
      -Dcassandra.version="$CASSANDRA_VERSION" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$lib.tmp"
    ls "$lib.tmp"/cassandra-all-"$CASSANDRA_VERSION".jar >/dev/null || die "cassandra-all $CASSANDRA_VERSION not fetched"
    rm -rf "$lib" && mv "$lib.tmp" "$lib"
    jamm=$(ls "$lib"/jamm-*.jar | head -1)
    opts=$(grep -v '^#' "$root/cassandra/jvm-server.options" | grep -v '^$' | tr '\n' ' ')
    launcher="$cache/build/voxpulse-cassandra-$k"
    cat > "$launcher" <<LAUNCHER
#!/bin/sh
# Cassandra $CASSANDRA_VERSION (scripts/build-backends.sh): voxpulse-cassandra STATE_DIR CONFIG_DIR
# STATE_DIR holds the node's cassandra.yaml (the stack renders it there) and its data and log;
# CONFIG_DIR is the project's cassandra/ folder (logback.xml). Heap: VOXPULSE_CASSANDRA_HEAP (1g).
[ \$# = 2 ] || { echo "usage: \$0 STATE_DIR CONFIG_DIR" >&2; exit 2; }
heap=\${VOXPULSE_CASSANDRA_HEAP:-1g}
exec java -Xms\$heap -Xmx\$heap $opts -javaagent:$jamm \\
  "-Dcassandra.config=file://\$1/cassandra.yaml" "-Dlogback.configurationFile=file://\$2/logback.xml" \\
  "-Dcassandra.logdir=\$1" "-Dcassandra.storagedir=\$1" \\
  -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon
LAUNCHER
    chmod +x "$launcher"
    install_bin voxpulse-cassandra "$k" "$launcher"; rm -f "$launcher"
  fi
fi

# The compose plugin is built when asked, or when a Docker CLI lacks it (tests run `docker compose config`).
need_compose() {
  [ $with_compose = 1 ] || [ "$only" = compose ] || [ -x "$bin/docker-compose" ] ||
    { command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; }
}
if want compose && need_compose; then
  k=$(key <(printf '%s' "$COMPOSE_VERSION"))
  if ! cached docker-compose "$k"; then
    go_build_env_ok
    log "docker compose: building $COMPOSE_VERSION"
    # compose's go.mod has exclude directives, so `go install pkg@version` refuses it: build the
    # downloaded module as the main module instead.
    dir="$cache/build/compose-$k"
    module_copy "github.com/docker/compose/v2@$COMPOSE_VERSION" "$dir"
    (cd "$dir" && go build -trimpath -o "$dir/docker-compose.bin" \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd)
    install_bin docker-compose "$k" "$dir/docker-compose.bin"; rm -rf "$dir"
  fi
  # Used as a standalone binary ($bin/docker-compose: the tests and `voxpulse stack --docker` find
  # it there). Nothing is written to ~/.docker; to have `docker compose` too, link it yourself:
  #   mkdir -p ~/.docker/cli-plugins && ln -s "$bin/docker-compose" ~/.docker/cli-plugins/
fi

if want licences; then
  check_licences "$GOMODCACHE"
fi

if want debian; then
  bash "$root/scripts/debian.sh" install stack services media
fi
log "binaries in $bin"
