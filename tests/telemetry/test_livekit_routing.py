"""LiveKit's tracer is routed into our pipeline without the core importing LiveKit, and the one
private attribute the integration sets (the SDK span's ``_parent``) still means what it did."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry.livekit._tracing import _reparent
from tests.support import run_python


def test_configure_alone_does_not_import_livekit() -> None:
    """``configure()`` in a process that never touches LiveKit leaves livekit-agents (over a second
    to import) and the integration unimported."""
    done = run_python("""
        import sys
        import telemetry
        telemetry.configure(exporter="console")
        print(sorted(m for m in sys.modules if m.startswith(("livekit", "telemetry.livekit"))))
    """)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_livekit_imported_after_configure_is_routed_into_the_pipeline() -> None:
    """The application imports livekit-agents after ``configure()``: LiveKit's own spans still
    reach the configured pipeline (and the last configured one, not an earlier one)."""
    done = run_python("""
        import sys
        import telemetry
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        first, last = InMemorySpanExporter(), InMemorySpanExporter()
        telemetry.configure(exporter="console", metrics_exporter="none", span_exporter=first, setup_logs=False)
        handle = telemetry.configure(exporter="console", metrics_exporter="none", span_exporter=last,
                                     setup_logs=False)
        assert "livekit.agents" not in sys.modules
        from livekit.agents.telemetry import tracer

        with tracer.start_as_current_span("lk_probe"):
            pass
        handle.tracer_provider.force_flush()
        print([s.name for s in first.get_finished_spans()], [s.name for s in last.get_finished_spans()])
    """)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == "[] ['lk_probe']"


def test_reparent_moves_the_sdk_span_under_the_new_parent() -> None:
    """``_reparent`` relies on the OpenTelemetry SDK keeping a span's parent in ``_parent``: the
    span (and what exporters receive) then has the new parent. Fails when the SDK changes that."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent_session") as session, tracer.start_as_current_span("turn") as turn:
        pass
    child: Any = tracer.start_span("user_turn", context=trace.set_span_in_context(session))
    assert child.parent.span_id == session.get_span_context().span_id
    _reparent(child, turn.get_span_context())
    assert child.parent == turn.get_span_context()
    child.end()
    (exported,) = [s for s in exporter.get_finished_spans() if s.name == "user_turn"]
    assert exported.parent is not None and exported.parent.span_id == turn.get_span_context().span_id
    provider.shutdown()


def test_reparent_refuses_a_span_without_the_attribute() -> None:
    with pytest.raises(TypeError, match="keeps no _parent"):
        _reparent(SimpleNamespace(name="user_turn"), trace.INVALID_SPAN_CONTEXT)  # type: ignore[arg-type]
