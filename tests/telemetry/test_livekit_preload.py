"""VoxPulse preloaded by LiveKit's forkserver (telemetry.livekit._plugin, ._preload): ``import
telemetry.livekit`` registers a LiveKit plugin naming ``telemetry.livekit._preload``; the forkserver
imports it once, and every job process forked from it starts with what configure() and a call's
instrumentation load -- nothing started, nothing that can kill the forkserver."""

from __future__ import annotations

import json

from tests.support import run_python

# what configure() and instrument_session load in a job process (OTLP/HTTP, a database configured)
LOADED = ["telemetry.livekit", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
          "opentelemetry.exporter.otlp.proto.http.metric_exporter", "telemetry.relay", "telemetry.history",
          "opentelemetry.instrumentation.asyncpg", "opentelemetry.instrumentation.redis"]


def _plugins(code: str) -> list[list[str]]:
    done = run_python(code + """
        from livekit.agents import Plugin
        print(json.dumps([[p.title, p.package] for p in Plugin.registered_plugins]))
    """)
    assert done.returncode == 0, done.stderr[-4000:]
    plugins: list[list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return plugins


def test_importing_telemetry_livekit_registers_the_plugin_once_before_or_after_livekit() -> None:
    ours = ["voxpulse", "telemetry.livekit._preload"]
    after = _plugins("""
        import json
        import livekit.agents
        import telemetry.livekit
        telemetry.livekit._register_plugin()  # again: idempotent
    """)
    assert after.count(ours) == 1, after
    # telemetry.livekit first: it does not import LiveKit itself, and registers when the process does
    before = _plugins("""
        import json, sys
        import telemetry.livekit
        assert "livekit.agents" not in sys.modules
        import livekit.agents
    """)
    assert before.count(ours) == 1, before


def test_a_registration_off_the_main_thread_is_skipped_not_raised() -> None:
    """LiveKit raises for a plugin registered from another thread: ours stays out, silently."""
    plugins = _plugins("""
        import json, threading
        import livekit.agents
        t = threading.Thread(target=lambda: __import__("telemetry.livekit"))
        t.start(); t.join()
    """)
    assert ["voxpulse", "telemetry.livekit._preload"] not in plugins, plugins


def _preloaded(env: dict[str, str]) -> dict[str, object]:
    done = run_python(f"""
        import json, os, sys, threading
        os.environ.pop("DATABASE_URL", None)  # the settings given, not the test run's
        os.environ.update({env!r})
        def sockets():
            n = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    n += os.readlink(f"/proc/self/fd/{{fd}}").startswith("socket:")
                except OSError:  # the listing's own descriptor, closed by now
                    pass
            return n
        before = sockets()
        import telemetry.livekit._preload
        from opentelemetry import trace
        print(json.dumps({{"loaded": [m for m in {LOADED!r} if m in sys.modules],
                          "threads": threading.active_count(), "new_sockets": sockets() - before,
                          "provider": type(trace.get_tracer_provider()).__name__}}))
    """)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_preload_loads_what_a_job_process_would_and_starts_nothing() -> None:
    got = _preloaded({"DATABASE_URL": "postgresql://voxpulse@127.0.0.1:1/voxpulse"})
    assert got["loaded"] == LOADED
    # fork-safe: no thread, no socket, no provider installed (configure() in the job process does it)
    assert (got["threads"], got["new_sockets"], got["provider"]) == (1, 0, "ProxyTracerProvider")


def test_the_preload_follows_the_settings_and_survives_a_malformed_one() -> None:
    # no database: no call history nor its libraries' instrumentors
    assert _preloaded({})["loaded"] == LOADED[:4]
    # telemetry off: nothing of the SDK's exporters (telemetry.livekit is the preload's own package,
    # what the agent imports anyway)
    assert _preloaded({"OTEL_SDK_DISABLED": "true"})["loaded"] == LOADED[:1]
    # a setting configure() refuses: the forkserver must survive it (configure() reports it in the job)
    assert _preloaded({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})["loaded"] == LOADED[:1]


def test_a_job_process_forked_from_a_forkserver_that_preloaded_us_starts_with_it_loaded() -> None:
    """What LiveKit's worker does with a registered plugin (``set_forkserver_preload`` of its
    package): the forked child finds the modules loaded, without importing anything of ours itself."""
    done = run_python(f"""
        import json, multiprocessing as mp
        from multiprocessing import forkserver

        # the child's target: a builtin (code given as -c has no importable __main__ to find one in)
        report = "import json, sys; print(json.dumps([m for m in {LOADED[:4]!r} if m in sys.modules]), flush=True)"
        if __name__ == "__main__":
            for preload in ([], ["telemetry.livekit._preload"]):
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(preload)
                p = ctx.Process(target=exec, args=(report,))
                p.start(); p.join(60)
                forkserver._forkserver._stop()  # the next context starts a forkserver of its own
    """)
    assert done.returncode == 0, done.stderr[-4000:]
    bare, preloaded = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert (bare, preloaded) == ([], LOADED[:4]), done.stdout
