"""The worker's metrics relay with real job processes: the series do not grow with the calls.

A LiveKit-shaped worker (tests/telemetry/relay_worker.py: a forkserver, one ``job_proc`` process per
call, each calling only ``telemetry.configure()`` and recording one call) exports into the project's
OTLP recorder (agent.realcalls.OtlpRecorder), which forwards the raw requests to a second recorder
here that keeps the values. With the default ``VOXPULSE_METRICS_RELAY=auto`` the first job process
starts the worker's relay and every job process sends its deltas there; the relay is the one
writer. ``off`` is the control: one writer, one ``instance``, per call.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.realcalls import OtlpRecorder
from tests.telemetry.test_relay import Collector

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICE = "relay-processes"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the relay socket is Linux's")


@pytest.fixture
def recorders() -> Iterator[tuple[OtlpRecorder, Collector]]:
    raw = Collector()
    try:
        with OtlpRecorder(forward_to=raw.url) as recorder:
            yield recorder, raw
    finally:
        raw.close()


def _run_worker(calls: int, endpoint: str, relay: str) -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VOXPULSE_"))}
    env.update(PYTHONPATH=ROOT, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, VOXPULSE_METRICS_RELAY=relay,
               OTEL_METRIC_EXPORT_INTERVAL="60000", VOXPULSE_EXPORTER="otlp", VOXPULSE_METRICS_EXPORTER="otlp")
    done = subprocess.run([sys.executable, "-m", "tests.telemetry.relay_worker", str(calls)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return bytes.fromhex(done.stdout.split()[0])


def _series(recorder: OtlpRecorder) -> tuple[set[tuple[object, ...]], set[str]]:
    """(series, instances) of the service: a series is a metric name, its labels and its instance,
    what the collector's Prometheus exporter turns into one time series."""
    series: set[tuple[object, ...]] = set()
    instances: set[str] = set()
    for p in recorder.points():
        if p.resource.get("service.name") != SERVICE:
            continue
        instance = str(p.resource.get("service.instance.id"))
        instances.add(instance)
        series.add((p.name, frozenset((k, str(v)) for k, v in p.attributes.items()), instance))
    return series, instances


def _calls_total(raw: Collector) -> float:
    """The latest cumulative count of voice.calls, summed over the writers."""
    latest: dict[str, float] = {}
    for req in raw.requests:
        for rm in req.resource_metrics:
            instance = next((kv.value.string_value for kv in rm.resource.attributes
                             if kv.key == "service.instance.id"), "")
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "voice.calls" and m.WhichOneof("data") == "sum":
                        latest[instance] = float(sum(p.as_int or p.as_double for p in m.sum.data_points))
    return sum(latest.values())


def _gone(name: bytes) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(name)
        except OSError:
            return True
    return False


def _through_relay(calls: int, recorders: tuple[OtlpRecorder, Collector]) -> tuple[int, set[str]]:
    recorder, raw = recorders
    name = _run_worker(calls, recorder.endpoint, "auto")
    assert name, "the worker knows its relay socket"
    # the relay exports once more when the worker has gone, then leaves
    assert recorder.wait_for(lambda _: _calls_total(raw) == calls and _gone(name), timeout=30), (
        _calls_total(raw), _gone(name))
    series, instances = _series(recorder)
    return len(series), instances


def test_series_do_not_grow_with_the_job_processes() -> None:
    counts = []
    for calls in (1, 4):
        raw = Collector()
        try:
            with OtlpRecorder(forward_to=raw.url) as recorder:
                n, instances = _through_relay(calls, (recorder, raw))
        finally:
            raw.close()
        assert len(instances) == 1, f"{calls} job processes, one writer: {instances}"
        counts.append(n)
    assert counts[0] >= 5, f"a call's metrics came through: {counts}"
    assert counts[1] == counts[0], f"series with 1 call vs 4 calls: {counts}"


def test_without_the_relay_every_job_process_is_an_instance(recorders: tuple[OtlpRecorder, Collector]) -> None:
    recorder, raw = recorders
    _run_worker(3, recorder.endpoint, "off")
    assert recorder.wait_for(lambda _: _calls_total(raw) == 3, timeout=30)
    series, instances = _series(recorder)
    assert len(instances) == 3
    per_instance = len(series) // 3
    assert len(series) == 3 * per_instance and per_instance >= 5
