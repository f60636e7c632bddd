"""PostgreSQL and Redis as components of the stack: the call history's database and outage buffer.

They run under the same supervisor and keepers as the rest (a crash is restarted, counted, alerted),
with their state in the stack's state folder, but apart from ``voxpulse stack up``/``down`` of the
stack: ``voxpulse stack services start|stop|status|env|env-path|start-postgres|stop-postgres|
start-redis|stop-redis`` (``scripts/services.sh`` is a thin wrapper over it) starts and stops them.

    <state>/postgres/data     the cluster (initdb once; ``voxpulse.conf`` rewritten on every start)
    <state>/postgres/run      its unix socket
    <state>/postgres/password the generated password (mode 0600) when PGPASSWORD is not set
    <state>/redis/            redis.conf (mode 0600: REDIS_PASSWORD stays off the command line), the AOF
    <state>/services.env      DATABASE_URL, REDIS_URL, PGHOST, PGPORT, PGUSER, PGDATABASE (mode 0600)

Ports ``PGPORT`` (5432) and ``REDIS_PORT`` (6379) on 127.0.0.1; ``PGUSER``/``PGDATABASE`` (voxpulse);
PostgreSQL with its durable defaults, ``VOXPULSE_PG_FAST=1`` turns fsync off (throw-away CI). Run as
root, PostgreSQL runs as the ``postgres`` account (``setpriv``: it execs, so the keeper owns the server
itself, where ``runuser`` would stay in between). Debian's own services are stopped when they hold the
ports (``scripts/debian.sh stop-services``).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from voxpulse_console import settings
from voxpulse_console._paths import config_dir
from voxpulse_console.stack._catalogue import Component, StackError
from voxpulse_console.stack._layout import component_dir

__all__ = ["SERVICES", "components", "env_file", "pg_bindir", "write_env"]

#: the components, in start order
SERVICES = ("postgres", "redis")


def _pg_port(env: Mapping[str, str] | None = None) -> int:
    return int(settings.text(settings.PGPORT, env=env) or 5432)


def _redis_port(env: Mapping[str, str] | None = None) -> int:
    return int(settings.text(settings.REDIS_PORT, env=env) or 6379)


def env_file(state: Path) -> Path:
    return state / "services.env"


def pg_bindir() -> Path | None:
    """PostgreSQL's server binaries (Debian keeps them off PATH): 15 first, else the newest."""
    base = Path("/usr/lib/postgresql")
    dirs = sorted(base.glob("*/bin"), key=lambda d: [int(x) for x in d.parent.name.split(".") if x.isdigit()])
    for d in [base / "15" / "bin", *reversed(dirs)]:
        if (d / "initdb").is_file():
            return d
    return None


def _as_postgres() -> list[str]:
    """The prefix that runs a command as the postgres account when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def _chown_postgres(*paths: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


def closed_to(path: Path, account: str) -> Path | None:
    """The first folder above ``path`` that ``account`` may not enter (no search permission for it), or
    None. PostgreSQL runs as its own account from the stack's state folder: every folder above it must
    let that account through."""
    try:
        user = pwd.getpwnam(account)
    except KeyError:
        return None
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if account in g.gr_mem)}
    for folder in reversed(path.resolve().parents):
        st = folder.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop_system_services(port: int) -> None:
    """Debian's packages start their own cluster/server on install; they would hold our ports."""
    if _port_busy(port):
        subprocess.run(["bash", str(config_dir() / "scripts" / "debian.sh"), "stop-services"], check=False)


