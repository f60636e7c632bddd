"""The real-call benchmark's profile: whose CPU a sampled stack is (bench/bench_realcalls.py)."""

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
    loop = f"run_forever ({SITE}/../asyncio/base_events.py:608)"
    tool = f"check_order_status ({ROOT}/agent/tools.py:40)"
    wrapper = f"wrapper ({OURS}/_decorators.py:120)"
    socket = "recv_into (/usr/lib/python3.11/socket.py:706)"
    # a traced tool's HTTP call is the agent's work, not telemetry's
    assert realcalls.owner_of(";".join([loop, wrapper, tool, socket]))[0] == "agent and livekit"
    # the probe's numpy under telemetry is telemetry's
    probe = f"_audible_rows ({OURS}/livekit/_ttfw.py:205)"
    numpy = f"mean ({SITE}/numpy/_core/fromnumeric.py:3500)"
    lk_io = f"__anext__ ({SITE}/livekit/agents/voice/io.py:80)"
    assert realcalls.owner_of(";".join([loop, lk_io, probe, numpy])) == ("voxpulse", probe)
    # LiveKit's own spans, and the SDK's export thread
    assert realcalls.owner_of(f"{loop};x ({SITE}/livekit/agents/telemetry/traces.py:9)")[0] == "livekit tracing"
    assert realcalls.owner_of(f"export ({SITE}/opentelemetry/sdk/trace/export/__init__.py:1)")[0] == (
        "opentelemetry sdk")
    assert realcalls.owner_of(loop) == ("other", "")


def test_the_summary_shares_add_up() -> None:
    probe = f"_audible_rows ({OURS}/livekit/_ttfw.py:205)"
    raw = "\n".join([
        f"a (x.py:1);{probe} 30",
        f"a (x.py:1);run ({SITE}/livekit/agents/voice/agent_activity.py:1) 60",
        "idle (y.py:2) 10",
        "garbage line",
    ])
    s = realcalls.profile_summary(raw)
    assert s["samples"] == 100
    assert s["share_pct"] == {"agent and livekit": 60.0, "voxpulse": 30.0, "other": 10.0}
    assert s["telemetry_pct"] == 30.0
    assert s["top_telemetry"] == [("voxpulse: _audible_rows (_ttfw.py)", 30.0)]
