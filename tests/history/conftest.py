"""Fixtures for the call-history tests: the REAL PostgreSQL and Redis of scripts/services.sh.

* ``history_db``: a throw-away database (created per test session, dropped after), migrated; its
  tables are emptied before each test.
* ``redis_url`` + ``buffer_key``: the shared Redis with a unique key per test.
* ``fault_services``: a separate PostgreSQL + Redis pair (own ports, own state dir) started by
  scripts/services.sh for the fault tests, which stop and start it.
* ``otel``: an SDK TracerProvider with an in-memory exporter (asyncpg and Redis instrumented
  with it) and a MeterProvider with an in-memory reader.

Without reachable servers the tests are skipped with the reason, unless VOXPULSE_REQUIRE_DB is
set (CI), in which case they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ROOT = Path(__file__).resolve().parents[2]
# --import-mode=importlib: make the helper module next to this file importable as history_sim
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
SERVICES = ROOT / "scripts" / "services.sh"
TABLES = "calls, call_turns, call_tool_calls, customers, daily_stats"


def _env_file() -> dict[str, str]:
    state = Path(os.environ.get("VOXPULSE_STATE_DIR", ROOT / ".voxpulse"))
    if not state.is_absolute():
        state = ROOT / state
    out: dict[str, str] = {}
    f = state / "services" / "env"
    if f.is_file():
        for line in f.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


def _setting(name: str) -> str | None:
    return os.environ.get(name) or _env_file().get(name)


def _unavailable(reason: str) -> None:
    if os.environ.get("VOXPULSE_REQUIRE_DB"):
        pytest.fail(f"VOXPULSE_REQUIRE_DB is set but {reason}", pytrace=False)
    pytest.skip(f"{reason} (start them with scripts/services.sh)")


def _with_db(dsn: str, db: str) -> str:
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


@pytest.fixture(scope="session")
def base_dsn() -> str:
    dsn = _setting("VOXPULSE_DATABASE_URL") or _setting("DATABASE_URL")
    if not dsn:
        _unavailable("no DATABASE_URL (env or .voxpulse/services/env)")
    assert dsn is not None

    async def ping() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()

    try:
        asyncio.run(ping())
    except Exception as exc:
        _unavailable(f"PostgreSQL at {urlsplit(dsn).hostname}:{urlsplit(dsn).port} unreachable ({exc!r})")
    return dsn


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = _setting("VOXPULSE_REDIS_URL") or _setting("REDIS_URL")
    if not url:
        _unavailable("no REDIS_URL (env or .voxpulse/services/env)")
    assert url is not None

    async def ping() -> None:
        r = aioredis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            await r.ping()
        finally:
            await r.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        _unavailable(f"Redis unreachable ({exc!r})")
    return url


@pytest.fixture(scope="session")
def session_db(base_dsn: str) -> Iterator[str]:
    """A throw-away, migrated database for this test session."""
    from telemetry.history import migrate

    name = f"voxpulse_test_{os.getpid()}_{secrets.token_hex(3)}"

    async def create() -> None:
        conn = await asyncpg.connect(base_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate(_with_db(base_dsn, name))

    async def drop() -> None:
        conn = await asyncpg.connect(base_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield _with_db(base_dsn, name)
    asyncio.run(drop())


@pytest.fixture
async def history_db(session_db: str) -> str:
    conn = await asyncpg.connect(session_db)
    try:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    return session_db


@pytest.fixture
async def pg(history_db: str):  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(history_db)
    yield conn
    await conn.close()


@pytest.fixture
def buffer_key() -> str:
    return f"voxpulse:test:{uuid.uuid4().hex}:buffer"


@pytest.fixture
async def redis_client(redis_url: str):  # type: ignore[no-untyped-def]
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()


# -- OpenTelemetry ------------------------------------------------------------------------------


@dataclass
class Otel:
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def calllog_counts(self) -> dict[tuple[str, str], int]:
        """{(result, buffer): value} of voxpulse.calllog.records."""
        out: dict[tuple[str, str], int] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != "voxpulse.calllog.records":
                        continue
                    for p in m.data.data_points:  # type: ignore[union-attr]
                        a = p.attributes or {}
                        key = (str(a.get("voxpulse.calllog.result")), str(a.get("voxpulse.calllog.buffer")))
                        out[key] = out.get(key, 0) + int(p.value)  # type: ignore[union-attr]
        return out


@pytest.fixture(scope="session")
def _otel_session() -> Iterator[Otel]:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    pg_inst, redis_inst = AsyncPGInstrumentor(), RedisInstrumentor()
    for inst in (pg_inst, redis_inst):
        if inst.is_instrumented_by_opentelemetry:  # someone else's provider: use ours here
            inst.uninstrument()
        inst.instrument(tracer_provider=tp)
    yield Otel(tp, exporter, mp, reader)
    for inst in (pg_inst, redis_inst):
        inst.uninstrument()
    tp.shutdown()
    mp.shutdown()


@pytest.fixture
def otel(_otel_session: Otel) -> Otel:
    _otel_session.exporter.clear()
    _otel_session.reader.get_metrics_data()  # (cumulative: tests compare deltas)
    return _otel_session


# -- a private PostgreSQL + Redis pair for the fault tests ----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FaultServices:
    env: dict[str, str]
    dsn: str
    redis_url: str

    def run(self, cmd: str) -> None:
        subprocess.run([str(SERVICES), cmd], env=self.env, check=True, capture_output=True, timeout=60)

    async def arun(self, cmd: str) -> None:
        """Same, without blocking the event loop (the simulated calls keep running)."""
        proc = await asyncio.create_subprocess_exec(
            str(SERVICES), cmd, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (cmd, out, err)


def _reap_stale_fault_pairs() -> None:
    """Stop and remove private pairs left by test runs that were killed before their teardown."""
    for d in (ROOT / ".voxpulse").glob("test-fault-*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            continue  # that run is still alive
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        vals: dict[str, str] = {}
        envf = d / "services" / "env"
        if envf.is_file():
            vals = dict(line.split("=", 1) for line in envf.read_text().splitlines()
                        if "=" in line and not line.startswith("#"))
        redis_port = vals.get("REDIS_URL", "").rsplit(":", 1)[-1].split("/")[0]
        env = {**os.environ, "VOXPULSE_STATE_DIR": str(d), "PGPORT": vals.get("PGPORT", "5432"),
               "REDIS_PORT": redis_port or "6379"}
        subprocess.run([str(SERVICES), "stop"], env=env, capture_output=True, timeout=60, check=False)
        subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture(scope="session")
def fault_services(base_dsn: str, redis_url: str) -> Iterator[FaultServices]:
    """scripts/services.sh on free ports with its own state dir; stopped and removed after."""
    _reap_stale_fault_pairs()
    state = ROOT / ".voxpulse" / f"test-fault-{os.getpid()}"
    env = {
        **os.environ,
        "VOXPULSE_STATE_DIR": str(state),
        "PGPORT": str(_free_port()),
        "REDIS_PORT": str(_free_port()),
        "PGUSER": "voxpulse_fault",
        "PGPASSWORD": secrets.token_urlsafe(12),
        "PGDATABASE": "voxpulse_fault",
    }
    env.pop("REDIS_PASSWORD", None)
    svc = FaultServices(env, "", "")
    try:
        svc.run("start")
    except subprocess.CalledProcessError as exc:
        _unavailable(f"scripts/services.sh could not start a private pair: {exc.stderr.decode()[-500:]}")
    vals = dict(
        line.split("=", 1) for line in (state / "services" / "env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    svc.dsn, svc.redis_url = vals["DATABASE_URL"], vals["REDIS_URL"]
    try:
        yield svc
    finally:
        subprocess.run([str(SERVICES), "stop"], env=env, capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", str(state)], check=False)
