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
    watchdog = f"_watchdog_main ({SITE}/livekit/agents/telemetry/loop_monitor.py)"
    assert realcalls.owner_of(watchdog)[0] == "agent and livekit"
    assert realcalls.owner_of(f"start_span ({SITE}/livekit/agents/telemetry/traces.py)")[0] == "livekit tracing"
