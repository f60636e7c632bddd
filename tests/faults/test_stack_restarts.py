"""The single collector SIGKILLed under load: its keeper restarts it, the restart is counted, and what
it loses is what the single collector promises to lose at most.

The promise (docs/scaling.md, "the load-balancing collector restarts or is killed"): an accepted span
waits in the batch processor for at most its ``timeout`` (1 s, otel-collector/config.yaml) and then in
the trace export queue on disk (``file_storage/queue``), which a kill does not empty. So a kill -9
loses at most the spans accepted in the last batch window before it; everything accepted earlier, and
everything accepted after the restart, is stored.

The load is OTLP/HTTP from this test (one trace of ``SPANS`` spans per request, ``RATE`` requests a
second, no retries): a request answered 200 is a span accepted. Accepted minus stored is counted trace
by trace (span ids in Jaeger).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from tests.support import poll, wait_for
from voxpulse_console import stack
from voxpulse_console.stack import _keeper
from voxpulse_console.tracestore import JaegerTraceStore

from .conftest import COLLECTOR, JAEGER, Stack, report

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SPANS = 20  # per request: one trace
RATE = 20.0  # requests a second: 400 spans/s
RUN_S = 10.0
KILL_AT_S = 4.0
BATCH_WINDOW_S = 1.0  # the batch processor's timeout: what a kill may cost
FIRST_BACKOFF_S = 1.0  # the keeper's first wait


@dataclass(frozen=True, slots=True)
class Sent:
    trace_id: str
    sent_at: float  # when the answer came (the spans were accepted, or not, by then)
    accepted: bool


def _request(service: str, trace_id: str) -> dict[str, object]:
    now = time.time_ns()
    spans = [{
        "traceId": trace_id, "spanId": os.urandom(8).hex(), "name": f"op-{i}", "kind": 1,
        "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1_000_000),
    } for i in range(SPANS)]
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "stack-restarts"}, "spans": spans}],
    }]}


def _load(service: str, stop: threading.Event, out: list[Sent]) -> None:
    with httpx.Client(timeout=2) as http:
        t_next = time.monotonic()
        while not stop.is_set():
            trace_id = os.urandom(16).hex()
            try:
                ok = http.post(f"{COLLECTOR}/v1/traces", json=_request(service, trace_id)).status_code == 200
            except httpx.HTTPError:
                ok = False
            out.append(Sent(trace_id, time.time(), ok))
            t_next += 1 / RATE
            stop.wait(max(0.0, t_next - time.monotonic()))


def _stored(service: str, start_s: float, end_s: float) -> dict[str, int]:
    """trace id -> distinct spans Jaeger holds for it."""

    async def search() -> dict[str, int]:
        async with JaegerTraceStore(JAEGER, services=[service], timeout_s=60) as store:
            traces = await store.search(service, start_s=start_s, end_s=end_s, limit=5000)
        return {t.trace_id: len({s.span_id for s in t.spans}) for t in traces}

    return asyncio.run(search())


def test_a_killed_collector_is_restarted_counted_and_loses_at_most_its_batch_window(real_stack: Stack) -> None:
    service = f"stack-restarts-{uuid.uuid4().hex[:8]}"
    old = stack.pid("otelcol", state_dir=real_stack.state_dir)
    assert old is not None
    sent: list[Sent] = []
    stop = threading.Event()
    load = threading.Thread(target=_load, args=(service, stop, sent), daemon=True)
    t_begin = time.time()
    load.start()
    try:
        time.sleep(KILL_AT_S)
        t_kill = time.time()
        real_stack.kill("otelcol")
        t_killed = time.time()  # kill() returns once the process is gone
        # the keeper starts it again after its first back-off (one restart, no crash loop)
        new, respawn_s = poll(lambda: (p := stack.pid("otelcol", state_dir=real_stack.state_dir)) != old and p,
                              FIRST_BACKOFF_S + 5, 0.05)
        assert new, "the keeper did not restart the collector"
        wait_for(lambda: stack.ready(stack.COMPONENTS["otelcol"].ready_url), "the restarted collector ready", 60)
        t_ready = time.time()
        time.sleep(max(0.0, t_begin + RUN_S - time.time()))
    finally:
        stop.set()
        load.join(timeout=10)
    t_end = time.time()
    rows = {r.name: r for r in stack.status(state_dir=real_stack.state_dir)}
    assert rows["otelcol"].restarts == 1 and rows["otelcol"].ready, rows["otelcol"]

    # the count reaches Prometheus (node_exporter's textfile collector) and the alert fires
    restarts_q = f'{_keeper.RESTARTS}{{component="otelcol"}}'
    counted = wait_for(lambda: real_stack.prom_value(restarts_q) == 1, "the restart counted in Prometheus", 60)
    alert = wait_for(lambda: real_stack.prom_value(
        'ALERTS{alertname="StackComponentRestarting", component="otelcol", alertstate="firing"}'),
        "StackComponentRestarting firing", 90)

    accepted = [s for s in sent if s.accepted]
    may_lose = [s for s in accepted if t_kill - BATCH_WINDOW_S - 1 / RATE <= s.sent_at <= t_killed]
    must_keep = {s.trace_id for s in accepted} - {s.trace_id for s in may_lose}

    def complete() -> dict[str, int] | None:
        stored = _stored(service, t_begin - 5, t_end + 5)
        return stored if all(stored.get(t) == SPANS for t in must_keep) else None

    stored, drain_s = poll(complete, 90, 2.0)
    final = stored or _stored(service, t_begin - 5, t_end + 5)
    lost = sum(SPANS - final.get(s.trace_id, 0) for s in accepted)
    counts = {
        "spans": {"sent": len(sent) * SPANS, "accepted": len(accepted) * SPANS,
                  "refused_while_down": (len(sent) - len(accepted)) * SPANS,
                  "stored": sum(final.get(s.trace_id, 0) for s in accepted), "lost": lost,
                  "lost_bound": len(may_lose) * SPANS},
        "whole_traces_lost": sum(1 for s in accepted if s.trace_id not in final),
        "keeper_respawn_s": round(respawn_s, 2), "ready_after_kill_s": round(t_ready - t_kill, 1),
        "restarts_in_prometheus": counted, "alert": bool(alert),
        "stored_after_s": round(drain_s, 1) if stored else None,
    }
    report("single collector SIGKILLed under load, restarted by its keeper", counts)
    assert respawn_s <= FIRST_BACKOFF_S + 1, counts  # restarted after the first back-off
    assert len(accepted) < len(sent), "no request was refused: the collector was never down"
    missing = [t for t in must_keep if final.get(t) != SPANS]
    assert not missing, f"{len(missing)} traces accepted outside the batch window are not whole in Jaeger: {counts}"
    assert 0 <= lost <= len(may_lose) * SPANS, counts
