"""Prices of the STT, LLM and TTS models a call uses, and what a call's usage costs.

    from telemetry.pricing import ModelPrice, PriceTable

    prices = PriceTable(models={"openai/gpt-4o": ModelPrice(input_per_1k_tokens=0.0025, output_per_1k_tokens=0.01)})
    usd = prices.cost(Stage.LLM, "openai", "gpt-4o", input_tokens=1200, output_tokens=80)

Nothing here knows LiveKit: :func:`telemetry.livekit.instrument_session` applies a table to the
session's usage when the call ends (``price_table=``), and any other integration can do the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from telemetry.semconv import Stage

__all__ = ["DEFAULT_PRICES", "ModelPrice", "PriceTable"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD prices of one model. Only the units the model bills in matter."""

    input_per_1k_tokens: float = 0.0
    output_per_1k_tokens: float = 0.0
    per_char: float = 0.0
    per_audio_minute: float = 0.0


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices per stage, with overrides per model (``"model"`` or ``"provider/model"`` keys)."""

    llm: ModelPrice = ModelPrice(input_per_1k_tokens=0.00015, output_per_1k_tokens=0.0006)
    stt: ModelPrice = ModelPrice(per_audio_minute=0.0043)
    tts: ModelPrice = ModelPrice(per_char=0.000015)
    models: Mapping[str, ModelPrice] = field(default_factory=dict)

    def price(self, stage: Stage, provider: str, model: str) -> ModelPrice:
        for key in (f"{provider}/{model}", model):
            if key in self.models:
                return self.models[key]
        if stage is Stage.LLM:
            return self.llm
        if stage is Stage.STT:
            return self.stt
        return self.tts

    def cost(
        self, stage: Stage, provider: str, model: str, *, input_tokens: int = 0, output_tokens: int = 0,
        characters: int = 0, audio_seconds: float = 0.0,
    ) -> float:
        p = self.price(stage, provider, model)
        return (
            input_tokens / 1000 * p.input_per_1k_tokens
            + output_tokens / 1000 * p.output_per_1k_tokens
            + characters * p.per_char
            + audio_seconds / 60 * p.per_audio_minute
        )


DEFAULT_PRICES: Final = PriceTable()
"""Roughly gpt-4o-mini / Deepgram Nova streaming / a mid-price TTS (late 2025 list prices)."""
