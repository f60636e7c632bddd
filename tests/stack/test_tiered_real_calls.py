"""Real calls through the scale-out topology with 10 % tail sampling: a load-balancing collector, two
processing collectors, Jaeger. A call that a rule keeps (a transfer to an operator) is stored whole,
every span the agent's job processes exported; no call is ever stored in part.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from agent.realcalls import OtlpRecorder
from tests.realcalls.conftest import (
    LiveKit,
    RunningWorker,
    jobs_done,
    livekit_stack,
    place,
    require_media,
    running_worker,
)
from tests.support import wait_for
from voxpulse_console import stack
from voxpulse_console.stack import processing_ports

pytestmark = [pytest.mark.stack, pytest.mark.slow]

JAEGER = "http://127.0.0.1:16686"
PERCENT = "10"


LB_TELEMETRY = 8888  # the load-balancing collector's own metrics (otel-collector/lb.yaml)
JAEGER_TELEMETRY = 14269  # Jaeger's own metrics (jaeger/jaeger.yaml)


def _counters(port: int) -> dict[str, float]:
    """A component's own metrics, summed per series name plus the one label that tells its parts
    apart here (exporter, processor, decision): ``{"otelcol_exporter_sent_spans|otlp_grpc/tracestore": 187}``."""
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        part = next((kv.split("=", 1)[1].strip('"') for kv in labels.rstrip("}").split(",")
                     if kv.split("=", 1)[0] in ("exporter", "processor", "decision")), "")
        key = f"{name}|{part}" if part else name
        out[key] = out.get(key, 0.0) + float(value)
    return out


def _in_flight() -> tuple[float, ...] | None:
    """The pipeline's span counters when no span the agent exported is anywhere between the
    load-balancing collector and Jaeger's storage; None while one is. Accounted stage by stage (queue
    sizes and the traces held alone miss a span in a batch, in flight to the next stage, or in
    Jaeger's own queue):

    * the load-balancing collector queues nothing and has sent at least what it accepted, and the
      processing collectors accepted at least that;
    * each processing collector holds no undecided trace (every new trace id has its decision), queues
      nothing, and has exported every span tail sampling let through (nothing in its batch);
    * Jaeger accepted at least what the processing collectors exported, and wrote all it accepted.
    """
    lb, store = _counters(LB_TELEMETRY), _counters(JAEGER_TELEMETRY)
    procs = [_counters(processing_ports(k).telemetry) for k in (1, 2)]
    # the ends of the pipeline have counted spans by now (a renamed metric fails here, never reads as 0)
    lb_accepted = lb["otelcol_receiver_accepted_spans"]
    lb_sent = lb["otelcol_exporter_sent_spans|load_balancing"]
    counted = [lb_accepted, lb_sent]
    held = [lb.get("otelcol_exporter_queue_size|load_balancing", 0.0), max(0.0, lb_accepted - lb_sent),
            max(0.0, lb_accepted - sum(p.get("otelcol_receiver_accepted_spans", 0.0) for p in procs))]
    for p in procs:
        new_traces = p.get("otelcol_processor_tail_sampling_new_trace_id_received", 0.0)
        decided = sum(p.get(f"otelcol_processor_tail_sampling_global_count_traces_sampled|{d}", 0.0)
                      for d in ("sampled", "not_sampled"))
        let_through = p.get("otelcol_processor_outgoing_items|transform/collector", 0.0)
        sent = p.get("otelcol_exporter_sent_spans|otlp_grpc/tracestore", 0.0)
        counted += [p.get("otelcol_receiver_accepted_spans", 0.0), new_traces, decided, let_through, sent]
        held += [p.get("otelcol_processor_tail_sampling_sampling_traces_on_memory", 0.0), new_traces - decided,
                 p.get("otelcol_exporter_queue_size|otlp_grpc/tracestore", 0.0), let_through - sent]
    exported = sum(p.get("otelcol_exporter_sent_spans|otlp_grpc/tracestore", 0.0) for p in procs)
    accepted = store["otelcol_receiver_accepted_spans_total"]
    written = (store["otelcol_exporter_sent_spans_total|jaeger_storage_exporter"]
               + store.get("otelcol_exporter_send_failed_spans_total|jaeger_storage_exporter", 0.0))
    counted += [accepted, written]
    held += [max(0.0, exported - accepted), accepted - written]
    return None if any(held) else tuple(counted)


def _settled(previous: list[tuple[float, ...]]) -> bool:
    """Nothing in flight, twice in a row with the same counters: a span the receiver had acknowledged
    but the tail-sampling loop not yet taken (it moves counters on its next 1 s tick at the latest)
    shows as a change between the two readings."""
    now = _in_flight()
    if now is None:
        previous.clear()
        return False
    if previous and previous[-1] == now:
        return True
    previous[:] = [now]
    time.sleep(1.5)
    return False


def _stored(trace_id: str) -> set[str]:
    r = httpx.get(f"{JAEGER}/api/traces/{trace_id}", timeout=10)
    if r.status_code == 404:
        return set()
    r.raise_for_status()
    return {str(s["spanID"]).rjust(16, "0") for t in r.json().get("data") or [] for s in t["spans"]}


@dataclass
class Tiered:
    lk: LiveKit
    recorder: OtlpRecorder
    worker: RunningWorker


@pytest.fixture(scope="module")
def tiered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiered]:
    require_media()
    state = tmp_path_factory.mktemp("tiered-real")
    busy = [n for n, c in stack.components(state_dir=state).items() if not c.in_media and any(
        stack.port_busy(p) for p in c.ports)]
    assert not busy, f"another stack holds the ports of {busy}"
    env = {"VOXPULSE_TRACE_SAMPLING_PERCENT": PERCENT, "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "2s",
           "VOXPULSE_TRACE_DECISION_WAIT": "60s"}
    with livekit_stack(state, None, env=env, collectors=2) as lk:
        assert stack.pid("otelcol-2", state_dir=state) is not None
        with OtlpRecorder(forward_to="http://127.0.0.1:4318") as rec, running_worker(
            lk, rec.endpoint, None, state / "worker.log", VOXPULSE_TRACE_SAMPLING_PERCENT=PERCENT,
        ) as w:
            yield Tiered(lk, rec, w)


def test_a_kept_real_call_is_stored_whole_and_none_in_part(tiered: Tiered) -> None:
    results = place(tiered.worker, tiered.lk, ["ask_operator", "order_status", "order_status"], concurrency=3,
                    arrival_s=0.5)
    assert not [r.error for r in results if r.error], [r.error for r in results]
    assert jobs_done(tiered.recorder, [r.room_sid for r in results]), tiered.worker.worker.tail(40)
    exported: dict[str, set[str]] = {}
    for r in results:
        roots = [s for s in tiered.recorder.roots("job_entrypoint") if s.attributes.get("lk.room_sid") == r.room_sid]
        assert len(roots) == 1
        exported[r.scenario + ":" + r.room_sid] = {s.span_id for s in tiered.recorder.traces()[roots[0].trace_id]}
        exported[r.scenario + ":" + r.room_sid].add(roots[0].trace_id)  # remembered with the spans
    transfer = next(k for k in exported if k.startswith("ask_operator:"))

    def trace_id(key: str) -> str:
        return next(x for x in exported[key] if len(x) == 32)

    def spans(key: str) -> set[str]:
        return {x for x in exported[key] if len(x) == 16}

    # the transfer is kept by rule: every span, once its decision is made (2 s after its root)
    stored = wait_for(lambda: (got := _stored(trace_id(transfer))) >= spans(transfer) and got,
                      "the transferred call's whole trace in Jaeger", 120)
    assert stored == spans(transfer), sorted(stored ^ spans(transfer))
    # the others: whole or not at all (10 % of the rest by trace id), never a part -- once every
    # collector has decided and sent what it held
    readings: list[tuple[float, ...]] = []
    wait_for(lambda: _settled(readings), "every collector to decide every trace and Jaeger to store what was kept",
             120)
    ring = httpx.get(f"http://{stack.RING_LISTEN}/ring", timeout=5).json()
    for key in exported:
        got = _stored(trace_id(key))
        assert got in (set(), spans(key)), (key, len(got), len(spans(key)), ring)
