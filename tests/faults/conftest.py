"""Fixtures for the fault tests: the real collector, Jaeger, Prometheus (voxpulse_console/stack/) and a
stand-in agent process (agent_load.py) producing steady simulated calls. Traces are read back
through voxpulse_console.tracestore.

Without the binaries the stack tests skip with the reason, unless VOXPULSE_REQUIRE_STACK is set
(CI), where a missing binary is a failure. The stack runs in a temporary state folder with the
shipped configs (no test overrides) and is always stopped afterwards. It refuses to start when
another stack holds the fixed ports: these tests kill components and must own them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, PromClient, unavailable
from voxpulse_console import stack
from voxpulse_console.tracestore import JaegerTraceStore

HERE = Path(__file__).resolve().parent
PROM = "http://127.0.0.1:9090"
JAEGER = "http://127.0.0.1:16686"
COLLECTOR = "http://127.0.0.1:4318"
COLLECTOR_METRICS = "http://127.0.0.1:8888/metrics"


def pctl(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack(PromClient):
    state_dir: Path
    http: httpx.Client

    def traces_for_call(self, call_id: str, service: str) -> list[str]:
        """The call's trace ids in Jaeger (through the trace-store module)."""

        async def find() -> list[str]:
            async with JaegerTraceStore(JAEGER, services=[service]) as store:
                return await store.traces_for_call(call_id, lookback_s=3600)

        return asyncio.run(find())

    def spans_in_store(self, service: str, start_s: float, end_s: float, window_s: float = 10.0) -> int:
        """How many spans of ``service`` Jaeger holds that started in [start_s, end_s] (searched in
        windows, each trace counted once)."""

        async def count() -> int:
            seen: dict[str, int] = {}
            async with JaegerTraceStore(JAEGER, services=[service], timeout_s=60) as store:
                t = start_s
                while t < end_s:
                    for trace in await store.search(service, start_s=t, end_s=min(t + window_s, end_s), limit=5000):
                        seen[trace.trace_id] = len(trace.spans)
                    t += window_s
            return sum(seen.values())

        return asyncio.run(count())

    def collector_metric(self, name: str) -> float:
        """Sum of one of the collector's own metrics (:8888), read directly (it may be just restarted)."""
        text = self.http.get(COLLECTOR_METRICS).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ", name + "_total{", name + "_total ")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self, name: str) -> None:
        assert stack.kill(name, state_dir=self.state_dir), f"{name} was not running"

    def stop(self, name: str) -> None:
        assert stack.stop(name, state_dir=self.state_dir), f"{name} was not running"

    def start(self, name: str) -> None:
        stack.start(name, state_dir=self.state_dir, wait_s=90)


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tools = stack.binaries()
    missing = [t for t in ("otelcol", "jaeger", "prometheus", "alertmanager") if tools.get(t) is None]
    if missing:
        unavailable("STACK", f"missing {', '.join(missing)}: run scripts/build-backends.sh")
    busy = [p for c in stack.COMPONENTS.values() for p in c.ports if stack.port_busy(p)]
    if busy:
        unavailable("STACK", f"ports {busy} are taken by another stack; the fault tests must own theirs")
    state = tmp_path_factory.mktemp("fault-stack")
    try:
        stack.up(state_dir=state, wait_s=120)
        with httpx.Client(timeout=10) as http:
            yield Stack(state, http)
    finally:
        stack.down(state_dir=state)
        left = [r.name for r in stack.status(state_dir=state) if r.running]
        assert not left, f"down() left {left} running"


# --- the agent process ----------------------------------------------------------------------------


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    stats_path: Path
    log_path: Path
    service: str
    prefix: str
    started_at: float
    final: dict[str, Any] | None = None
    rows_cache: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rows(self) -> list[dict[str, Any]]:
        if not self.stats_path.exists():
            return []
        out = []
        for line in self.stats_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return out

    def last(self) -> dict[str, Any]:
        rows = self.rows()
        return rows[-1] if rows else {}

    def wait_rows(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.rows()) < n:
            assert self.proc.poll() is None, f"agent exited early:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"agent wrote no stats:\n{self.log_tail()}"
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def stop(self, timeout: float = 20) -> tuple[dict[str, Any], float]:
        """SIGTERM; returns (final counts, seconds until the process exited)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            pytest.fail(f"agent did not exit within {timeout}s of SIGTERM:\n{self.log_tail()}")
        took = time.monotonic() - t0
        assert self.proc.returncode == 0, f"agent exit code {self.proc.returncode}:\n{self.log_tail()}"
        self.final = json.loads(out.strip().splitlines()[-1])
        return self.final, took


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def start(endpoint: str = COLLECTOR, *, concurrency: int = 40, turns: int = 3, turn_s: float = 1.0,
              history: bool = False, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> Agent:
        tag = uuid.uuid4().hex[:8]
        service = f"vp-faults-{tag}"
        prefix = f"fault-{tag}"
        stats = tmp_path / f"stats-{tag}.jsonl"
        log = tmp_path / f"agent-{tag}.log"
        cmd = [sys.executable, str(HERE / "agent_load.py"), "--endpoint", endpoint, "--service", service,
               "--stats", str(stats), "--prefix", prefix, "--concurrency", str(concurrency),
               "--turns", str(turns), "--turn-s", str(turn_s), *extra]
        if history:
            cmd.append("--history")
        full_env = {**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "INFO", **(env or {})}
        full_env.pop("OTEL_SDK_DISABLED", None)
        with log.open("w") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=err, text=True)
        agent = Agent(proc, stats, log, service, prefix, time.time())
        agents.append(agent)
        return agent

    yield start
    for a in agents:
        if a.proc.poll() is None:
            a.proc.kill()
            a.proc.communicate()


# --- phase summaries ------------------------------------------------------------------------------


def window(rows: list[dict[str, Any]], t0: float, t1: float) -> list[dict[str, Any]]:
    return [r for r in rows if t0 <= r["t"] <= t1]


def summarize(rows: list[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """Calls per second, end-of-call latency, loop lag and RSS over the stats rows in [t0, t1]."""
    w = window(rows, t0, t1)
    assert len(w) >= 2, f"too few stats rows in the window ({len(w)})"
    first, last = w[0], w[-1]
    secs = last["t"] - first["t"]
    ends = [x for r in w[1:] for x in r["end_ms"]]
    per_s = [b["completed"] - a["completed"] for a, b in itertools.pairwise(w)]
    return {
        "seconds": round(secs, 1),
        "calls": last["completed"] - first["completed"],
        "calls_per_s": round((last["completed"] - first["completed"]) / secs, 2),
        "min_calls_in_1s": min(per_s),
        "end_p50_ms": round(statistics.median(ends), 3) if ends else None,
        "end_p99_ms": round(pctl(ends, 0.99), 3),
        "end_max_ms": round(max(ends), 3) if ends else None,
        "lag_p99_ms": max((r["lag_p99_ms"] or 0) for r in w[1:]),
        "lag_max_ms": max((r["lag_max_ms"] or 0) for r in w[1:]),
        "rss_start_mb": round(first["rss_kb"] / 1024, 1),
        "rss_max_mb": round(max(r["rss_kb"] for r in w) / 1024, 1),
        "rss_end_mb": round(last["rss_kb"] / 1024, 1),
        "produced": last["produced"] - first["produced"],
        "delivered": last["delivered"] - first["delivered"],
        "queue_dropped": last["queue_dropped"] - first["queue_dropped"],
        "export_failed": last["export_failed"] - first["export_failed"],
        "exports_on_loop": last["exports_on_loop"] - first["exports_on_loop"],
    }


def report(title: str, data: dict[str, Any]) -> None:
    print(f"\n[faults] {title}: " + json.dumps(data, sort_keys=False), flush=True)
