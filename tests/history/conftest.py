"""Fixtures for the call-history tests: the REAL PostgreSQL and Redis of scripts/services.sh.

* ``history_db``: a throw-away database (created per test session, dropped after), migrated; its
  tables are emptied before each test.
* ``redis_url`` (tests/conftest.py) + ``buffer_key``: the shared Redis with a unique key per test.
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
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import ROOT, free_port, throwaway_database, unavailable
from tests.support.services import env_file, state_dir

SERVICES = ROOT / "scripts" / "services.sh"
TABLES = "calls, call_turns, call_tool_calls, customers, daily_stats"


@pytest.fixture(scope="session")
def session_db(base_dsn: str) -> Iterator[str]:
    """A throw-away, migrated database for this test session."""
    with throwaway_database("voxpulse_test") as dsn:
        yield dsn


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
    for d in state_dir().glob("test-fault-*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            continue  # that run is still alive
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        vals = env_file(d / "stack" / "services.env")
        redis_port = vals.get("REDIS_URL", "").rsplit(":", 1)[-1].split("/")[0]
        env = {**os.environ, "VOXPULSE_STATE_DIR": str(d), "PGPORT": vals.get("PGPORT", "5432"),
               "REDIS_PORT": redis_port or "6379"}
        subprocess.run([str(SERVICES), "stop"], env=env, capture_output=True, timeout=60, check=False)
        subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture(scope="session")
def fault_services(base_dsn: str, redis_url: str) -> Iterator[FaultServices]:
    """scripts/services.sh on free ports with its own state dir; stopped and removed after."""
    _reap_stale_fault_pairs()
    state = state_dir() / f"test-fault-{os.getpid()}"
    env = {
        **os.environ,
        "VOXPULSE_STATE_DIR": str(state),
        "PGPORT": str(free_port()),
        "REDIS_PORT": str(free_port()),
        "PGUSER": "voxpulse_fault",
        "PGPASSWORD": secrets.token_urlsafe(12),
        "PGDATABASE": "voxpulse_fault",
    }
    env.pop("REDIS_PASSWORD", None)
    svc = FaultServices(env, "", "")
    try:
        svc.run("start")
    except subprocess.CalledProcessError as exc:
        unavailable("DB", f"scripts/services.sh could not start a private pair: {exc.stderr.decode()[-500:]}")
    vals = env_file(state / "stack" / "services.env")
    svc.dsn, svc.redis_url = vals["DATABASE_URL"], vals["REDIS_URL"]
    try:
        yield svc
    finally:
        subprocess.run([str(SERVICES), "stop"], env=env, capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", str(state)], check=False)
