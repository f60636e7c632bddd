"""voxpulse_console/insights/_fold.py: LiveKit's per-job DELTA metrics folded into cumulative series,
on the metrics a live worker sent on a real call (tests/fixtures/livekit_observability_v0_real) and on
requests shaped like them from several jobs."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from tests.insights.capture import REAL_CALL
from voxpulse_console.insights._fold import CUMULATIVE, DELTA, PER_JOB_KEYS, DeltaFolder


def _real(name: str) -> bytes:
    body = (REAL_CALL / name).read_bytes()
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def _parse(body: bytes | None) -> ExportMetricsServiceRequest:
    assert body is not None
    r = ExportMetricsServiceRequest()
    r.ParseFromString(body)
    return r


def _request(job: str, *, counter: int = 0, hist: list[int] | None = None, bounds: tuple[float, ...] = (1.0, 5.0),
             temporality: int = DELTA, time_ns: int = 2_000, twice: bool = False) -> bytes:
    """One job process's export: a counter and a histogram, with LiveKit's per-job keys."""
    r = ExportMetricsServiceRequest()
    rm = r.resource_metrics.add()
    for k, v in (("service.name", "livekit-agents"), ("service.instance.id", f"inst-{job}")):
        kv = rm.resource.attributes.add()
        kv.key, kv.value.string_value = k, v
    sm = rm.scope_metrics.add()
    sm.scope.name = "livekit-agents"

    def labels(p: Any) -> None:
        for k, v in (("room_id", f"RM_{job}"), ("job_id", f"AJ_{job}"), ("model_name", "m1")):
            kv = p.attributes.add()
            kv.key, kv.value.string_value = k, v

    m = sm.metrics.add()
    m.name = "lk.agents.usage.tts_characters"
    m.sum.aggregation_temporality, m.sum.is_monotonic = temporality, True
    for _ in range(2 if twice else 1):
        p = m.sum.data_points.add()
        p.start_time_unix_nano, p.time_unix_nano, p.as_int = 1_000, time_ns, counter
        labels(p)
    if hist is not None:
        h = sm.metrics.add()
        h.name = "lk.agents.turn.e2e_latency"
        h.histogram.aggregation_temporality = temporality
        p = h.histogram.data_points.add()
        p.start_time_unix_nano, p.time_unix_nano = 1_000, time_ns
        p.explicit_bounds.extend(bounds)
        p.bucket_counts.extend(hist)
        p.count, p.sum, p.min, p.max = sum(hist), float(sum(hist)), 0.5, 4.0
        labels(p)
    return r.SerializeToString()


def _points(r: ExportMetricsServiceRequest, name: str) -> list[Any]:
    return [p for rm in r.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
            for p in getattr(m, m.WhichOneof("data")).data_points]


def test_a_real_calls_metrics_lose_their_job_and_become_cumulative() -> None:
    folder = DeltaFolder()
    for name in ("metrics-1.bin", "metrics-2.bin"):
        out = _parse(folder.fold(_real(name)))
        for rm in out.resource_metrics:
            assert "service.instance.id" not in {kv.key for kv in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    data = getattr(m, m.WhichOneof("data"))
                    assert data.aggregation_temporality == CUMULATIVE, m.name
                    for p in data.data_points:
                        keys = {kv.key for kv in p.attributes}
                        assert not keys & PER_JOB_KEYS, (m.name, keys)
    assert len(folder) > 0


def test_jobs_add_up_in_one_stream() -> None:
    folder = DeltaFolder()
    first = _parse(folder.fold(_request("a", counter=3, hist=[1, 2, 0])))
    second = _parse(folder.fold(_request("b", counter=4, hist=[0, 1, 1], time_ns=3_000)))
    (c1,), (c2,) = _points(first, "lk.agents.usage.tts_characters"), _points(second, "lk.agents.usage.tts_characters")
    assert (c1.as_int, c2.as_int) == (3, 7)
    assert c1.start_time_unix_nano == c2.start_time_unix_nano == 1_000
    assert {kv.key for kv in c2.attributes} == {"model_name"}
    (h,) = _points(second, "lk.agents.turn.e2e_latency")
    assert list(h.bucket_counts) == [1, 3, 1] and h.count == 5 and h.sum == 5.0 and (h.min, h.max) == (0.5, 4.0)
    assert len(folder) == 2  # two streams, whatever the number of jobs


def test_a_stream_never_goes_back_in_time() -> None:
    folder = DeltaFolder()
    folder.fold(_request("a", counter=1, time_ns=5_000))
    late = _parse(folder.fold(_request("b", counter=1, time_ns=4_000)))  # another process's older batch
    (p,) = _points(late, "lk.agents.usage.tts_characters")
    assert (p.as_int, p.time_unix_nano) == (2, 5_000)


def test_the_same_stream_twice_in_one_request_goes_out_once_with_the_total() -> None:
    out = _parse(DeltaFolder().fold(_request("a", counter=2, twice=True)))
    (p,) = _points(out, "lk.agents.usage.tts_characters")
    assert p.as_int == 4


def test_changed_buckets_start_the_histogram_over() -> None:
    folder = DeltaFolder()
    folder.fold(_request("a", hist=[1, 1, 1]))
    out = _parse(folder.fold(_request("b", hist=[2, 0, 0, 0], bounds=(1.0, 2.0, 5.0))))
    (h,) = _points(out, "lk.agents.turn.e2e_latency")
    assert list(h.bucket_counts) == [2, 0, 0, 0] and h.count == 2


def test_cumulative_points_go_through_untouched() -> None:
    body = _request("a", counter=9, temporality=CUMULATIVE)
    out = _parse(DeltaFolder().fold(body))
    (p,) = _points(out, "lk.agents.usage.tts_characters")
    assert p.as_int == 9 and {kv.key for kv in p.attributes} == {"room_id", "job_id", "model_name"}


def test_not_otlp_metrics() -> None:
    with pytest.raises(ValueError, match="not an OTLP metrics request"):
        DeltaFolder().fold(b"\xff\xff\xff not protobuf")


def test_fixture_manifest_lists_the_metrics_requests() -> None:
    manifest = json.loads((REAL_CALL / "manifest.json").read_text(encoding="utf-8"))
    assert [r["body"] for r in manifest["requests"] if "/metrics/" in r["path"]] == ["metrics-1.bin", "metrics-2.bin"]
