"""Store API client against the fake store, the assistant's tool wiring, and the price table."""

from __future__ import annotations

import pytest

from agent.assistant import TOOL_NAMES, TyreAssistant
from agent.shop_api import StoreClient, StoreError
from agent.sim.fake_shop import FakeStore, normalise_size
from telemetry.pricing import ModelPrice, PriceTable
from telemetry.semconv import Attr, Stage
from telemetry.testing import capture_telemetry


async def test_find_order_fitting_status_roundtrip() -> None:
    async with FakeStore(latency_s=0) as store, StoreClient(base_url=store.url) as client:
        items = await client.find_tyres("205/55 r16", "winter")
        assert items and all(i["size"] == "205/55 R16" and i["season"] == "winter" for i in items)
        assert items == sorted(items, key=lambda i: i["price_uah"])
        tyre = next(i for i in items if i["stock"] >= 4)
        order = await client.create_order(tyre["id"], 4, "+380501234567")
        assert order["total_uah"] == tyre["price_uah"] * 4
        status = await client.order_status(order["order_id"])
        assert status["status"] == "created" and "phone" not in status
        booking = await client.book_fitting("2026-11-28", "10:30", "+380501234567", order["order_id"])
        assert booking["booking_id"].startswith("F-")


async def test_retries_5xx_then_succeeds_and_counts_errors() -> None:
    with capture_telemetry(livekit=False, libraries=False) as cap:
        async with FakeStore(latency_s=0) as store, StoreClient(base_url=store.url, backoff_s=0.001) as client:
            store.fail_next(503, 500)
            assert await client.find_tyres("195/65 R15")
            assert store.requests == 3
        errors = {p.attributes[Attr.HTTP_STATUS]: p.value for p in cap.metric_points("voice.store_api.errors")}
        assert errors == {503: 1, 500: 1}
        span = cap.spans_named("store_api.find_tyres")[0]
        assert span.status.is_ok


async def test_gives_up_after_retries_and_does_not_retry_4xx() -> None:
    async with FakeStore(latency_s=0) as store, StoreClient(base_url=store.url, retries=1, backoff_s=0.001) as c:
        store.fail_next(502, 502)
        with pytest.raises(StoreError) as e:
            await c.find_tyres("195/65 R15")
        assert e.value.status == 502 and e.value.retryable
        assert store.requests == 2
        with pytest.raises(StoreError) as e4:
            await c.create_order("T9999", 4, "+380501234567")
        assert e4.value.status == 404 and not e4.value.retryable
        assert store.requests == 3


async def test_timeout_counts_as_status_0() -> None:
    with capture_telemetry(livekit=False, libraries=False) as cap:
        async with FakeStore(latency_s=0.3, jitter_sigma=0) as store, StoreClient(
            base_url=store.url, timeout_s=0.05, retries=0
        ) as c:
            with pytest.raises(StoreError) as e:
                await c.order_status("UA-1")
        assert e.value.status == 0
        assert [p.attributes[Attr.HTTP_STATUS] for p in cap.metric_points("voice.store_api.errors")] == [0]


def test_size_normalisation() -> None:
    assert normalise_size("205 55 r16") == "205/55 R16"
    assert normalise_size("205/55R16") == "205/55 R16"


async def test_tools_keep_their_livekit_signature() -> None:
    agent = TyreAssistant(StoreClient(base_url="http://127.0.0.1:9"))
    tools = {t.info.name: t for t in agent.tools}
    assert set(tools) == TOOL_NAMES
    from livekit.agents.llm.utils import build_legacy_openai_schema

    schema = build_legacy_openai_schema(tools["create_order"])
    params = schema["function"]["parameters"]
    assert set(params["properties"]) == {"tyre_id", "quantity", "phone", "name"}
    assert "ctx" not in params["properties"]
    assert "phone number" in params["properties"]["phone"]["description"]
    await agent.store.aclose()


def test_price_table_overrides_by_model() -> None:
    prices = PriceTable(models={"openai/gpt-4o": ModelPrice(input_per_1k_tokens=0.0025, output_per_1k_tokens=0.01)})
    assert prices.cost(Stage.LLM, "openai", "gpt-4o", input_tokens=2000, output_tokens=100) == pytest.approx(0.006)
    assert prices.cost(Stage.LLM, "x", "y", input_tokens=1000) == pytest.approx(prices.llm.input_per_1k_tokens)
    assert prices.cost(Stage.STT, "x", "y", audio_seconds=120) == pytest.approx(2 * prices.stt.per_audio_minute)
    assert prices.cost(Stage.TTS, "x", "y", characters=1000) == pytest.approx(1000 * prices.tts.per_char)
