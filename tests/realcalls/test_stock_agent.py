"""A user's own agent, exactly as docs/your-agent.md adds VoxPulse to LiveKit's quickstart
(tests/realcalls/stock_agent.py): LiveKit's CLI and its default process per job, no ``python -m
agent``. On real calls through the stack's LiveKit server: one trace per call with ``call_id`` on
every span, and Prometheus's series of the agent the same after 20 calls as after 2 -- one
``instance`` for the worker, not one per job process."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from agent.realcalls import OtlpRecorder, Worker
from telemetry.livekit._plugin import PRELOAD
from telemetry.semconv import LIVEKIT_JOB_ROOT
from tests.support import ROOT, wait_for
from tests.support.backends import PROMETHEUS

from .conftest import LiveKit, RunningWorker, failed_calls, jobs_done, place

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SCRIPT = ROOT / "tests" / "realcalls" / "stock_agent.py"
# bounded series that come and go with the machine's load, not with calls (test_real_calls.py)
LOAD_DRIVEN = ("lk.agents.event_loop.blocked_duration", "voxpulse.export.dropped", "voxpulse.calllog.records",
               "event_loop")


@dataclass
class Stock:
    worker: RunningWorker
    recorder: OtlpRecorder


@pytest.fixture(scope="module")
def stock(lk_stack: LiveKit, history_dsn: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stock]:
    tag = secrets.token_hex(3)
    agent_name, service = f"stock-agent-{tag}", f"stock-{tag}"
    env = {"LIVEKIT_URL": lk_stack.url, "LIVEKIT_API_KEY": lk_stack.api_key, "LIVEKIT_API_SECRET": lk_stack.api_secret,
           "VOXPULSE_AGENT_NAME": agent_name, "OTEL_SERVICE_NAME": service, "OTEL_METRIC_EXPORT_INTERVAL": "2000",
           # with a database, instrument_session keeps the call history itself (no CallLogger in the agent)
           "DATABASE_URL": history_dsn or "", "PYTHONPATH": str(ROOT)}
    log = tmp_path_factory.mktemp("stock") / "worker.log"
    with OtlpRecorder(forward_to="http://127.0.0.1:4318") as rec:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = rec.endpoint
        w = Worker(env, log_path=log, media=lk_stack.media, argv=[sys.executable, str(SCRIPT), "start"]).start()
        try:
            yield Stock(RunningWorker(w, agent_name, service), rec)
        finally:
            w.stop()


def _prom(query: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": query}, timeout=10)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def _calls(stock: Stock, lk: LiveKit, n: int, concurrency: int) -> list[str]:
    results = place(stock.worker, lk, ["ask_operator"] * n, concurrency=concurrency, arrival_s=0.5)
    failed = failed_calls(results, stock.worker, lk)
    assert not failed, failed
    sids = [r.room_sid for r in results]
    assert jobs_done(stock.recorder, sids, 90), stock.worker.worker.tail(40)
    return sids


def test_a_stock_agent_one_trace_per_call_and_flat_series(stock: Stock, lk_stack: LiveKit,
                                                          history_dsn: str | None) -> None:
    service = stock.worker.service
    # the agent's own (SDK) series: the span metrics are the collector's (instance = its address)
    load = "|".join(x.replace(".", "_") for x in LOAD_DRIVEN)
    ours = f'{{job=~".*{service}", __name__!~"traces_span_metrics_.*", __name__!~".*({load}).*"}}'

    def series() -> dict[str, int]:
        return {r["metric"]["__name__"]: int(r["value"][1]) for r in _prom(f"count by (__name__) ({ours})")}

    def instances() -> set[str]:
        return {r["metric"].get("instance", "") for r in _prom(f"count by (instance) ({ours})")}

    def calls_counted() -> float:
        rows = _prom(f'sum(voice_calls_total{{job=~".*{service}"}})')
        return float(rows[0]["value"][1]) if rows else 0.0

    # import telemetry.livekit registered VoxPulse with LiveKit: its forkserver preloads it for the job processes
    preloads = [r.get("packages") for r in stock.worker.worker.records() if r.get("message") == "preloading plugins"]
    assert len(preloads) == 1 and PRELOAD in preloads[0], preloads
    first = _calls(stock, lk_stack, 2, 2)
    wait_for(lambda: calls_counted() >= 2, "2 calls in Prometheus", 90)
    after_2, inst_2 = series(), instances()
    assert after_2 and len(inst_2) == 1, (after_2, inst_2)
    rest = _calls(stock, lk_stack, 18, 4)
    wait_for(lambda: calls_counted() >= 20, "20 calls in Prometheus", 120)
    after_20, inst_20 = series(), instances()
    # a metric the agent writes in every process gains no series per call; a metric that first
    # reached Prometheus after the snapshot of 2 (LiveKit's turn metrics come with the relay's next
    # export) is new as a whole, not per call, and its count is then the same as any other
    grown = {n: (c, after_20.get(n)) for n, c in after_2.items() if after_20.get(n) != c}
    assert not grown, grown
    assert inst_20 == inst_2  # one writer: the worker's relay, whatever the number of job processes
    # one trace per call, call_id on every span
    call_ids: list[str] = []
    for sid in first + rest:
        roots = [s for s in stock.recorder.roots(LIVEKIT_JOB_ROOT) if s.attributes.get("lk.room_sid") == sid]
        assert len(roots) == 1, sid
        spans = stock.recorder.traces()[roots[0].trace_id]
        ids = {s.call_id for s in spans}
        assert None not in ids and len(ids) == 1, (sid, ids, [s.name for s in spans if s.call_id is None][:10])
        call_ids.append(str(ids.pop()))
    if history_dsn:  # ... and each call in the call history the console reads, with its trace
        rows = asyncio.run(_history(history_dsn, call_ids))
        assert len(rows) == 20 and all(r["trace_id"] and r["ended_at"] for r in rows), rows


async def _history(dsn: str, call_ids: list[str]) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT call_id, trace_id, ended_at FROM calls WHERE call_id = ANY($1::text[])",
                                call_ids)
    finally:
        await conn.close()
    return [dict(r) for r in rows]
