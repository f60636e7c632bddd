"""Real calls on one machine: the LiveKit server, the agent worker and the callers all on it.

    python -m bench.bench_realcalls [--levels 1 3 5] [--waves 2] [--quiet-calls 8] [--share-level 5]
        [--share-pairs 3] [--json PATH]

With the stack's LiveKit server; the worker and the callers in its media namespace (no root):

* **time to first word, VoxPulse against the caller, per turn**: each simulated caller measures
  TTFW at its own end (its last audible frame sent -> the agent's first audible frame received);
  the agent's turn span says what VoxPulse measured (``voice.turn.time_to_first_word``). Reported:
  the distribution of VoxPulse - caller, of its measured part alone (without the estimated media
  path) and of LiveKit's own ``lk.e2e_latency`` - caller, for comparison. Target |VoxPulse - caller|
  <= 50 ms at p95 on the loopback setup, judged on the calls placed one at a time (``--quiet-calls``
  of them: a machine with spare CPU); the loaded levels are reported beside it, since at 5 calls on
  2 cores the VAD runs slower than real time and the caller's own clock reading is delayed too.
* **concurrent calls per machine**: for each level, ``waves`` x level calls, level at a time; CPU of
  the server, the worker (main, forkserver and every job process, sampled) and the callers, turns
  answered, caller-side TTFW, and the overload signs the worker logs.
* **telemetry's share of the agent's CPU** at ``share-level``: the same calls with telemetry on
  (spans and metrics exported by OTLP to a sink that takes everything) and with
  ``OTEL_SDK_DISABLED=true``, in ``share-pairs`` pairs of runs back to back, the order alternating;
  share = (on - off) / on of the worker's CPU per call, judged on the pairs' median (goal <= 3 %);
  the profile (``--profile-level``) says where what remains goes.

Numbers on a shared 2-core machine are noisy; the method is what this file fixes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent.realcalls import OtlpRecorder, StoreThread, Worker, call
from telemetry import semconv
from telemetry.semconv import Attr, SpanName, TurnSegment
from voxpulse_console import stack
from voxpulse_console.stack import MediaNamespace

SCENARIOS = ("order_status", "book_fitting", "ask_operator")  # no barge-in: one answer per line


class CpuMeter:
    """CPU seconds of process trees, sampled every ``every`` s (a process that exits between two
    samples loses at most that much of its tail)."""

    def __init__(self, roots: dict[str, int], every: float = 0.5) -> None:
        self.roots = roots
        self.every = every
        self._seen: dict[str, dict[tuple[int, float], float]] = {k: {} for k in roots}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        with self._lock:
            roots = list(self.roots.items())
        for name, pid in roots:
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            seen = self._seen[name]
            for p in procs:
                try:
                    t = p.cpu_times()
                    seen[(p.pid, p.create_time())] = t.user + t.system
                except psutil.Error:
                    continue

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def start(self) -> CpuMeter:
        self._sample()
        self.base = {k: dict(v) for k, v in self._seen.items()}
        self._thread.start()
        return self

    def add_root(self, name: str, pid: int) -> None:
        with self._lock:
            self._seen.setdefault(name, {})
            self.roots[name] = pid

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample()
        out = {}
        for name, seen in self._seen.items():
            base = self.base.get(name, {})
            out[name] = round(sum(v - base.get(k, 0.0) for k, v in seen.items()), 2)
        return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


# --- where telemetry's CPU goes: the worker's Python stacks, sampled ------------------------------------

# Who a sampled stack's CPU belongs to: the innermost frame that is one of these decides (telemetry's
# wrappers sit above the agent's own work: a tool's HTTP call under a traced tool is the agent's).
_OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # LiveKit's telemetry package: its event-loop watchdog and health server run with the SDK off too
    ("agent and livekit", ("/livekit/agents/telemetry/loop_monitor.py", "/livekit/agents/telemetry/http_server.py")),
    ("livekit tracing", ("/livekit/agents/telemetry/",)),  # LiveKit's own spans and metrics
    ("voxpulse", (str(Path(semconv.__file__).resolve().parent) + "/",)),
    ("opentelemetry sdk", ("/opentelemetry/",)),
    ("agent and livekit", ("/agent/", "/livekit/")),  # the VAD's onnxruntime is under livekit's plugin
)
TELEMETRY_OWNERS = ("livekit tracing", "voxpulse", "opentelemetry sdk", "telemetry imports")


def _known_owner(frames: list[str]) -> tuple[str, str]:
    """(owner, frame) of the innermost frame of ``frames`` that has a known owner, else ("other", "")."""
    for frame in reversed(frames):
        for owner, marks in _OWNERS:
            if any(m in frame for m in marks):
                return owner, frame
    return "other", ""


def owner_of(stack: str) -> tuple[str, str]:
    """(owner, the frame that decided) of one sampled stack ("frame;frame;...", root first; a frame
    is "function (path)"). A stack inside an import is paid once per process, by whoever imports
    first: "telemetry imports" where VoxPulse's code started the import chain or the chain imports
    VoxPulse's modules (``configure()`` loading the SDK's exporters, ``import telemetry``), else
    "module loading". No frame of a known owner: "other" (the event loop, stdlib)."""
    frames = stack.split(";")
    start = next((i for i, f in enumerate(frames) if f.startswith("_find_and_load (")), None)
    loading = next((f for f in reversed(frames) if f.startswith("<module> (") and "<frozen" not in f), None)
    if start is not None and loading is not None:
        # the first module the chain executes (none yet: still finding it, inside the import system)
        imported = next((f for f in frames[start:] if f.startswith("<module> (") and "<frozen" not in f), "")
        ours = "voxpulse" in (_known_owner(frames[:start])[0], _known_owner([imported])[0])
        return ("telemetry imports" if ours else "module loading"), loading
    return _known_owner(frames)


def profile_summary(raw: str, top: int = 12) -> dict[str, Any]:
    """Sampled stacks (a stack and its CPU ticks per line) as shares of the sampled CPU by owner, and
    the telemetry frames that decided the most of it."""
    by_owner: dict[str, int] = {}
    frames: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        owner, frame = owner_of(stack)
        by_owner[owner] = by_owner.get(owner, 0) + int(count)
        if owner in TELEMETRY_OWNERS:
            key = f"{owner}: {frame.split(' (')[0]} ({frame.rsplit('/', 1)[-1].rstrip(')')})"
            frames[key] = frames.get(key, 0) + int(count)
    total = sum(by_owner.values())
    pct = {k: round(100 * v / total, 2) for k, v in sorted(by_owner.items(), key=lambda kv: -kv[1])} if total else {}
    return {"samples": total, "share_pct": pct,
            "telemetry_pct": round(sum(pct.get(k, 0.0) for k in TELEMETRY_OWNERS), 2),
            "top_telemetry": [(k, round(100 * v / total, 2)) for k, v in
                              sorted(frames.items(), key=lambda kv: -kv[1])[:top]] if total else []}


STACKS = Path(__file__).resolve().parent / "_stacks"  # sitecustomize.py: the in-process sampler


def read_stacks(folder: Path) -> str:
    """Every sampled process's counts (bench/_stacks/sitecustomize.py), as one raw text."""
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.glob("*.txt")))


