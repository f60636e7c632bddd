"""Fake STT, LLM, TTS and VAD on LiveKit's base classes, for offline calls.

They plug into a real ``AgentSession``: the session runs its real pipeline (VAD, endpointing, STT
stream, LLM steps with tools, TTS, playout) and emits its real spans, metrics and events; only the
network providers are replaced (the room: :mod:`agent.sim.audio`).

* :class:`EnergyVAD` -- energy detector over the fed frames.
* :class:`ScriptedSTT` -- streaming STT: energy-based segmentation, interim + final transcripts of
  what the caller says (:class:`CallerVoice`), ``RECOGNITION_USAGE`` events (which produce ``STTMetrics``).
* :class:`ScriptedLLM` -- streams what a policy (:func:`agent.sim.dialogue.decide`) chooses: tool
  calls or an answer, with usage.
* :class:`FakeTTS` -- non-streaming TTS (LiveKit wraps it in its StreamAdapter), audio length
  proportional to the text.

Latency, timeouts and errors come from :class:`agent.sim.latency.LatencyModel`.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable
from typing import Any, Never

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    LanguageCode,
    NotGivenOr,
    llm,
    stt,
    tts,
    vad,
)
from livekit.agents.types import NOT_GIVEN

from .audio import SPEECH_RMS, TTS_SAMPLE_RATE, frame_seconds, rms
from .dialogue import Action, decide
from .latency import LatencyModel

__all__ = ["CallerVoice", "EnergyVAD", "FakeTTS", "ScriptedLLM", "ScriptedSTT"]


PROVIDER = "voxpulse-sim"


class _Simulated:
    """The model and provider names LiveKit puts on a fake provider's metrics and spans."""

    _model: str

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return PROVIDER


async def _respond(latency: LatencyModel, rng: random.Random, timeout_s: float, error: Exception) -> None:
    """Wait like a provider's request: the sampled latency; a "timeout" fault waits for the request's
    whole timeout and raises APITimeoutError, an "error" fault raises ``error`` after the latency."""
    delay = latency.sample(rng)
    fault = latency.fault(rng)
    if fault == "timeout":
        await asyncio.sleep(timeout_s)
        raise APITimeoutError()
    await asyncio.sleep(delay)
    if fault == "error":
        raise error


class EnergyVAD(vad.VAD):
    def __init__(self, *, min_silence_s: float = 0.25, update_interval: float = 0.02) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=update_interval))
        self.min_silence_s = min_silence_s

    @property
    def model(self) -> str:
        return "energy"

    @property
    def provider(self) -> str:
        return PROVIDER

    def stream(self) -> vad.VADStream:
        return _EnergyVADStream(self)


class _EnergyVADStream(vad.VADStream):
    def __init__(self, v: EnergyVAD) -> None:
        self._min_silence = v.min_silence_s
        super().__init__(v)

    async def _main_task(self) -> None:
        speaking = False
        samples = 0
        speech_s = 0.0
        silence_s = 0.0
        speech_frames: list[rtc.AudioFrame] = []
        async for item in self._input_ch:
            if not isinstance(item, rtc.AudioFrame):
                continue
            dur = frame_seconds(item)
            samples += item.samples_per_channel
            is_speech = rms(item) > SPEECH_RMS
            ts = samples / item.sample_rate
            if is_speech:
                silence_s = 0.0
                speech_s += dur
                speech_frames.append(item)
                if not speaking:
                    speaking = True
                    self._event_ch.send_nowait(
                        vad.VADEvent(type=vad.VADEventType.START_OF_SPEECH, samples_index=samples, timestamp=ts,
                                     speech_duration=speech_s, silence_duration=0.0, frames=[item],
                                     speaking=True)
                    )
            else:
                silence_s += dur
            self._event_ch.send_nowait(
                vad.VADEvent(type=vad.VADEventType.INFERENCE_DONE, samples_index=samples, timestamp=ts,
                             speech_duration=speech_s, silence_duration=silence_s, frames=[item],
                             probability=1.0 if is_speech else 0.0, speaking=speaking)
            )
            if speaking and silence_s >= self._min_silence:
                speaking = False
                self._event_ch.send_nowait(
                    vad.VADEvent(type=vad.VADEventType.END_OF_SPEECH, samples_index=samples, timestamp=ts,
                                 speech_duration=speech_s, silence_duration=silence_s, frames=speech_frames,
                                 speaking=False)
                )
                speech_s = 0.0
                speech_frames = []


