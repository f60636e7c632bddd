"""asyncpg and Redis are instrumented into our pipeline without ``configure()`` importing them: at
once where the process already has them, else the moment it imports them (telemetry._instrumentation)."""

from __future__ import annotations

from tests.support import run_python


def test_configure_alone_does_not_import_asyncpg_or_redis() -> None:
    """An agent without a call history never loads them (the Redis instrumentor imports Redis: 3-4 %
    of a real-call job process's CPU)."""
    done = run_python("""
        import sys
        import telemetry
        telemetry.configure(exporter="console", metrics_exporter="none", setup_logs=False)
        print(sorted(m.split(".")[0] for m in sys.modules
                     if m.split(".")[0] in ("asyncpg", "redis") or m.startswith("opentelemetry.instrumentation.")))
    """)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_library_imported_after_configure_is_instrumented_into_the_last_pipeline() -> None:
    """Redis imported after two ``configure()`` calls: its commands' spans reach the last pipeline
    (the instrumentor's wrapper is on the client when the application first touches it); asyncpg,
    imported before, is instrumented at once."""
    done = run_python("""
        import sys
        import asyncpg  # already imported: instrumented by configure() itself
        import telemetry
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        first, last = InMemorySpanExporter(), InMemorySpanExporter()
        telemetry.configure(exporter="console", metrics_exporter="none", span_exporter=first, setup_logs=False)
        handle = telemetry.configure(exporter="console", metrics_exporter="none", span_exporter=last,
                                     setup_logs=False)
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        assert AsyncPGInstrumentor().is_instrumented_by_opentelemetry
        assert "redis" not in sys.modules
        import redis
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        assert RedisInstrumentor().is_instrumented_by_opentelemetry
        client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
        try:
            client.get("k")  # nothing listens: the command's span ends with the error
        except redis.exceptions.ConnectionError:
            pass
        handle.tracer_provider.force_flush()
        print(len(first.get_finished_spans()), [s.name for s in last.get_finished_spans()])
    """)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == "0 ['GET']"