def run_level(level: int, waves: int, *, telemetry_on: bool, creds: dict[str, str],
              ns: MediaNamespace, profile: bool = False) -> dict[str, Any]:
    n = level * waves
    spec = [{"scenario": SCENARIOS[i % len(SCENARIOS)]} for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="vp-bench-rc-"))
    agent_name = f"bench-agent-{level}-{'on' if telemetry_on else 'off'}-{int(time.time())}"
    with OtlpRecorder() as rec, StoreThread(latency_s=0.03, seed=level) as store_url:
        env = {**creds, "VOXPULSE_AGENT_NAME": agent_name, "OTEL_EXPORTER_OTLP_ENDPOINT": rec.endpoint,
               "OTEL_SERVICE_NAME": "bench-agent", "STORE_API_URL": store_url, "DATABASE_URL": "",
               "VOXPULSE_IDLE_PROCESSES": str(max(3, level)), "VOXPULSE_MAX_CALLS": str(level + 3),
               "OTEL_METRIC_EXPORT_INTERVAL": "5000"}
        if not telemetry_on:
            env["OTEL_SDK_DISABLED"] = "true"
        if profile:  # every Python process of the worker samples its own stacks
            (tmp / "stacks").mkdir()
            env["VOXPULSE_BENCH_STACKS"] = str(tmp / "stacks")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(STACKS), os.environ.get("PYTHONPATH")) if p)
        worker = Worker(env, log_path=tmp / "worker.log", media=ns).start()
        server_pid = _server_pid()
        meter = CpuMeter({"worker": worker.proc.pid if worker.proc else 0, "server": server_pid}).start()
        t0 = time.monotonic()
        try:
            results = call(spec, livekit=creds, agent_name=agent_name, concurrency=level, arrival_s=0.7,
                           timeout_s=900, on_start=lambda pid: meter.add_root("callers", pid), media=ns)
        finally:
            wall = time.monotonic() - t0
            if telemetry_on:
                rec.wait_for(lambda r: len(r.roots("job_entrypoint")) >= len(spec), 60)
            else:
                _wait_jobs_exited(worker, len(spec), 60)
            cpu = meter.stop()
            worker.stop()
            raw = read_stacks(tmp / "stacks") if profile else None
        log = worker.log_text()
        spans = rec.spans()
    turns = [t for r in results for t in r.turns]
    heard = [t.ttfw_ms for t in turns if t.ttfw_ms is not None]
    out: dict[str, Any] = {
        "level": level, "calls": n, "telemetry": telemetry_on, "wall_s": round(wall, 1),
        "failed_calls": sum(1 for r in results if r.error), "errors": [r.error for r in results if r.error],
        "turns": len(turns),
        "turns_answered": len(heard), "caller_ttfw_p50_ms": _pct(heard, 50), "caller_ttfw_p95_ms": _pct(heard, 95),
        "cpu_s": cpu, "vad_slower_than_realtime": log.count("VAD inference is slower than realtime"),
        "event_loop_blocked": log.count("event loop blocked"),
    }
    out["cores"] = {k: round(v / wall, 2) for k, v in cpu.items()}
    out["worker_cpu_s_per_call"] = round(cpu.get("worker", 0.0) / n, 2)
    if raw is not None:
        out["profile"] = profile_summary(raw)
    if telemetry_on:
        out["pairs"] = _pairs(results, spans)
        out["greetings"] = _greetings(results, spans)
    return out


