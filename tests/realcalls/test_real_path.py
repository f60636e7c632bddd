"""The path a user's calls take, end to end, on real calls: the agent worker's job processes (LiveKit's
process per job, through the worker's metrics relay) -> the collector on the host's loopback ->
Jaeger -> the console and ``voxpulse trace``. What the agent exported is the truth (the recorder sees
it at the agent's OTLP boundary); the trace store, the console and the CLI must show all of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from agent.realcalls import OtlpRecorder
from telemetry.semconv import LIVEKIT_JOB_ROOT
from tests.support import ROOT, wait_for
from tests.support.backends import PROMETHEUS
from tests.ui.conftest import ADMIN, Console, start_console, stop_console

from .conftest import Calls, RunningWorker
from .test_real_calls import trace_of

pytestmark = [pytest.mark.stack, pytest.mark.slow]

JAEGER = "http://127.0.0.1:16686"


def _jaeger_span_ids(trace_id: str) -> set[str]:
    r = httpx.get(f"{JAEGER}/api/traces/{trace_id}", timeout=10)
    if r.status_code == 404:
        return set()
    r.raise_for_status()
    data = r.json().get("data") or []
    return {str(s["spanID"]).rjust(16, "0") for t in data for s in t["spans"]}


def _call_ids(first_calls: Calls, recorder: OtlpRecorder) -> dict[str, tuple[str, set[str]]]:
    """call_id -> (trace id, the span ids the agent exported for that call)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for r in first_calls.results:
        spans = trace_of(recorder, r.room_sid)
        call_ids = {s.call_id for s in spans} - {None}
        assert len(call_ids) == 1, call_ids
        out[str(call_ids.pop())] = (spans[0].trace_id, {s.span_id for s in spans})
    return out


def test_the_trace_store_has_every_span_of_each_real_call(first_calls: Calls, recorder: OtlpRecorder) -> None:
    for call_id, (trace_id, exported) in _call_ids(first_calls, recorder).items():
        stored = wait_for(lambda t=trace_id, e=exported: (s := _jaeger_span_ids(t)) >= e and s,  # type: ignore[misc]
                          f"Jaeger to hold every span of call {call_id}", 60)
        assert stored == exported, (call_id, sorted(stored ^ exported))


def test_voxpulse_trace_prints_the_real_calls_tree(first_calls: Calls, recorder: OtlpRecorder) -> None:
    call_id, (trace_id, _exported) = next(iter(_call_ids(first_calls, recorder).items()))
    wait_for(lambda: _jaeger_span_ids(trace_id), f"Jaeger to hold call {call_id}", 60)
    env = {**os.environ, "VOXPULSE_TRACE_STORE": "jaeger", "VOXPULSE_TRACE_STORE_URL": JAEGER, "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "voxpulse_console", "trace", call_id], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    for name in (LIVEKIT_JOB_ROOT, "call", "agent_turn", "speech_to_text"):
        assert name in out.stdout, (name, out.stdout[-3000:])
    assert trace_id in out.stdout


@pytest.fixture(scope="module")
def real_console(history_dsn: str | None, first_calls: Calls, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[Console]:
    """The console on the real calls' history, Jaeger and Prometheus."""
    c = start_console(tmp_path_factory.mktemp("console"), history_dsn, VOXPULSE_PROMETHEUS_URL=PROMETHEUS,
                      VOXPULSE_TRACE_STORE="jaeger", VOXPULSE_TRACE_STORE_URL=JAEGER)
    try:
        yield c
    finally:
        stop_console(c)


def test_the_console_shows_every_span_of_a_real_call(
    first_calls: Calls, recorder: OtlpRecorder, real_console: Console, request: pytest.FixtureRequest,
) -> None:
    client = real_console.client(ADMIN)
    request.addfinalizer(client.close)
    for call_id, (trace_id, exported) in _call_ids(first_calls, recorder).items():
        wait_for(lambda t=trace_id, e=exported: _jaeger_span_ids(t) >= e, f"Jaeger to hold call {call_id}", 60)  # type: ignore[misc]
        r = client.get(f"/api/calls/{call_id}")
        assert r.status_code == 200, r.text
        view = r.json()
        assert view["sources"]["trace"], view["sources"]
        link = view["links"]["trace"]
        assert link == f"/api/traces/{trace_id}"  # the console's own: opens wherever the console does
        raw = client.get(link)
        assert raw.status_code == 200, raw.text
        assert {s["span_id"] for s in raw.json()["spans"]} == exported
        assert raw.json()["call_id"] == call_id
        # each turn's anatomy adds up to its time to first word; a barge-in is marked on its turn
        turns = [lane for lane in view["lanes"] if lane["index"] is not None]
        assert turns and all(lane["anatomy"] for lane in turns), turns
        for lane in turns:
            assert sum(p["ms"] for p in lane["anatomy"]) == pytest.approx(lane["ttfw_ms"], abs=1.5), lane["anatomy"]
            assert not lane["data_errors"], lane["data_errors"]
        barged = [i for lane in turns for i in lane["interruptions"] if i["event"] == "interruption"]
        scenario = next(r.scenario for r in first_calls.results
                        if trace_of(recorder, r.room_sid)[0].trace_id == trace_id)
        assert [(i["direction"], i["kind"]) for i in barged if i["direction"] == "caller"] == (
            [("caller", "interruption")] if scenario == "order_tyres" else []), (scenario, barged)


def test_an_exemplar_of_a_real_call_opens_that_call(
    first_calls: Calls, recorder: OtlpRecorder, worker: RunningWorker, real_console: Console,
    request: pytest.FixtureRequest,
) -> None:
    """The latency page's exemplars (Prometheus, from the collector's span metrics) each open the
    call they came from, or say plainly that they are background work."""
    client = real_console.client(ADMIN)
    request.addfinalizer(client.close)
    ours = _call_ids(first_calls, recorder)
    by_trace = {trace_id: call_id for call_id, (trace_id, _) in ours.items()}

    def exemplars() -> list[dict[str, object]]:
        r = client.get("/api/latency", window="1h")
        r.raise_for_status()
        items: list[dict[str, object]] = r.json().get("exemplars") or []
        return [x for x in items if x["trace_id"] in by_trace]

    found = wait_for(exemplars, "an exemplar of the real calls on the latency page", 90)
    for x in found:
        r = client.get(f"/api/traces/{x['trace_id']}/call")
        assert r.status_code == 200, r.text
        assert r.json()["call_id"] == by_trace[str(x["trace_id"])], r.json()
    # every exemplar Prometheus holds for this worker's spans: a call, or named background work
    end = time.time() + 60
    q = f'traces_span_metrics_duration_milliseconds_bucket{{service_name="{worker.service}"}}'
    r = httpx.get(f"{PROMETHEUS}/api/v1/query_exemplars",
                  params={"query": q, "start": first_calls.started_at - 60, "end": end}, timeout=10)
    r.raise_for_status()
    trace_ids = {e["labels"]["trace_id"] for s in r.json()["data"] for e in s["exemplars"]}
    assert trace_ids
    for tid in sorted(trace_ids)[:40]:
        answer = client.get(f"/api/traces/{tid}/call")
        assert answer.status_code == 200, (tid, answer.text)
        body = answer.json()
        assert body["call_id"] or body.get("background"), body