class CallerVoice:
    """What the caller is saying right now: the simulator's caller sets it, the fake STT reads it."""

    def __init__(self) -> None:
        self.utterance = ""
        self.language = LanguageCode("uk")


class ScriptedSTT(_Simulated, stt.STT[Never]):  # Never: no events besides the base class's
    def __init__(
        self,
        voice: CallerVoice,
        *,
        final: LatencyModel = LatencyModel(0.12, 0.0),
        interim: LatencyModel = LatencyModel(0.15, 0.0),
        silence_s: float = 0.2,
        rng: random.Random | None = None,
        model: str = "sim-stt-uk",
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self.voice = voice
        self.final = final
        self.interim = interim
        self.silence_s = silence_s
        self.rng = rng or random.Random()
        self._model = model

    async def _recognize_impl(
        self,
        buffer: Any,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        await asyncio.sleep(self.final.sample(self.rng))
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=self.voice.language, text=self.voice.utterance, confidence=0.95)],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return _ScriptedSTTStream(self, conn_options)


class _ScriptedSTTStream(stt.RecognizeStream):
    """Energy-based segmentation of the fed frames: at the start of speech an interim transcript
    (half the utterance) after the interim latency, after ``silence_s`` of silence the final one
    (and END_OF_SPEECH and the usage of the audio heard) after the final latency."""

    def __init__(self, s: ScriptedSTT, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=s, conn_options=conn_options)
        self._s = s
        self._request_id = uuid.uuid4().hex[:12]

    def _send(self, kind: stt.SpeechEventType, text: str | None = None, confidence: float = 0.0,
              **fields: Any) -> None:
        alternatives = ([stt.SpeechData(language=self._s.voice.language, text=text, confidence=confidence)]
                        if text is not None else [])
        self._event_ch.send_nowait(stt.SpeechEvent(type=kind, request_id=self._request_id,
                                                   alternatives=alternatives, **fields))

    async def _interim(self, text: str, delay: float) -> None:
        await asyncio.sleep(delay)
        words = text.split()
        self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, " ".join(words[: max(1, len(words) // 2)]), 0.6)

    async def _final(self, text: str, audio_s: float, delay: float) -> None:
        await asyncio.sleep(delay)
        self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, text, 0.93)
        self._send(stt.SpeechEventType.END_OF_SPEECH)
        self._send(stt.SpeechEventType.RECOGNITION_USAGE,
                   recognition_usage=stt.RecognitionUsage(audio_duration=audio_s))

    async def _run(self) -> None:
        s = self._s
        speaking = False
        silence = 0.0
        usage_audio = 0.0
        interim_task: asyncio.Task[None] | None = None
        finals: set[asyncio.Task[None]] = set()
        try:
            async for item in self._input_ch:
                if not isinstance(item, rtc.AudioFrame):
                    continue
                dur = frame_seconds(item)
                usage_audio += dur
                if rms(item) > SPEECH_RMS:
                    silence = 0.0
                    if not speaking:
                        speaking = True
                        self._send(stt.SpeechEventType.START_OF_SPEECH)
                        interim_task = asyncio.create_task(self._interim(s.voice.utterance, s.interim.sample(s.rng)))
                elif speaking:
                    silence += dur
                    if silence >= s.silence_s:
                        speaking = False
                        if interim_task is not None:
                            interim_task.cancel()
                        # the final arrives stt_final after the END of speech (silence already waited)
                        delay = max(0.0, s.final.sample(s.rng) - silence)
                        t = asyncio.create_task(self._final(s.voice.utterance, usage_audio, delay))
                        usage_audio = 0.0
                        finals.add(t)
                        t.add_done_callback(finals.discard)
        finally:
            if interim_task is not None:
                interim_task.cancel()
            for t in list(finals):
                t.cancel()


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ScriptedLLM(_Simulated, llm.LLM[Never]):
    def __init__(
        self,
        *,
        ttft: LatencyModel = LatencyModel(0.2, 0.0),
        token_s: float = 0.0,
        rng: random.Random | None = None,
        model: str = "sim-llm-mini",
        policy: Callable[[llm.ChatContext], Action] = decide,
    ) -> None:
        super().__init__()
        self.ttft = ttft
        self.token_s = token_s
        self.rng = rng or random.Random()
        self._model = model
        self.policy = policy

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _ScriptedLLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _ScriptedLLMStream(llm.LLMStream):
    def __init__(self, m: ScriptedLLM, **kwargs: Any) -> None:
        super().__init__(m, **kwargs)
        self._m = m

    async def _run(self) -> None:
        m = self._m
        await _respond(m.ttft, m.rng, self._conn_options.timeout,
                       APIStatusError("sim LLM overloaded", status_code=503, retryable=True))
        action = m.policy(self._chat_ctx)
        rid = "sim-" + uuid.uuid4().hex[:10]
        prompt = sum(len(getattr(i, "text_content", None) or getattr(i, "output", "") or "") for i in
                     self._chat_ctx.items) // 4 + 350
        out_tokens = 0
        if action.tool_calls:
            calls = [
                llm.FunctionToolCall(
                    name=n, arguments=json.dumps(a, ensure_ascii=False), call_id=f"call_{uuid.uuid4().hex[:8]}"
                )
                for n, a in action.tool_calls
            ]
            self._event_ch.send_nowait(
                llm.ChatChunk(id=rid, delta=llm.ChoiceDelta(role="assistant", tool_calls=calls))
            )
            out_tokens += sum(_tokens(c.arguments) + 5 for c in calls)
        if action.text:
            words = action.text.split(" ")
            for i, w in enumerate(words):
                if i and m.token_s:
                    await asyncio.sleep(m.token_s)
                self._event_ch.send_nowait(
                    llm.ChatChunk(id=rid, delta=llm.ChoiceDelta(role="assistant", content=(" " if i else "") + w))
                )
            out_tokens += _tokens(action.text)
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=rid,
                usage=llm.CompletionUsage(
                    completion_tokens=out_tokens, prompt_tokens=prompt, total_tokens=prompt + out_tokens
                ),
            )
        )


