"""Latency of the fake providers: a seeded lognormal with a slow tail, timeouts and errors.

Each provider instance draws from its own ``random.Random``, so one simulated call is reproducible
on its own whatever else runs concurrently.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["LatencyModel", "ProviderProfile"]


@dataclass(frozen=True)
class LatencyModel:
    """``median_s * lognormal(0, sigma)``; with ``tail_p`` a slow tail ``x tail_mult``; ``timeout_p``
    makes the request hang until it times out; ``error_p`` makes it fail (retryable 5xx)."""

    median_s: float
    sigma: float = 0.25
    tail_p: float = 0.0
    tail_mult: float = 4.0
    timeout_p: float = 0.0
    error_p: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.median_s <= 0:
            return 0.0
        v = self.median_s * math.exp(rng.gauss(0.0, self.sigma)) if self.sigma else self.median_s
        if self.tail_p and rng.random() < self.tail_p:
            v *= self.tail_mult
        return v

    def fault(self, rng: random.Random) -> str | None:
        """None, "timeout" or "error" (drawn after the latency)."""
        r = rng.random()
        if r < self.timeout_p:
            return "timeout"
        if r < self.timeout_p + self.error_p:
            return "error"
        return None


@dataclass(frozen=True)
class ProviderProfile:
    """Latency of every fake provider for one simulated call (all in seconds)."""

    stt_final: LatencyModel = LatencyModel(0.12, 0.3, tail_p=0.03)  # end of speech -> final transcript
    stt_interim: LatencyModel = LatencyModel(0.15, 0.2)  # start of speech -> first interim
    llm_ttft: LatencyModel = LatencyModel(0.35, 0.35, tail_p=0.05, tail_mult=4.0)
    llm_token_s: float = 0.004  # per streamed token after the first
    tts_ttfb: LatencyModel = LatencyModel(0.18, 0.3, tail_p=0.04, tail_mult=3.0)
    tts_char_s: float = 0.055  # seconds of audio per character of text
    vad_silence_s: float = 0.25  # silence needed to declare end of speech
    llm_model: str = "sim-llm-mini"
    stt_model: str = "sim-stt-uk"
    tts_model: str = "sim-tts"
    tts_voice: str = "uk-female-1"

    @staticmethod
    def fixed(
        *, stt_final: float = 0.1, llm_ttft: float = 0.2, tts_ttfb: float = 0.15, vad_silence_s: float = 0.2
    ) -> ProviderProfile:
        """Deterministic delays (tests)."""
        return ProviderProfile(
            stt_final=LatencyModel(stt_final, 0.0),
            stt_interim=LatencyModel(0.1, 0.0),
            llm_ttft=LatencyModel(llm_ttft, 0.0),
            llm_token_s=0.0,
            tts_ttfb=LatencyModel(tts_ttfb, 0.0),
            vad_silence_s=vad_silence_s,
        )
