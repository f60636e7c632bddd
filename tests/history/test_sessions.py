"""Per-call session state in Redis (TTL), traced by the Redis instrumentor, degrading to memory."""

from __future__ import annotations

import logging
import uuid

import pytest

from telemetry.history import SessionStore

pytestmark = pytest.mark.db


async def test_sessions_live_in_redis_with_a_ttl_and_join_the_call_trace(redis_url, otel) -> None:  # type: ignore[no-untyped-def]
    store = SessionStore.from_url(redis_url, ttl_s=120, prefix=f"voxpulse:test:{uuid.uuid4().hex}:")
    tracer = otel.tracer_provider.get_tracer("sim")
    try:
        with tracer.start_as_current_span("call") as call_span:
            await store.update("c-1", {"state": "greeting", "turn": 0})
            await store.update("c-1", {"state": "order", "cart": "MICH-1"})
            assert await store.get("c-1") == {"state": "order", "turn": "0", "cart": "MICH-1"}
            ttl = await store.ttl("c-1")
            assert ttl is not None and 0 < ttl <= 120
        redis_spans = [s for s in otel.exporter.get_finished_spans()
                       if s.instrumentation_scope.name.startswith("opentelemetry.instrumentation.redis")]
        assert redis_spans
        assert all(s.context.trace_id == call_span.get_span_context().trace_id for s in redis_spans)
        await store.delete("c-1")
        assert await store.get("c-1") == {}
    finally:
        await store.aclose()


@pytest.mark.slow
async def test_sessions_fall_back_to_memory_when_redis_is_down(fault_services, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, "telemetry.history")
    fs = fault_services
    await fs.arun("start-redis")
    store = SessionStore.from_url(fs.redis_url, ttl_s=60)
    try:
        await store.update("c-2", {"state": "greeting"})
        await fs.arun("stop-redis")
        await store.update("c-2", {"state": "order"})  # never raises
        await store.update("c-3", {"state": "greeting"})
        assert await store.get("c-2") == {"state": "order"}
        assert not store.redis_available
        assert "session state kept in memory" in caplog.text
        await fs.arun("start-redis")
        await store.update("c-2", {"step": 3})
        assert store.redis_available
        assert await store.get("c-2") == {"state": "order", "step": "3"}
        # c-3 changed only while Redis was down: its local state stays authoritative until written
        assert await store.get("c-3") == {"state": "greeting"}
        await store.update("c-3", {"step": 1})
        raw = await store._redis.hgetall("voxpulse:session:c-3")  # type: ignore[union-attr]
        assert raw == {b"state": b"greeting", b"step": b"1"}
    finally:
        await fs.arun("start-redis")
        await store.aclose()