def _password(state: Path) -> str:
    """PGPASSWORD, else a random one generated once (mode 0600)."""
    given = settings.text(settings.PGPASSWORD)
    if given:
        return given
    path = component_dir(state, "postgres") / "password"
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(18))
    return path.read_text(encoding="utf-8").strip()


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def _pg_prepare(state: Path) -> None:
    bindir = pg_bindir()
    if bindir is None:
        raise StackError("postgres: PostgreSQL is not installed (bash scripts/debian.sh install services)")
    home = component_dir(state, "postgres")
    data, sock = home / "data", home / "run"
    if os.geteuid() == 0 and (closed := closed_to(state, "postgres")) is not None:
        mode = stat.filemode(closed.stat().st_mode)
        raise StackError(
            f"postgres: PostgreSQL runs as the postgres account, which may not enter {closed} ({mode}), a folder "
            f"above the stack's state folder {state}. Put the state folder where it can (VOXPULSE_STACK_DIR or "
            f"VOXPULSE_STATE_DIR, or a checkout outside {closed}), or let it through: chmod o+x {closed}")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o755)
    os.chmod(state, 0o755)
    if not (data / "PG_VERSION").is_file():
        data.mkdir(exist_ok=True)
        _chown_postgres(home, data)
        proc = subprocess.run([*_as_postgres(), str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                               "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise StackError(f"postgres: initdb failed: {proc.stderr[-500:]}")
    conf = data / "postgresql.conf"
    include = "include_if_exists = 'voxpulse.conf'"
    if include not in conf.read_text(encoding="utf-8"):
        with conf.open("a", encoding="utf-8") as f:
            f.write(include + "\n")
    lines = ["# written by voxpulse stack services (rewritten on every start)", "listen_addresses = '127.0.0.1'",
             f"unix_socket_directories = '{sock}'", "max_connections = 200"]
    if settings.text(settings.PG_FAST) == "1":  # durability traded for speed (throw-away CI)
        lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    (data / "voxpulse.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sock.mkdir(exist_ok=True)
    _chown_postgres(data / "voxpulse.conf", sock)
    _password(state)
    _stop_system_services(_pg_port())


def _pg_argv(binary: Path, cstate: Path) -> list[str]:
    return [*_as_postgres(), str(binary), "-D", str(cstate / "data"), "-p", str(_pg_port())]


def _pg_ready() -> bool:
    """The server accepts sessions (pg_isready: not merely the port open, as during crash recovery)."""
    bindir = pg_bindir()
    if bindir is None:
        return False
    argv = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(_pg_port()), "-t", "1"]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _pg_after_ready(state: Path) -> None:
    """The role and database (idempotent), the password from the environment or the generated file."""
    bindir = pg_bindir()
    assert bindir is not None  # _pg_prepare checked
    role, db = settings.text(settings.PGUSER) or "voxpulse", settings.text(settings.PGDATABASE) or "voxpulse"
    sql = (
        "SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw')\n"
        " WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec\n"
        "SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw') \\gexec\n"
        "SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')\n"
        " WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec\n"
    )
    argv = [*_as_postgres(), str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", str(component_dir(state, "postgres") / "run"), "-p", str(_pg_port()),
            "-U", "postgres", "-d", "postgres", "-v", f"role={role}", "-v", f"pw={_password(state)}", "-v", f"db={db}"]
    deadline = time.monotonic() + 30  # the port answers before the server accepts sessions (recovery)
    while True:
        proc = subprocess.run(argv, input=sql, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise StackError(f"postgres: creating role {role} and database {db} failed: {proc.stderr[-500:]}")
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Redis


def _redis_prepare(state: Path) -> None:
    if shutil.which("redis-server") is None:
        raise StackError("redis: redis-server is not installed (bash scripts/debian.sh install services)")
    home = component_dir(state, "redis")
    home.mkdir(parents=True, exist_ok=True)
    # No RDB snapshots, but an append-only file: the call-history buffer must survive a Redis restart.
    # Mode 0600: the password (REDIS_PASSWORD) stays out of the process list.
    lines = ["# written by voxpulse stack services (rewritten on every start)", "daemonize no", "bind 127.0.0.1",
             f"port {_redis_port()}", 'save ""', "appendonly yes", "appendfsync everysec", f"dir {home}"]
    password = settings.text(settings.REDIS_PASSWORD)
    if password:
        escaped = password.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'requirepass "{escaped}"')
    conf = home / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    _stop_system_services(_redis_port())


def _redis_argv(binary: Path, cstate: Path) -> list[str]:
    return [str(binary), str(cstate / "redis.conf")]


def components(env: Mapping[str, str] | None = None) -> dict[str, Component]:
    """PostgreSQL and Redis on the ports of ``env`` (default: the environment)."""
    pg, redis = _pg_port(env), _redis_port(env)
    return {
        "postgres": Component(
            "postgres", ("postgres",), f"tcp://127.0.0.1:{pg}", (pg,), _pg_argv,
            description="PostgreSQL (the call history, alerts_history)", stop_timeout_s=30.0,
            prepare=_pg_prepare, locate=lambda: (d / "postgres") if (d := pg_bindir()) else None,
            stop_signal="INT", after_ready=_pg_after_ready, ready_check=_pg_ready,
        ),
        "redis": Component(
            "redis", ("redis-server",), f"tcp://127.0.0.1:{redis}", (redis,), _redis_argv,
            description="Redis (the call history's outage buffer, sessions; AOF on)", stop_timeout_s=10.0,
            prepare=_redis_prepare,
        ),
    }


def write_env(state: Path) -> str:
    """Write the env file (mode 0600) and return its text with the passwords masked (for logs)."""
    pg, redis = _pg_port(), _redis_port()
    user, db = settings.text(settings.PGUSER) or "voxpulse", settings.text(settings.PGDATABASE) or "voxpulse"
    redis_password = settings.text(settings.REDIS_PASSWORD)
    redis_url = f"redis://:{redis_password}@127.0.0.1:{redis}/0" if redis_password \
        else f"redis://127.0.0.1:{redis}/0"
    path = env_file(state)
    lines = [f"# generated by voxpulse stack services; source with: set -a; . {path}; set +a",
             f"DATABASE_URL=postgresql://{user}:{_password(state)}@127.0.0.1:{pg}/{db}", f"REDIS_URL={redis_url}",
             "PGHOST=127.0.0.1", f"PGPORT={pg}", f"PGUSER={user}", f"PGDATABASE={db}"]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    import re

    return "\n".join(re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", line) for line in lines)