class FakeTTS(_Simulated, tts.TTS[Never]):
    def __init__(
        self,
        *,
        ttfb: LatencyModel = LatencyModel(0.15, 0.0),
        char_s: float = 0.055,
        rng: random.Random | None = None,
        model: str = "sim-tts",
        voice: str = "uk-female-1",
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=TTS_SAMPLE_RATE, num_channels=1
        )
        self.ttfb = ttfb
        self.char_s = char_s
        self.rng = rng or random.Random()
        self._model = model
        self.voice = voice

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _FakeChunkedStream(self, text, conn_options)


class _FakeChunkedStream(tts.ChunkedStream):
    def __init__(self, t: FakeTTS, text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=t, input_text=text, conn_options=conn_options)
        self._t = t

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        t = self._t
        output_emitter.initialize(
            request_id="sim-" + uuid.uuid4().hex[:10], sample_rate=TTS_SAMPLE_RATE, num_channels=1,
            mime_type="audio/pcm", frame_size_ms=100,
        )
        await _respond(t.ttfb, t.rng, self._conn_options.timeout, APIConnectionError("sim TTS connection reset"))
        seconds = max(0.1, len(self.input_text) * t.char_s)
        n = int(seconds * TTS_SAMPLE_RATE)
        tone = (np.sin(2 * np.pi * 220.0 * np.arange(n) / TTS_SAMPLE_RATE) * 6000).astype(np.int16)
        output_emitter.push(tone.tobytes())
        output_emitter.flush()
