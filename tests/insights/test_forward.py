"""The OTLP parts of LiveKit's upload reach the REAL collector (the stack's otelcol binary, started
in a temporary state folder): its receiver accepts LiveKit's spans, and LiveKit's DELTA counter comes
out of the Prometheus exporter as one cumulative series, whatever the number of jobs (the receiver
folds LiveKit's per-job delta streams: voxpulse_console/insights/_fold.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.insights.capture import FIXTURE_KEY, FIXTURE_SECRET
from tests.insights.test_fold import _request as job_export
from tests.insights.test_receiver import request_of
from tests.insights.test_wire import token
from tests.support import binary, closed_port, unavailable, wait_for
from voxpulse_console import stack
from voxpulse_console.insights import InsightsConfig, start


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary("otelcol")
    if any(stack.port_busy(p) for p in stack.COMPONENTS["otelcol"].ports):
        unavailable("STACK", "the collector's ports are taken here (run in a network namespace of your own)")
    state = tmp_path_factory.mktemp("otelcol")
    try:
        assert stack.start("otelcol", state_dir=state, wait_s=60) == "started"
        yield "http://127.0.0.1:4318"
    finally:
        stack.stop("otelcol", state_dir=state)


def _exposition() -> str:
    """The collector's Prometheus exporter, as Prometheus scrapes it."""
    return httpx.get("http://127.0.0.1:8889/metrics", timeout=10).text


def _metric(text: str, name: str) -> float:
    found = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)]
    return sum(found)


async def test_traces_and_delta_metrics_reach_the_collector(collector: str, tmp_path: Path) -> None:
    config = InsightsConfig(dsn=None, keys={FIXTURE_KEY: FIXTURE_SECRET}, folder=tmp_path,
                            forward={"traces": f"{collector}/v1/traces", "metrics": f"{collector}/v1/metrics"})
    runner = await start(config, "127.0.0.1:0")
    host, port = runner.addresses[0][:2]
    try:
        async with httpx.AsyncClient() as client:
            for kind in ("traces", "metrics"):
                path, headers, body = request_of(kind)
                headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
                headers["Authorization"] = f"Bearer {token()}"
                resp = await client.post(f"http://{host}:{port}{path}", content=body, headers=headers)
                assert resp.status_code == 200, (kind, resp.text)
    finally:
        await runner.cleanup()
    wait_for(lambda: _metric(httpx.get("http://127.0.0.1:8888/metrics").text,
                             "otelcol_receiver_accepted_spans") >= 1, "LiveKit's span accepted", 30)
    wait_for(lambda: _metric(httpx.get("http://127.0.0.1:8888/metrics").text,
                             "otelcol_receiver_accepted_metric_points") >= 1, "LiveKit's metric point accepted", 30)
    # the delta counter comes out as a counter of 1, without the job LiveKit stamps on every measurement
    exported = wait_for(lambda: [ln for ln in httpx.get("http://127.0.0.1:8889/metrics").text.splitlines()
                                 if ln.startswith("fixture_turns_total")], "LiveKit's delta counter exported", 30)
    assert len(exported) == 1 and exported[0].endswith(" 1") and "job_id" not in exported[0], exported


async def test_jobs_fold_into_one_cumulative_series(collector: str, tmp_path: Path) -> None:
    """Three job processes' DELTA exports (each its room, job and service.instance.id): one series in
    Prometheus's exposition, their sum, not a series per call."""
    config = InsightsConfig(dsn=None, keys={FIXTURE_KEY: FIXTURE_SECRET}, folder=tmp_path,
                            forward={"metrics": f"{collector}/v1/metrics"})
    runner = await start(config, "127.0.0.1:0")
    host, port = runner.addresses[0][:2]
    path, headers, _ = request_of("metrics")
    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-encoding")}
    try:
        async with httpx.AsyncClient() as client:
            for job, n in (("a", 3), ("b", 4), ("c", 5)):
                body = job_export(job, counter=n, hist=[1, 0, 0], time_ns=time.time_ns())
                resp = await client.post(f"http://{host}:{port}{path}", content=body,
                                         headers={**headers, "Authorization": f"Bearer {token()}"})
                assert resp.status_code == 200, resp.text
    finally:
        await runner.cleanup()

    def exported() -> list[str] | None:
        lines = [ln for ln in _exposition().splitlines() if ln.startswith("lk_agents_usage_tts_characters_total")]
        return lines if lines and lines[0].endswith(" 12") else None

    lines = wait_for(exported, "the three jobs' sum", 30)
    assert len(lines) == 1 and "job_id" not in lines[0] and "room_id" not in lines[0], lines
    count = [ln for ln in _exposition().splitlines() if ln.startswith("lk_agents_turn_e2e_latency_count")]
    assert len(count) == 1 and count[0].endswith(" 3"), count


async def test_collector_down_503(tmp_path: Path) -> None:
    """The collector away: 503, which LiveKit's OTLP exporter retries (nothing lost to a restart)."""
    with closed_port() as port:
        config = InsightsConfig(dsn=None, keys={FIXTURE_KEY: FIXTURE_SECRET}, folder=tmp_path,
                                forward={"traces": f"http://127.0.0.1:{port}/v1/traces"})
        runner = await start(config, "127.0.0.1:0")
        host, own = runner.addresses[0][:2]
        try:
            path, headers, body = request_of("traces")
            headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
            headers["Authorization"] = f"Bearer {token()}"
            async with httpx.AsyncClient() as client:
                resp = await client.post(f"http://{host}:{own}{path}", content=body, headers=headers)
        finally:
            await runner.cleanup()
    assert resp.status_code == 503 and resp.json() == {"error": "collector unavailable"}
