"""The real-call benchmark's profile: whose CPU a sampled stack is (bench/bench_realcalls.py), and
the in-process sampler that takes the stacks (bench/_stacks/sitecustomize.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
realcalls = importlib.import_module("bench.bench_realcalls")

SITE = "/venv/lib/python3.11/site-packages"
OURS = f"{ROOT}/telemetry"


def test_the_innermost_known_frame_owns_the_sample() -> None:
    loop = f"run_forever ({SITE}/../asyncio/base_events.py)"
    tool = f"check_order_status ({ROOT}/agent/tools.py)"
    wrapper = f"wrapper ({OURS}/_decorators.py)"
    socket = "recv_into (/usr/lib/python3.11/socket.py)"
    # a traced tool's HTTP call is the agent's work, not telemetry's
    assert realcalls.owner_of(";".join([loop, wrapper, tool, socket]))[0] == "agent and livekit"
    # the probe's numpy under telemetry is telemetry's
    probe = f"_audible_rows ({OURS}/livekit/_ttfw.py)"
    numpy = f"mean ({SITE}/numpy/_core/fromnumeric.py)"
    lk_io = f"__anext__ ({SITE}/livekit/agents/voice/io.py)"
    assert realcalls.owner_of(";".join([loop, lk_io, probe, numpy])) == ("voxpulse", probe)
    # LiveKit's own spans, and the SDK's export thread
    assert realcalls.owner_of(f"{loop};x ({SITE}/livekit/agents/telemetry/traces.py)")[0] == "livekit tracing"
    assert realcalls.owner_of(f"export ({SITE}/opentelemetry/sdk/trace/export/__init__.py)")[0] == (
        "opentelemetry sdk")
    assert realcalls.owner_of(loop) == ("other", "")


def test_the_summary_shares_add_up() -> None:
    probe = f"_audible_rows ({OURS}/livekit/_ttfw.py)"
    raw = "\n".join([
        f"a (x.py);{probe} 30",
        f"a (x.py);run ({SITE}/livekit/agents/voice/agent_activity.py) 60",
        "idle (y.py) 10",
        "garbage line",
    ])
    s = realcalls.profile_summary(raw)
    assert s["samples"] == 100
    assert s["share_pct"] == {"agent and livekit": 60.0, "voxpulse": 30.0, "other": 10.0}
    assert s["telemetry_pct"] == 30.0
    assert s["top_telemetry"] == [("voxpulse: _audible_rows (_ttfw.py)", 30.0)]


def test_the_sampler_counts_the_cpu_of_a_busy_thread_and_of_a_forked_child(tmp_path: Path) -> None:
    """A process started with the sampler on its path: its busy function gets the CPU, its sleeping
    thread none; a forked child writes a file of its own."""
    import os
    import subprocess

    code = """
import os, threading, time
def spin(s):
    t = time.process_time()
    while time.process_time() - t < s:
        sum(range(1000))
def idle():
    time.sleep(1.0)
threading.Thread(target=idle).start()
spin(0.6)
pid = os.fork()
if pid == 0:
    spin(0.3)
    raise SystemExit(0)  # atexit: the child's own file
