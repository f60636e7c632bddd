"""The example agent reads the library's settings through the library, and its own through
``agent.settings``, when the worker is built or a job process set up: never at import time.

The worker's set-up function (``prewarm``, what LiveKit runs in each job process) and
``build_server`` run in a child process: ``configure()`` and the environment are per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import json, os, sys
from types import SimpleNamespace
import agent.server as server   # imported before any case's environment is set

out = {}
for name, env in json.loads(sys.argv[1]).items():
    for key in [k for k in os.environ if k.startswith(("OTEL_", "VOXPULSE_"))]:
        del os.environ[key]
    os.environ.update(env)
    os.environ.setdefault("VOXPULSE_EXPORTER", "none")  # nothing leaves this process
    os.environ.setdefault("VOXPULSE_METRICS_EXPORTER", "none")
    os.environ.setdefault("VOXPULSE_PROVIDERS", "plugins")
    proc = SimpleNamespace(userdata={})
    server.prewarm(proc)
    c = proc.userdata["telemetry"].config
    out[name] = {"disabled": c.disabled, "exporter": c.exporter, "protocol": c.protocol,
                 "service_name": c.service_name, "service_version": c.service_version,
                 "traces_endpoint": c.traces_endpoint}
os.environ.update({"VOXPULSE_AGENT_NAME": "built-later", "VOXPULSE_MAX_CALLS": "7", "VOXPULSE_WORKER_PORT": "0"})
srv = server.build_server()
out["server"] = {"agent_name": srv._agent_name, "max_calls": server._max_calls}
os.environ["VOXPULSE_MAX_CALLS"] = "0"
try:
    server.build_server()
except ValueError as exc:
    out["bad_max_calls"] = str(exc)
print(json.dumps(out))
"""


def test_the_agent_goes_through_the_librarys_settings() -> None:
    cases = {
        "disabled": {"OTEL_SDK_DISABLED": "1"},  # the library's spelling of true: 1 counts
        "exporter_case": {"VOXPULSE_EXPORTER": "NONE"},
        "protocol": {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
        "default_name": {},
        "named": {"OTEL_SERVICE_NAME": "shop-agent", "VOXPULSE_AGENT_VERSION": "9.9"},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VOXPULSE_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["VOXPULSE_AGENT_NAME"] = "read-at-import"  # an import-time read would keep this
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cases)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["disabled"]["disabled"] is True
    assert got["default_name"]["disabled"] is False
    assert got["exporter_case"]["exporter"] == "none"
    assert got["protocol"]["protocol"] == "grpc" and got["protocol"]["traces_endpoint"] == "http://c:4317"
    assert got["default_name"]["service_name"] == "voxpulse-agent"  # the library's default
    assert got["named"]["service_name"] == "shop-agent" and got["named"]["service_version"] == "9.9"
    import telemetry

    assert got["default_name"]["service_version"] == telemetry.__version__
    assert got["server"] == {"agent_name": "built-later", "max_calls": 7}
    assert "VOXPULSE_MAX_CALLS" in got["bad_max_calls"]
