#!/usr/bin/env bash
# PostgreSQL and Redis for development, tests and CI, run natively (no Docker) from Debian packages.
#
#   scripts/services.sh [start]        install when missing, start both (idempotent), write the env file
#   scripts/services.sh stop | status
#   scripts/services.sh stop-postgres | start-postgres | stop-redis | start-redis    (fault tests)
#   scripts/services.sh env            print the env file (DATABASE_URL=..., REDIS_URL=...)
#   scripts/services.sh env-path       print where the env file is
#
# State lives under ${VOXPULSE_STATE_DIR:-<repo>/.voxpulse}/services (data dirs, logs, sockets, env).
# Ports: ${PGPORT:-5432} and ${REDIS_PORT:-6379}, both on 127.0.0.1 only.
# Credentials: PGUSER (default voxpulse) and PGPASSWORD from the environment; when PGPASSWORD is not
# set a random password is generated once and kept in services/pg.password (mode 600, git-ignored).
# Nothing secret is committed. REDIS_PASSWORD, when set, becomes Redis' requirepass (in the mode-600
# services/redis/redis.conf, not on the command line). Debian packages: scripts/debian.sh.
# Source the env file to use them:  set -a; . .voxpulse/services/env; set +a
# PostgreSQL runs with its durable defaults; VOXPULSE_PG_FAST=1 turns fsync off (throw-away CI).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${VOXPULSE_STATE_DIR:-$root/.voxpulse}
case "$state" in /*) ;; *) state="$root/$state" ;; esac
svc="$state/services"
pgport=${PGPORT:-5432}
redisport=${REDIS_PORT:-6379}
pguser=${PGUSER:-voxpulse}
pgdb=${PGDATABASE:-voxpulse}
pgdata="$svc/pg/data"
pgsock="$svc/pg/run"
pglog="$svc/pg/postgres.log"
redisdir="$svc/redis"
envfile="$svc/env"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

as_pg() {
  # Run a command as the postgres OS user (the server refuses to run as root).
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

install_missing() {
  bash "$root/scripts/debian.sh" install services
}

port_busy() {
  # true when something listens on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

stop_system_services() {
  # Debian's packages start their own cluster/server on install (unless policy-rc.d forbids it);
  # they would hold our ports. Ours use their own data dirs.
  bash "$root/scripts/debian.sh" stop-services
}

write_password() {
  if [ -n "${PGPASSWORD:-}" ]; then
    printf '%s' "$PGPASSWORD"
    return
  fi
  if [ ! -s "$svc/pg.password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$svc/pg.password")
  fi
  cat "$svc/pg.password"
}

pg_running() {
  [ -f "$pgdata/postmaster.pid" ] && as_pg "$(pg_bindir)/pg_ctl" -D "$pgdata" status >/dev/null 2>&1
}

psql_admin() {
  as_pg "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$pgsock" -p "$pgport" -U postgres -d postgres "$@"
}

start_postgres() {
  local bin pw
  bin=$(pg_bindir) || die "PostgreSQL is not installed"
  mkdir -p "$svc/pg"
  chmod 755 "$state" "$svc" 2>/dev/null || true
  if [ ! -s "$pgdata/PG_VERSION" ]; then
    log "initdb $pgdata"
    mkdir -p "$pgdata" "$pgsock"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$svc/pg"
    as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >/dev/null
    echo "include_if_exists = 'voxpulse.conf'" >>"$pgdata/postgresql.conf"
  fi
  grep -q "include_if_exists = 'voxpulse.conf'" "$pgdata/postgresql.conf" \
    || echo "include_if_exists = 'voxpulse.conf'" >>"$pgdata/postgresql.conf"
  # Our settings, rewritten on every start. Durable by default (PostgreSQL's own defaults, so
  # benchmarks see real commit costs); VOXPULSE_PG_FAST=1 trades durability for speed (CI).
  cat >"$pgdata/voxpulse.conf" <<EOF
# written by scripts/services.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pgsock'
max_connections = 200
EOF
  if [ "${VOXPULSE_PG_FAST:-0}" = 1 ]; then
    printf '%s\n' "fsync = off" "synchronous_commit = off" "full_page_writes = off" >>"$pgdata/voxpulse.conf"
  fi
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata/voxpulse.conf"
  mkdir -p "$pgsock"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgsock"
  if pg_running; then
    as_pg "$bin/pg_ctl" -D "$pgdata" reload >/dev/null
    log "PostgreSQL already running (port $pgport)"
  else
    if port_busy "$pgport"; then
      stop_system_services
      port_busy "$pgport" && die "port $pgport is taken by another process (set PGPORT)"
    fi
    [ "$(id -u)" = 0 ] && { touch "$pglog"; chown postgres:postgres "$pglog"; }
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$pglog" -o "-p $pgport" -w -t 30 start >/dev/null \
      || { tail -n 20 "$pglog" >&2; die "PostgreSQL did not start"; }
    log "PostgreSQL started on 127.0.0.1:$pgport"
  fi
  pw=$(write_password)
  # role + database (idempotent); the password comes from the environment or the generated file
  psql_admin -v role="$pguser" -v pw="$pw" -v db="$pgdb" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

stop_postgres() {
  local bin
  bin=$(pg_bindir) || return 0
  if pg_running; then
    as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w -t 30 stop >/dev/null
    log "PostgreSQL stopped"
  else
    log "PostgreSQL not running"
  fi
}

redis_cli() {
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$redisport" "$@"
  else
    redis-cli -h 127.0.0.1 -p "$redisport" "$@"
  fi
}

redis_running() {
  [ -f "$redisdir/redis.pid" ] && kill -0 "$(cat "$redisdir/redis.pid")" 2>/dev/null
}

start_redis() {
  command -v redis-server >/dev/null || die "redis-server is not installed"
  mkdir -p "$redisdir"
  if redis_running; then
    log "Redis already running (port $redisport)"
    return 0
  fi
  if port_busy "$redisport"; then
    stop_system_services
    port_busy "$redisport" && die "port $redisport is taken by another process (set REDIS_PORT)"
  fi
  # No RDB snapshots, but an append-only file: the call-history buffer must survive a Redis
  # restart (a Redis stopped during a PostgreSQL outage would otherwise lose what it buffered).
  # Settings in a config file of mode 0600, rewritten on every start: the password (REDIS_PASSWORD)
  # stays out of the process list, where a --requirepass argument would show it to every user.
  (umask 077; cat >"$redisdir/redis.conf" <<EOF
# written by scripts/services.sh
daemonize yes
bind 127.0.0.1
port $redisport
save ""
appendonly yes
appendfsync everysec
dir $redisdir
pidfile $redisdir/redis.pid
logfile $redisdir/redis.log
EOF
  )
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    local pw=${REDIS_PASSWORD//\\/\\\\}  # a quoted config string: \ and " escaped
    printf 'requirepass "%s"\n' "${pw//\"/\\\"}" >>"$redisdir/redis.conf"
  fi
  redis-server "$redisdir/redis.conf"
  local i
  for i in $(seq 1 100); do
    [ "$(redis_cli ping 2>/dev/null)" = PONG ] && { log "Redis started on 127.0.0.1:$redisport"; return 0; }
    sleep 0.05
  done
  tail -n 20 "$redisdir/redis.log" >&2 || true
  die "Redis did not start"
}

stop_redis() {
  if redis_running; then
    local pid
    pid=$(cat "$redisdir/redis.pid")
    kill "$pid"
    local i
    for i in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    rm -f "$redisdir/redis.pid"
    log "Redis stopped"
  else
    log "Redis not running"
  fi
}

write_env() {
  local pw redis_url
  pw=$(write_password)
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    redis_url="redis://:${REDIS_PASSWORD}@127.0.0.1:$redisport/0"
  else
    redis_url="redis://127.0.0.1:$redisport/0"
  fi
  (umask 077; cat >"$envfile" <<EOF
# generated by scripts/services.sh; source with: set -a; . $envfile; set +a
DATABASE_URL=postgresql://$pguser:$pw@127.0.0.1:$pgport/$pgdb
REDIS_URL=$redis_url
PGHOST=127.0.0.1
PGPORT=$pgport
PGUSER=$pguser
PGDATABASE=$pgdb
EOF
  )
  # passwords masked in the output (CI logs); `services.sh env` prints them
  sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#' "$envfile"
}

status() {
  local rc=0
  if pg_running; then echo "postgres: running (127.0.0.1:$pgport, data $pgdata)"; else echo "postgres: stopped"; rc=1; fi
  if redis_running; then echo "redis: running (127.0.0.1:$redisport)"; else echo "redis: stopped"; rc=1; fi
  return $rc
}

cmd=${1:-start}
case "$cmd" in
  start)
    mkdir -p "$svc"
    install_missing
    start_postgres
    start_redis
    write_env
    ;;
  stop) stop_redis; stop_postgres ;;
  status) status ;;
  env) cat "$envfile" ;;
  env-path) echo "$envfile" ;;
  start-postgres) mkdir -p "$svc"; start_postgres ;;
  stop-postgres) stop_postgres ;;
  start-redis) mkdir -p "$svc"; start_redis ;;
  stop-redis) stop_redis ;;
  *) echo "usage: $0 [start|stop|status|env|env-path|start-postgres|stop-postgres|start-redis|stop-redis]" >&2
     exit 2 ;;
esac
