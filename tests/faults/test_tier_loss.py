"""The tiered topology loses nothing, at its load-balancing tier, that one collector would not
(docs/scaling.md, "What a fault costs"). Real processes: the native stack's load-balancing collector
(otel-collector/lb.yaml), processing collectors, the collector-ring and Jaeger, in a temporary state
folder.

* A processing collector dead while traces are sent: the batches that met it stay in the
  load-balancing tier's queue and, once the collector-ring has dropped it, reach the survivor --
  every span the tier accepted is stored.
* The load-balancing collector killed (SIGKILL) right after acknowledging the last export, while no
  processing collector takes its traces: what it acknowledged is in its queue on disk and is
  delivered after its restart.

Both fail with the tier before this test (a batch processor, then an in-memory queue per backend):
the first loses the dead collector's share, the second everything it held.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import poll, unavailable, wait_for
from voxpulse_console import stack
from voxpulse_console.stack import _layout, _topology

pytestmark = [pytest.mark.stack, pytest.mark.slow]

JAEGER = "http://127.0.0.1:16686"
LB_OTLP = "http://127.0.0.1:4318/v1/traces"
LB_METRICS = "http://127.0.0.1:8888/metrics"
TRACES, SPANS_PER_TRACE = 200, 5
# 100 %: every trace is stored, so the store holds exactly what the tier delivered; decisions soon
# after the root span, so the test waits seconds, not the shipped 5 s per trace.
ENV = {"VOXPULSE_TRACE_SAMPLING_PERCENT": "100", "VOXPULSE_TRACE_DECISION_AFTER_ROOT": "1s",
       "VOXPULSE_TRACE_DECISION_WAIT": "30s"}


def _metric(url: str, name: str, where: str = "") -> float:
    """Sum of a collector's own metric ``name`` over the series whose labels contain ``where``."""
    total = 0.0
    for line in httpx.get(url, timeout=5).text.splitlines():
        m = re.match(rf"{re.escape(name)}(?:_total)?(\{{[^}}]*\}})? (\S+)$", line)
        if m and where in (m.group(1) or ""):
            total += float(m.group(2))
    return total


@pytest.fixture
def tier(tmp_path: Path) -> Iterator[Path]:
    if missing := [t for t in ("otelcol", "jaeger") if stack.binaries().get(t) is None]:
        unavailable("STACK", f"missing {', '.join(missing)}: run scripts/build-backends.sh")
    ports = {p for c in stack.COMPONENTS.values() for p in c.ports}
    ports |= {p for k in (1, 2) for p in (stack.processing_ports(k).otlp, 13150)}
    if busy := sorted(p for p in ports if stack.port_busy(p)):
        unavailable("STACK", f"ports {busy} are taken by another stack; these tests kill its collectors")
    try:
        yield tmp_path
    finally:
        stack.down(state_dir=tmp_path)


def _start(state: Path, collectors: int, names: Sequence[str]) -> None:
    stack.up([], state_dir=state, collectors=collectors)  # the topology only
    for name in names:
        stack.up([name], state_dir=state, wait_s=90, env=ENV)


def _send(service: str) -> dict[str, set[str]]:
    """TRACES traces of SPANS_PER_TRACE spans, exported to the load-balancing tier and accepted by
    it; returns trace id -> span ids."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test_tier_loss")
    for _ in range(TRACES):
        with tracer.start_as_current_span("call"):
            for i in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span(f"turn-{i}"):
                    pass
    provider.shutdown()
    spans: Sequence[ReadableSpan] = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=LB_OTLP, timeout=10)
    for i in range(0, len(spans), 100):
        assert exporter.export(spans[i:i + 100]) is SpanExportResult.SUCCESS, "the tier refused spans"
    exporter.shutdown()
    sent: dict[str, set[str]] = {}
    for s in spans:
        sent.setdefault(format(s.context.trace_id, "032x"), set()).add(format(s.context.span_id, "016x"))
    assert sum(map(len, sent.values())) == TRACES * SPANS_PER_TRACE
    return sent


def _stored(sent: dict[str, set[str]]) -> tuple[int, int]:
    """(spans sent but not in Jaeger, spans Jaeger returns more than once)."""
    missing = twice = 0
    with httpx.Client(timeout=10) as http:
        for tid, ids in sent.items():
            r = http.get(f"{JAEGER}/api/traces/{tid}")
            data = (r.json().get("data") or []) if r.status_code == 200 else []
            stored = [s["spanID"].rjust(16, "0") for t in data for s in t.get("spans", [])]
            missing += len(ids - set(stored))
            twice += len(stored) - len(set(stored))
    return missing, twice


def _all_stored(sent: dict[str, set[str]], what: str) -> None:
    counts: list[tuple[int, int]] = []

    def done() -> bool:
        counts.append(_stored(sent))
        return counts[-1][0] == 0

    _, waited = poll(done, 90, every_s=2)
    missing, twice = counts[-1] if counts else (-1, 0)
    assert missing == 0, (f"{what}: {missing} of {TRACES * SPANS_PER_TRACE} accepted spans not in the trace "
                          f"store after {waited:.0f} s")
    print(f"{what}: all {TRACES * SPANS_PER_TRACE} accepted spans stored after {waited:.0f} s "
          f"({twice} returned twice by the store)")


def test_a_dead_processing_collector_loses_nothing_the_tier_accepted(tier: Path) -> None:
    _start(tier, 2, ["jaeger", "otelcol-1", "otelcol-2", "otelcol"])  # and the collector-ring with them
    # the ring lists both; without the collector-ring it keeps the dead one until we start it again
    assert stack.stop("collector-ring", state_dir=tier)
    assert _topology.read_ring_file(_layout.ring_file(tier)) == [
        stack.processing_ports(k).endpoint for k in (1, 2)]
    assert stack.stop("otelcol-2", state_dir=tier)  # dead for good (killed, its keeper would restart it)
    sent = _send("tier-loss-dead-backend")
    # the ring still lists the dead collector: the tier has routed the batches (the survivor got its
    # share) and those that met the dead one wait, retried, in the tier
    survivor = f"http://127.0.0.1:{stack.processing_ports(1).telemetry}/metrics"
    wait_for(lambda: _metric(survivor, "otelcol_receiver_accepted_spans") > 0, "the survivor's share delivered", 30)
    stack.start("collector-ring", state_dir=tier, wait_s=30)
    ring = wait_for(lambda: (r := httpx.get(f"http://{stack.RING_LISTEN}/ring", timeout=5).json())["changes"]
                    >= 1 and r, "the ring to drop otelcol-2", 30)
    assert ring["ring"] == [stack.processing_ports(1).endpoint]
    _all_stored(sent, "after the ring dropped the dead collector")


def test_a_killed_load_balancing_collector_delivers_its_queue_after_restart(tier: Path) -> None:
    _start(tier, 1, ["jaeger", "otelcol-1", "otelcol"])
    assert stack.stop("otelcol-1", state_dir=tier)  # down until started again below
    sent = _send("tier-loss-lb-restart")
    # killed as soon as the last export was acknowledged (well within the 1 s the queue batches for)
    assert stack.kill("otelcol", state_dir=tier)
    assert _stored(sent)[0] == TRACES * SPANS_PER_TRACE  # nothing reached the store before the kill
    stack.start("otelcol-1", state_dir=tier, wait_s=60)
    # the load-balancing collector came back by itself (its keeper), once
    assert stack.start("otelcol", state_dir=tier, wait_s=60) == "running"
    assert {r.name: r.restarts for r in stack.status(state_dir=tier)}["otelcol"] == 1
    _all_stored(sent, "after the load-balancing collector's restart")