SHARE_GOAL_PCT = 3.0


def share_pairs(rows: list[dict[str, Any]], level: int, n: int,
                run: Callable[[bool], dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` (on, off) pairs of runs at ``level``, each pair's two runs back to back and the order
    alternating from pair to pair (on-off, off-on, ...), so that a drift of the machine over the
    benchmark weighs on both sides alike. The first pair's on run is the level's own row of ``rows``
    (where there is one); every new run is appended to ``rows``."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for k in range(n):
        if k == 0 and (on := next((r for r in rows if r["level"] == level and r["telemetry"]), None)) is not None:
            off = run(False)
            rows.append(off)
        else:
            first, second = (run(True), run(False)) if k % 2 == 0 else (run(False), run(True))
            rows += [first, second]
            on, off = (first, second) if first["telemetry"] else (second, first)
        pairs.append((on, off))
    return pairs


def telemetry_share(pairs: list[tuple[dict[str, Any], dict[str, Any]]], level: int) -> dict[str, Any] | None:
    """Telemetry's share of the worker's CPU per call, (on - off) / on, per pair and their median."""
    shares = [100 * (on["worker_cpu_s_per_call"] - off["worker_cpu_s_per_call"]) / on["worker_cpu_s_per_call"]
              for on, off in pairs if on["worker_cpu_s_per_call"]]
    if not shares:
        return None
    return {"level": level, "pairs": [{"on_cpu_per_call_s": on["worker_cpu_s_per_call"],
                                       "off_cpu_per_call_s": off["worker_cpu_s_per_call"], "share_pct": round(x, 1)}
                                      for (on, off), x in zip(pairs, shares, strict=True)],
            "share_pct": round(statistics.median(shares), 1),
            "min_pct": round(min(shares), 1), "max_pct": round(max(shares), 1), "goal_pct": SHARE_GOAL_PCT}


def share_verdict(share: dict[str, Any] | None) -> str:
    if share is None:
        return "telemetry's share of the agent's CPU: not measured"
    met = "met" if share["share_pct"] <= SHARE_GOAL_PCT else "NOT met"
    return (f"telemetry's share of the agent's CPU at {share['level']} calls at once, median of "
            f"{len(share['pairs'])} on/off pairs {share['share_pct']} % (goal <= {SHARE_GOAL_PCT:g} %): {met} "
            f"(pairs from {share['min_pct']} to {share['max_pct']} %)")


def _greetings(results: list[Any], spans: list[Any]) -> list[dict[str, Any]]:
    """(VoxPulse's greeting, the caller's wait for it) per call: joined -> the greeting's first word."""
    by_call = {str(s.call_id): s for s in spans if s.name == SpanName.GREETING}
    out = []
    for r in results:
        span = by_call.get(r.room_sid)
        if span is None or r.greeting_ms is None:
            continue
        a = span.attributes
        parts = {seg.value: round(float(a[seg.attribute]) * 1000, 3) for seg in TurnSegment
                 if isinstance(a.get(seg.attribute), int | float)}
        out.append({"call": r.room_sid, "caller_ms": r.greeting_ms, "start": a.get(Attr.GREETING_START),
                    "voxpulse_ms": round(float(a[Attr.GREETING_TTFW]) * 1000, 1), "parts_ms": parts,
                    "parts_sum_ms": round(sum(parts.values()), 3), "named_share": a.get(Attr.TURN_NAMED_SHARE)})
    return out


def greeting_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The greetings of every level: VoxPulse - caller (mean, p95 abs), the wait's start, its parts."""
    out: dict[str, Any] = {}
    for level, g in by_level(rows, "greetings").items():
        diffs = [x["voxpulse_ms"] - x["caller_ms"] for x in g]
        names = [seg.value for seg in TurnSegment if any(seg.value in x["parts_ms"] for x in g)]
        out[level] = {
            "calls": len(g), "caller_p50_ms": _pct([x["caller_ms"] for x in g], 50),
            "mean_diff_ms": round(statistics.fmean(diffs), 1), "abs_p95_ms": _pct([abs(d) for d in diffs], 95),
            "starts": sorted({str(x["start"]) for x in g}),
            "sum_minus_ttfw_max_ms": round(max(abs(x["parts_sum_ms"] - x["voxpulse_ms"]) for x in g), 3),
            "part_mean_ms": {n: round(statistics.fmean(x["parts_ms"].get(n, 0.0) for x in g), 1) for n in names},
        }
    return out


def _pairs(results: list[Any], spans: list[Any]) -> list[dict[str, Any]]:
    """(VoxPulse, its measured part, LiveKit's e2e, caller) per turn, matched by call and turn index."""
    by_call: dict[str, dict[int, Any]] = {}
    lk_e2e: dict[str, float] = {}
    for s in spans:
        if s.name == "agent_turn" and "lk.e2e_latency" in s.attributes and s.parent_id:
            lk_e2e[s.parent_id] = float(s.attributes["lk.e2e_latency"])
    for s in spans:
        if s.name == "turn" and Attr.TURN_TTFW in s.attributes:
            by_call.setdefault(str(s.call_id), {})[int(s.attributes[Attr.TURN_INDEX])] = s
    pairs = []
    for r in results:
        turns = by_call.get(r.room_sid, {})
        for t in r.turns:
            span = turns.get(t.index)
            if span is None or t.ttfw_ms is None:
                continue
            a = span.attributes
            parts = {seg.value: round(float(a[seg.attribute]) * 1000, 3) for seg in TurnSegment
                     if isinstance(a.get(seg.attribute), int | float)}
            pairs.append({
                "parts_ms": parts, "parts_sum_ms": round(sum(parts.values()), 3),
                "named_share": a.get(Attr.TURN_NAMED_SHARE),
                "call": r.room_sid, "turn": t.index, "caller_ms": t.ttfw_ms,
                "voxpulse_ms": round(float(a[Attr.TURN_TTFW]) * 1000, 1),
                "at_agent_ms": round(float(a[Attr.TURN_TTFW_AT_AGENT]) * 1000, 1),
                "media_ms": round(float(a[Attr.TURN_MEDIA_LATENCY]) * 1000, 1),
                "method": a.get(Attr.TURN_TTFW_METHOD),
                "livekit_e2e_ms": round(lk_e2e[span.span_id] * 1000, 1) if span.span_id in lk_e2e else None,
            })
    return pairs


def _wait_jobs_exited(worker: Worker, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.log_text().count("process exiting") >= n:
            return
        time.sleep(0.5)


def _server_pid() -> int:
    for row in stack.status():
        if row.name == "livekit" and row.pid:
            return row.pid
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "livekit-server":
            return int(p.pid)
    return 0


def by_level(rows: list[dict[str, Any]], key: str) -> dict[str, list[Any]]:
    """``key``'s lists of every run at a level, put together (a level can have several runs: the
    share pairs' runs with telemetry on), levels in their first run's order."""
    out: dict[str, list[Any]] = {}
    for r in rows:
        if r.get(key):
            out.setdefault(str(r["level"]), []).extend(r[key])
    return out


def accuracy_by_level(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracy of every level with telemetry on (all its runs), and of all of them together."""
    out = {level: accuracy(pairs) for level, pairs in by_level(rows, "pairs").items()}
    out["all"] = accuracy([p for r in rows for p in r.get("pairs", [])])
    return out


def accuracy(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    def dist(key: str) -> dict[str, Any]:
        diffs = [p[key] - p["caller_ms"] for p in pairs if p.get(key) is not None]
        absd = [abs(d) for d in diffs]
        return {"n": len(diffs), "mean_ms": round(statistics.fmean(diffs), 1) if diffs else None,
                "p50_ms": _pct(diffs, 50), "abs_p50_ms": _pct(absd, 50), "abs_p95_ms": _pct(absd, 95),
                "min_ms": round(min(diffs), 1) if diffs else None, "max_ms": round(max(diffs), 1) if diffs else None}

    return {"voxpulse": dist("voxpulse_ms"), "at_agent": dist("at_agent_ms"), "livekit_e2e": dist("livekit_e2e_ms"),
            "methods": sorted({str(p["method"]) for p in pairs}), "anatomy": anatomy_summary(pairs)}


def anatomy_summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The turns' anatomy: the share named by a measured part (mean, min), |sum of parts - TTFW| (max;
    0 by construction, to rounding) and the mean of each part."""
    with_parts = [p for p in pairs if p.get("parts_ms")]
    shares = [float(p["named_share"]) for p in with_parts if p.get("named_share") is not None]
    gaps = [abs(p["parts_sum_ms"] - p["voxpulse_ms"]) for p in with_parts]
    names = [seg.value for seg in TurnSegment if any(seg.value in p["parts_ms"] for p in with_parts)]
    return {"turns": len(with_parts),
            "named_share_mean": round(statistics.fmean(shares), 4) if shares else None,
            "named_share_min": round(min(shares), 4) if shares else None,
            "sum_minus_ttfw_max_ms": round(max(gaps), 3) if gaps else None,
            "part_mean_ms": {n: round(statistics.fmean(p["parts_ms"].get(n, 0.0) for p in with_parts), 1)
                             for n in names}}


def anatomy_cost_us(n: int = 20000) -> float:
    """CPU µs to cut one turn into its parts (``telemetry.livekit._anatomy.anatomy`` on a turn with
    tools, as the session does at each turn's end)."""
    from telemetry.livekit._anatomy import TurnMarks, anatomy, named_share

    t0 = 1_700_000_000.0
    marks = TurnMarks(heard_end=t0, audible_out=t0 + 1.1, transport_in_s=0.06, transport_out_s=0.06,
                      vad_end_at=t0 + 0.3, stopped_speaking_at=t0 + 0.01, transcription_delay=0.35,
                      end_of_turn_delay=0.45, on_user_turn_completed_delay=0.02,
                      tools=[(t0 + 0.55, t0 + 0.58)], started_speaking_at=t0 + 1.08, playback_latency=0.01,
                      tts_node_ttfb=0.15, llm_node_ttfs=0.3, llm_node_ttft=0.25)
    start = time.process_time()
    for _ in range(n):
        named_share(anatomy(marks))
    return round((time.process_time() - start) / n * 1e6, 2)


def to_markdown(result: dict[str, Any]) -> str:
    if result.get("skipped"):
        return f"_Not measured: {result['skipped']}._"
    by_level = result["accuracy"]
    names = {"voxpulse": "VoxPulse `voice.turn.time_to_first_word` - caller",
             "at_agent": "its measured part (`..._at_agent`, no media path) - caller",
             "livekit_e2e": "LiveKit `lk.e2e_latency` - caller"}
    lines = ["**Time to first word, VoxPulse against the caller, per turn** (telemetry on; the target is "
             "judged on the calls placed one at a time):", "",
             "| calls at once | measure | turns | mean diff ms | p50 diff ms | p50 abs diff ms | p95 abs diff ms "
             "| min / max diff ms |", "|---|---|---|---|---|---|---|---|"]
    for level, acc in by_level.items():
        for key, label in names.items():
            d = acc[key]
            lines.append(f"| {level} | {label} | {d['n']} | {d['mean_ms']} | {d['p50_ms']} | {d['abs_p50_ms']} | "
                         f"{d['abs_p95_ms']} | {d['min_ms']} / {d['max_ms']} |")
    lines += ["", "**Concurrent real calls on this machine** (server, agent worker and callers on it; cores = "
              "CPU seconds / wall seconds):", "",
              "| calls at once | telemetry | calls | failed | turns answered | caller TTFW p50 / p95 ms | server "
              "cores | agent cores | callers cores | agent CPU s per call | VAD slower than real time | loop "
              "blocked |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        c = r["cores"]
        lines.append(
            f"| {r['level']} | {'on' if r['telemetry'] else 'off'} | {r['calls']} | {r['failed_calls']} | "
            f"{r['turns_answered']}/{r['turns']} | {r['caller_ttfw_p50_ms']} / {r['caller_ttfw_p95_ms']} | "
            f"{c.get('server')} | {c.get('worker')} | {c.get('callers')} | {r['worker_cpu_s_per_call']} | "
            f"{r['vad_slower_than_realtime']} | {r['event_loop_blocked']} |")
    lines += ["", "**The anatomy of each turn** (its time to first word in parts that add up to it; "
              "`voice.turn.segment.*`):", "",
              "| calls at once | turns | share named by a measured part, mean / min (goal >= 95 %) | "
              "max abs(sum of parts - TTFW) ms (goal 0 within 1 ms) | mean ms per part |", "|---|---|---|---|---|"]
    for level, acc in by_level.items():
        an = acc.get("anatomy") or {}
        parts = ", ".join(f"{k} {v}" for k, v in (an.get("part_mean_ms") or {}).items())
        share_mean, share_min = an.get("named_share_mean"), an.get("named_share_min")
        lines.append(f"| {level} | {an.get('turns')} | "
                     f"{'-' if share_mean is None else f'{share_mean * 100:.1f} %'} / "
                     f"{'-' if share_min is None else f'{share_min * 100:.1f} %'} | "
                     f"{an.get('sum_minus_ttfw_max_ms')} | {parts} |")
    greetings = result.get("greetings") or {}
    if greetings:
        lines += ["", "**The greeting** (the caller's join to the greeting's first word; `voice.greeting.*`), "
                  "VoxPulse against what the caller waited:", "",
                  "| calls at once | calls | caller p50 ms | mean diff ms | p95 abs diff ms | wait starts at | "
                  "max abs(sum of parts - total) ms | mean ms per part |", "|---|---|---|---|---|---|---|---|"]
        for level, g in greetings.items():
            parts = ", ".join(f"{k} {v}" for k, v in g["part_mean_ms"].items())
            lines.append(f"| {level} | {g['calls']} | {g['caller_p50_ms']} | {g['mean_diff_ms']} | {g['abs_p95_ms']} | "
                         f"{', '.join(g['starts'])} | {g['sum_minus_ttfw_max_ms']} | {parts} |")
    if result.get("anatomy_cost_us") is not None:
        lines += ["", f"Cutting one turn into its parts costs {result['anatomy_cost_us']} µs of CPU (in-process, "
                  "20 000 turns; the attributes and histogram points it adds are part of the telemetry share above)."]
    failures = [f"{r['level']} at once, telemetry {'on' if r['telemetry'] else 'off'}: {e}"
                for r in result["rows"] for e in r.get("errors", [])]
    if failures:
        lines += ["", "Failed calls: " + "; ".join(failures) + "."]
    share = result.get("telemetry_share")
    if share and "pairs" in share:
        each = "; ".join(f"{p['share_pct']} % ({p['on_cpu_per_call_s']} s on, {p['off_cpu_per_call_s']} s off)"
                         for p in share["pairs"])
        lines += ["", f"**Telemetry's share of the agent's CPU** at {share['level']} calls at once: median "
                  f"{share['share_pct']} % over {len(share['pairs'])} pairs of runs, telemetry on and "
                  f"OTEL_SDK_DISABLED=true back to back in alternating order (agent CPU per call): {each}."]
    elif share:  # a result from before the pairs
        lines += ["", f"**Telemetry's share of the agent's CPU** at {share['level']} calls at once: "
                  f"{share['share_pct']} % (agent CPU per call {share['on_cpu_per_call_s']} s with telemetry, "
                  f"{share['off_cpu_per_call_s']} s with OTEL_SDK_DISABLED=true)."]
    prof = result.get("profile")
    if prof:
        shares = ", ".join(f"{k} {v} %" for k, v in prof["share_pct"].items())
        lines += ["", f"**Where the agent's CPU goes** ({prof['calls']} calls, {prof['level']} at once, in a run of "
                  "their own: every Python thread of the worker's processes sampled every 20 ms and weighted by "
                  f"the CPU it used since, {prof['samples']} ticks of 10 ms (bench/_stacks); a sample belongs to the "
                  "innermost frame of a known owner, so a traced tool's own work is the agent's): "
                  f"{shares}; telemetry in all {prof['telemetry_pct']} %. Its largest frames:", "",
                  "| frame | % of the agent's samples |", "|---|---|"]
        lines += [f"| `{name}` | {pct} |" for name, pct in prof["top_telemetry"]]
        lines += ["", "`module loading` is the imports each new job process does (whoever imports a module first "
                  "pays for it); `other` is mostly executor threads inside native code (the VAD's inference) and "
                  "the event loop itself. Threads that Python did not start (a native library's own) are not "
                  "sampled."]
    lines += ["", "Scenarios " + ", ".join(SCENARIOS) + "; the local pipeline (Silero VAD, scripted STT, fake LLM, "
              "espeak-ng TTS); telemetry exported by OTLP to a sink. The server, the worker and the callers share the "
              "machine's 2 cores."]
    return "\n".join(lines)


def summarize(rows: list[dict[str, Any]], share: dict[str, Any] | None, profile: dict[str, Any] | None,
              anatomy_us: float) -> dict[str, Any]:
    """The result of the runs ``rows``: TTFW accuracy and greetings per level (every run with
    telemetry on), telemetry's share, the profile, the verdict (``--summarize`` re-derives it from a
    result's own runs)."""
    acc = accuracy_by_level([r for r in rows if r["telemetry"]])
    quiet = acc.get("1", acc["all"])["voxpulse"]["abs_p95_ms"]
    loaded = ", ".join(f"{k} at once {v['voxpulse']['abs_p95_ms']} ms" for k, v in acc.items()
                       if k not in ("1", "all"))
    an = acc["all"]["anatomy"]
    return {"rows": rows, "accuracy": acc, "telemetry_share": share, "profile": profile,
            "anatomy_cost_us": anatomy_us,
            "greetings": greeting_summary([r for r in rows if r["telemetry"]]),
            "verdict": (f"{share_verdict(share)}; "
                        f"|VoxPulse - caller| p95 {quiet} ms one call at a time (target <= 50 ms): "
                        f"{'met' if quiet is not None and quiet <= 50 else 'NOT met'} on this run; "
                        f"under load: {loaded or 'not run'}; anatomy: share named mean "
                        f"{an['named_share_mean']} (goal >= 0.95), max |sum - TTFW| "
                        f"{an['sum_minus_ttfw_max_ms']} ms (goal <= 1)")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--quiet-calls", type=int, default=8, help="calls placed one at a time (level 1)")
    ap.add_argument("--share-level", type=int, default=5)
    ap.add_argument("--share-pairs", type=int, default=3,
                    help="on/off pairs at the share level, in alternating order (the first pair's on: the level's)")
    ap.add_argument("--profile-level", type=int, default=3,
                    help="one more wave at this level with the worker's stacks sampled; 0: none")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--summarize", type=Path, default=None,
                    help="no runs: the result of this JSON's own runs derived again (its rows, share, profile)")
    a = ap.parse_args()
    if a.summarize is not None:
        old = json.loads(a.summarize.read_text())
        again = summarize(old["rows"], old["telemetry_share"], old["profile"], old["anatomy_cost_us"])
        (a.json or a.summarize).write_text(json.dumps(again, indent=2))
        print(to_markdown(again))
        return 0
    why = stack.media_supported() or ""
    if why:
        why = f"no media namespace: {why}"
    elif stack.binaries().get("livekit-server") is None:
        why = "no livekit-server (scripts/build-backends.sh)"
    elif shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        why = "espeak-ng or sox missing"
    if why:
        result: dict[str, Any] = {"skipped": why}
    else:
        state = None
        if not stack.ready(stack.COMPONENTS["livekit"].ready_url):
            state = Path(tempfile.mkdtemp(prefix="vp-bench-stack-"))
            stack.up(["livekit"], state_dir=state)
        creds = stack.livekit_env(state)
        ns = stack.media_namespace(state)
        try:
            rows = [run_level(n, a.quiet_calls if n == 1 else a.waves, telemetry_on=True, creds=creds, ns=ns)
                    for n in a.levels]
            pairs = share_pairs(rows, a.share_level, a.share_pairs,
                                lambda on: run_level(a.share_level, a.waves, telemetry_on=on, creds=creds, ns=ns))
            profiled = (run_level(a.profile_level, 1, telemetry_on=True, creds=creds, ns=ns, profile=True)
                        if a.profile_level else None)
        finally:
            if state is not None:
                stack.down(["livekit"], state_dir=state)
        profile = None
        if profiled is not None:
            profile = {"level": a.profile_level, "calls": profiled["calls"], **profiled["profile"]}
        result = summarize(rows, telemetry_share(pairs, a.share_level), profile, anatomy_cost_us())
    text = json.dumps(result, indent=2)
    if a.json:
        a.json.write_text(text)
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