os.waitpid(pid, 0)
"""
    env = {**os.environ, "VOXPULSE_BENCH_STACKS": str(tmp_path),
           "PYTHONPATH": str(ROOT / "bench" / "_stacks")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    files = sorted(tmp_path.glob("*.txt"))
    assert len(files) == 2, files  # the parent and its forked child
    raw = realcalls.read_stacks(tmp_path)
    spun = sum(int(line.rpartition(" ")[2]) for line in raw.splitlines() if ";spin (" in line)
    total = sum(int(line.rpartition(" ")[2]) for line in raw.splitlines())
    assert spun >= 0.7 * total and spun >= 40, raw  # 0.9 s of CPU in 10 ms ticks, nearly all of it spin's
    assert not [line for line in raw.splitlines() if ";idle (" in line], raw


def test_imports_and_livekits_watchdog_are_not_telemetrys() -> None:
    boot = "_find_and_load (<frozen importlib._bootstrap>)"
    sdk = f"<module> ({SITE}/opentelemetry/sdk/__init__.py)"
    assert realcalls.owner_of(f"main (x.py);{boot};{sdk}") == ("module loading", sdk)
    # an import VoxPulse's code started, or one of VoxPulse's modules: telemetry's own cost
    configure = f"configure ({OURS}/_setup.py)"
    exporter = f"<module> ({SITE}/opentelemetry/exporter/otlp/proto/http/trace_exporter/__init__.py)"
    assert realcalls.owner_of(f"prewarm (agent.py);{configure};{boot};{exporter}") == ("telemetry imports", exporter)
    ours = f"<module> ({OURS}/__init__.py)"
    assert realcalls.owner_of(f"<module> (agent.py);{boot};{ours};{boot};{sdk}") == ("telemetry imports", sdk)
    # still finding the module, inside the import system: the importer decides
    finding = "_find_spec (<frozen importlib._bootstrap>)"
    assert realcalls.owner_of(f"<module> (agent.py);{boot};{finding}") == ("module loading", "<module> (agent.py)")
    assert realcalls.owner_of(f"<module> (agent.py);{configure};{boot};{finding}") == (
        "telemetry imports", "<module> (agent.py)")
    # LiveKit importing the SDK for its own spans: LiveKit's import, whoever configures it later
    lk = f"<module> ({SITE}/livekit/agents/telemetry/traces.py)"
    assert realcalls.owner_of(f"<module> (agent.py);{boot};{lk};{boot};{sdk}") == ("module loading", sdk)
    watchdog = f"_watchdog_main ({SITE}/livekit/agents/telemetry/loop_monitor.py)"
    assert realcalls.owner_of(watchdog)[0] == "agent and livekit"
    assert realcalls.owner_of(f"start_span ({SITE}/livekit/agents/telemetry/traces.py)")[0] == "livekit tracing"


def _row(level: int, on: bool, cpu: float) -> dict[str, object]:
    return {"level": level, "telemetry": on, "worker_cpu_s_per_call": cpu}


def test_share_pairs_alternate_and_reuse_the_levels_on_run() -> None:
    """Each pair's runs back to back, the order alternating; the first pair's on run is the level's."""
    rows: list[dict[str, object]] = [_row(1, True, 9.0), _row(5, True, 4.0)]
    order: list[bool] = []

    def run(on: bool) -> dict[str, object]:
        order.append(on)
        return _row(5, on, 4.0 if on else 3.9)

    pairs = realcalls.share_pairs(rows, 5, 3, run)
    assert order == [False, False, True, True, False]  # pair 1: the level's on, then off; pair 2: off-on; 3: on-off
    assert pairs[0][0] is rows[1] and [on["telemetry"] for on, _ in pairs] == [True] * 3
    assert [off["telemetry"] for _, off in pairs] == [False] * 3
    assert len(rows) == 2 + 5


def test_telemetry_share_is_the_median_of_the_pairs_and_judged_against_3_percent() -> None:
    pairs = [(_row(5, True, 4.0), _row(5, False, 3.6)),   # 10 %
             (_row(5, True, 4.0), _row(5, False, 3.96)),  # 1 %
             (_row(5, True, 4.0), _row(5, False, 4.08))]  # -2 %: noise says less than nothing
    share = realcalls.telemetry_share(pairs, 5)
    assert share is not None
    assert (share["share_pct"], share["min_pct"], share["max_pct"]) == (1.0, -2.0, 10.0)
    assert [p["share_pct"] for p in share["pairs"]] == [10.0, 1.0, -2.0]
    assert realcalls.share_verdict(share).endswith("(goal <= 3 %): met (pairs from -2.0 to 10.0 %)")
    share["share_pct"] = 3.1
    assert ": NOT met (" in realcalls.share_verdict(share)
    assert realcalls.telemetry_share([], 5) is None
    assert realcalls.share_verdict(None) == "telemetry's share of the agent's CPU: not measured"


def test_a_level_with_several_runs_is_judged_on_all_of_them() -> None:
    """The share pairs add runs at the share level: its TTFW accuracy and greetings are those of
    every run there, not of the last one."""
    def turn(diff: float) -> dict[str, object]:
        return {"voxpulse_ms": 1000.0 + diff, "at_agent_ms": 900.0, "livekit_e2e_ms": 700.0, "caller_ms": 1000.0,
                "method": "probe", "parts_ms": {}, "parts_sum_ms": 1000.0 + diff, "named_share": 1.0}

    def greeting(diff: float) -> dict[str, object]:
        return {"voxpulse_ms": 500.0 + diff, "caller_ms": 500.0, "start": "joined", "parts_ms": {},
                "parts_sum_ms": 500.0 + diff}

    rows = [{"level": 1, "pairs": [turn(5.0)], "greetings": [greeting(1.0)]},
            {"level": 5, "pairs": [turn(10.0), turn(-20.0)], "greetings": [greeting(2.0)]},
            {"level": 5, "pairs": [turn(-400.0)], "greetings": [greeting(-3.0)]}]
    acc = realcalls.accuracy_by_level(rows)
    assert list(acc) == ["1", "5", "all"]
    assert (acc["5"]["voxpulse"]["n"], acc["5"]["voxpulse"]["min_ms"], acc["5"]["voxpulse"]["max_ms"]) == (
        3, -400.0, 10.0)
    assert acc["all"]["voxpulse"]["n"] == 4
    greetings = realcalls.greeting_summary(rows)
    assert (greetings["5"]["calls"], greetings["5"]["mean_diff_ms"]) == (2, -0.5)
