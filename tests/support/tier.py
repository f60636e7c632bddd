"""When the scale-out topology has nothing in flight: every span the load-balancing collector accepted
has had its trace's decision and, if kept, is written in Jaeger.

Queue sizes and the traces the processing collectors hold are not enough: a span also waits in the
load-balancing collector's batch (1 s), in a processing collector's batch (200 ms), on the wire, and
in Jaeger's own write queue. A check that missed those read a kept call 33 of its 68 spans stored
(CI run of 74496b3), and 63 of 96 here under load, whole eight seconds later. :class:`TierSettled`
accounts for the spans stage by stage, from each component's own metrics:

* the load-balancing collector queues nothing and has sent at least what it accepted, and the
  processing collectors accepted at least that;
* each processing collector holds no undecided trace (every new trace id has its decision), queues
  nothing, and has exported every span tail sampling let through (its batch is empty);
* Jaeger accepted at least what the processing collectors exported, and wrote all it accepted;

and then once more with the same counters: a span that a receiver acknowledged but the tail-sampling
loop has not taken yet moves a counter by the next reading.

    wait_for(TierSettled(2), "the tier to settle", 120)
"""

from __future__ import annotations

import time
from typing import Final

import httpx

from voxpulse_console.stack import processing_ports

__all__ = ["TierSettled", "counters"]

LB_TELEMETRY: Final = 8888  # the load-balancing collector's own metrics (otel-collector/lb.yaml)
JAEGER_TELEMETRY: Final = 14269  # Jaeger's own metrics (jaeger/jaeger.yaml)
_PART_LABELS: Final = ("exporter", "processor", "decision")


def counters(port: int) -> dict[str, float]:
    """A component's own metrics on 127.0.0.1:``port``, summed per series name plus the first label
    that tells its parts apart here (exporter, processor, decision):
    ``{"otelcol_exporter_sent_spans|otlp_grpc/tracestore": 187.0, ...}``."""
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        pairs = (kv.split("=", 1) for kv in labels.rstrip("}").split(",") if "=" in kv)
        part = next((v.strip('"') for k, v in pairs if k in _PART_LABELS), "")
        key = f"{name}|{part}" if part else name
        out[key] = out.get(key, 0.0) + float(value)
    return out


def in_flight(collectors: int) -> tuple[float, ...] | None:
    """The tier's span counters when nothing is in flight (module docstring); None while a span is.

    The counters at both ends must exist once spans went through: a renamed metric raises KeyError
    (a wait on this ends with it) instead of reading as 0."""
    lb, store = counters(LB_TELEMETRY), counters(JAEGER_TELEMETRY)
    procs = [counters(processing_ports(k).telemetry) for k in range(1, collectors + 1)]
    lb_accepted = lb["otelcol_receiver_accepted_spans"]
    lb_sent = lb["otelcol_exporter_sent_spans|load_balancing"]
    counted = [lb_accepted, lb_sent]
    held = [lb.get("otelcol_exporter_queue_size|load_balancing", 0.0), max(0.0, lb_accepted - lb_sent),
            max(0.0, lb_accepted - sum(p.get("otelcol_receiver_accepted_spans", 0.0) for p in procs))]
    exported = 0.0
    for p in procs:
        new_traces = p.get("otelcol_processor_tail_sampling_new_trace_id_received", 0.0)
        decided = sum(p.get(f"otelcol_processor_tail_sampling_global_count_traces_sampled|{d}", 0.0)
                      for d in ("sampled", "not_sampled"))
        let_through = p.get("otelcol_processor_outgoing_items|transform/collector", 0.0)
        sent = p.get("otelcol_exporter_sent_spans|otlp_grpc/tracestore", 0.0)
        exported += sent
        counted += [p.get("otelcol_receiver_accepted_spans", 0.0), new_traces, decided, let_through, sent]
        held += [p.get("otelcol_processor_tail_sampling_sampling_traces_on_memory", 0.0), new_traces - decided,
                 p.get("otelcol_exporter_queue_size|otlp_grpc/tracestore", 0.0), let_through - sent]
    accepted = store["otelcol_receiver_accepted_spans_total"]
    written = (store["otelcol_exporter_sent_spans_total|jaeger_storage_exporter"]
               + store.get("otelcol_exporter_send_failed_spans_total|jaeger_storage_exporter", 0.0))
    counted += [accepted, written]
    held += [max(0.0, exported - accepted), accepted - written]
    return None if any(held) else tuple(counted)


class TierSettled:
    """A condition for :func:`tests.support.wait_for`: True once :func:`in_flight` found nothing in
    flight twice in a row, ``gap_s`` apart, with the same counters (more than the tail-sampling
    loop's 1 s tick)."""

    def __init__(self, collectors: int, *, gap_s: float = 1.5) -> None:
        self.collectors = collectors
        self.gap_s = gap_s
        self._last: tuple[float, ...] | None = None

    def __call__(self) -> bool:
        now = in_flight(self.collectors)
        if now is not None and now == self._last:
            return True
        self._last = now
        if now is not None:
            time.sleep(self.gap_s)
        return False
