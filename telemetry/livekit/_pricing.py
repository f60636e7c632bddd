"""Usage -> cost: the price table (``telemetry.pricing``) applied to LiveKit's session usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.trace import Span

from telemetry import _quality
from telemetry.pricing import PriceTable
from telemetry.semconv import Stage

if TYPE_CHECKING:
    from livekit.agents.metrics.usage import AgentSessionUsage

__all__: list[str] = []


@dataclass(frozen=True, slots=True)
class _UsageCost:
    stage: Stage
    provider: str
    model: str
    usd: float
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = 0
    audio_seconds: float = 0.0


def _usage_costs(
    usage: AgentSessionUsage, prices: PriceTable, *, within_s: float | None = None, span: Span | None = None
) -> list[_UsageCost]:
    """Applies the price table to a LiveKit ``AgentSessionUsage`` (one entry per provider/model).
    An impossible audio duration (see ``telemetry._quality``; STT audio is bounded by the call's
    duration so far, ``within_s``) is a data error and counts as none."""
    out: list[_UsageCost] = []
    for u in usage.model_usage:
        # not every kind of usage names a provider and model (LiveKit's interruption/EOT usage)
        provider = str(getattr(u, "provider", "") or "unknown")
        model = str(getattr(u, "model", "") or "unknown")
        if u.type == "llm_usage":
            it, ot = int(u.input_tokens), int(u.output_tokens)
            usd = prices.cost(Stage.LLM, provider, model, input_tokens=it, output_tokens=ot)
            out.append(_UsageCost(Stage.LLM, provider, model, usd, input_tokens=it, output_tokens=ot))
        elif u.type == "tts_usage":
            chars = int(u.characters_count)
            secs = _quality.duration("livekit.tts.audio_duration", u.audio_duration, span=span) or 0.0
            usd = prices.cost(Stage.TTS, provider, model, characters=chars, audio_seconds=0.0,
                              input_tokens=int(u.input_tokens), output_tokens=int(u.output_tokens))
            out.append(_UsageCost(Stage.TTS, provider, model, usd, characters=chars, audio_seconds=secs))
        elif u.type == "stt_usage":
            secs = _quality.duration("livekit.stt.audio_duration", u.audio_duration, within_s=within_s,
                                     span=span) or 0.0
            usd = prices.cost(Stage.STT, provider, model, audio_seconds=secs,
                              input_tokens=int(u.input_tokens), output_tokens=int(u.output_tokens))
            out.append(_UsageCost(Stage.STT, provider, model, usd, audio_seconds=secs))
    return out
