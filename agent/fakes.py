"""Fake STT / LLM / TTS / VAD providers and audio I/O on LiveKit's base classes, for offline calls.

Everything here plugs into a real ``AgentSession`` (see research/livekit.md §6b): the session runs
its real pipeline (VAD, endpointing, STT stream, LLM steps with tools, TTS, playout) and emits its
real spans, metrics and events; only the network providers and the room are replaced.

* :class:`LatencyModel` -- lognormal latency with a slow tail, timeouts and errors, drawn from a
  seeded ``random.Random`` (one per provider instance, so a call is reproducible on its own).
* :class:`EnergyVAD` -- energy detector over the fed frames.
* :class:`ScriptedSTT` -- streaming STT: energy-based segmentation, interim + final transcripts of
  what the caller script says, ``RECOGNITION_USAGE`` events (which produce ``STTMetrics``).
* :class:`ScriptedLLM` -- decides tool calls / answers from the conversation (rules over the
  caller's words, like a small model would), streams tokens, reports usage.
* :class:`FakeTTS` -- non-streaming TTS (LiveKit wraps it in its StreamAdapter), audio length
  proportional to the text.
* :class:`QueueAudioInput` / :class:`RecordingAudioOutput` -- the "room": frames in, frames out,
  with ``on_playback_started`` / ``on_playback_finished`` fired like a real sink.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    NotGivenOr,
    llm,
    stt,
    tts,
    utils,
    vad,
)
from livekit.agents.types import NOT_GIVEN
from livekit.agents.voice import io as lk_io

__all__ = [
    "SAMPLE_RATE",
    "CallerVoice",
    "EnergyVAD",
    "FakeTTS",
    "LatencyModel",
    "ProviderProfile",
    "QueueAudioInput",
    "RecordingAudioOutput",
    "ScriptedLLM",
    "ScriptedSTT",
    "decide",
]

SAMPLE_RATE = 16000
TTS_SAMPLE_RATE = 24000
SPEECH_RMS = 0.05  # frames above this RMS count as speech


# ------------------------------------------------------------------------------------------------
# latency
# ------------------------------------------------------------------------------------------------
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

    def scaled(self, k: float) -> LatencyModel:
        return LatencyModel(self.median_s * k, self.sigma, self.tail_p, self.tail_mult, self.timeout_p, self.error_p)


FIXED_ZERO = LatencyModel(0.0, 0.0)


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


def _rms(frame: rtc.AudioFrame) -> float:
    data = np.frombuffer(frame.data, dtype=np.int16)
    if data.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((data.astype(np.float32) / 32768.0) ** 2)))


def _frame_s(frame: rtc.AudioFrame) -> float:
    return frame.samples_per_channel / frame.sample_rate


# ------------------------------------------------------------------------------------------------
# VAD
# ------------------------------------------------------------------------------------------------
class EnergyVAD(vad.VAD):
    def __init__(self, *, min_silence_s: float = 0.25, update_interval: float = 0.02) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=update_interval))
        self.min_silence_s = min_silence_s

    @property
    def model(self) -> str:
        return "energy"

    @property
    def provider(self) -> str:
        return "voxpulse-sim"

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
            dur = _frame_s(item)
            samples += item.samples_per_channel
            is_speech = _rms(item) > SPEECH_RMS
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


# ------------------------------------------------------------------------------------------------
# STT
# ------------------------------------------------------------------------------------------------
class CallerVoice:
    """What the caller is saying right now: the simulator's caller sets it, the fake STT reads it."""

    def __init__(self) -> None:
        self.utterance = ""
        self.language = "uk"


class ScriptedSTT(stt.STT):
    def __init__(
        self,
        voice: CallerVoice,
        *,
        final: LatencyModel = LatencyModel(0.12, 0.0),
        interim: LatencyModel = LatencyModel(0.15, 0.0),
        silence_s: float = 0.2,
        rng: random.Random | None = None,
        model: str = "sim-stt-uk",
        time_scale: float = 1.0,
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self.voice = voice
        self.final = final
        self.interim = interim
        self.silence_s = silence_s
        self.rng = rng or random.Random()
        self._model = model
        self.time_scale = time_scale

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return "voxpulse-sim"

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
    def __init__(self, s: ScriptedSTT, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=s, conn_options=conn_options)
        self._s = s

    async def _run(self) -> None:
        s = self._s
        speaking = False
        silence = 0.0
        speech_started = 0.0
        usage_audio = 0.0
        interim_task: asyncio.Task[None] | None = None
        finals: set[asyncio.Task[None]] = set()
        request_id = uuid.uuid4().hex[:12]

        async def interim(text: str, delay: float) -> None:
            await asyncio.sleep(delay)
            words = text.split()
            partial = " ".join(words[: max(1, len(words) // 2)])
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.INTERIM_TRANSCRIPT, request_id=request_id,
                    alternatives=[stt.SpeechData(language=s.voice.language, text=partial, confidence=0.6)],
                )
            )

        async def final(text: str, audio_s: float, delay: float) -> None:
            await asyncio.sleep(delay)
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=request_id,
                    alternatives=[stt.SpeechData(language=s.voice.language, text=text, confidence=0.93)],
                )
            )
            self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH, request_id=request_id))
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.RECOGNITION_USAGE, request_id=request_id,
                    recognition_usage=stt.RecognitionUsage(audio_duration=audio_s),
                )
            )

        try:
            async for item in self._input_ch:
                if not isinstance(item, rtc.AudioFrame):
                    continue
                dur = _frame_s(item)
                usage_audio += dur
                if _rms(item) > SPEECH_RMS:
                    silence = 0.0
                    if not speaking:
                        speaking = True
                        speech_started = time.monotonic()
                        self._event_ch.send_nowait(
                            stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH, request_id=request_id)
                        )
                        interim_task = asyncio.create_task(
                            interim(s.voice.utterance, s.interim.sample(s.rng) * s.time_scale)
                        )
                elif speaking:
                    silence += dur
                    if silence >= s.silence_s:
                        speaking = False
                        if interim_task is not None:
                            interim_task.cancel()
                        # the final arrives stt_final after the END of speech (silence already waited)
                        delay = max(0.0, s.final.sample(s.rng) * s.time_scale - silence)
                        billed = usage_audio
                        usage_audio = 0.0
                        t = asyncio.create_task(final(s.voice.utterance, billed, delay))
                        finals.add(t)
                        t.add_done_callback(finals.discard)
                        _ = speech_started
        finally:
            if interim_task is not None:
                interim_task.cancel()
            for t in list(finals):
                t.cancel()


# ------------------------------------------------------------------------------------------------
# LLM
# ------------------------------------------------------------------------------------------------
@dataclass
class Action:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


_SIZE = re.compile(r"(\d{3})\s*[/ ]\s*(\d{2})\s*[RrРр]\s*(\d{2})")
_PHONE = re.compile(r"\+?380\d{9}")
_ORDER = re.compile(r"\b(?:UA|ЮА)[- ]?(\d{4,6})\b", re.IGNORECASE)
_DATE = re.compile(r"\b(20\d\d-\d\d-\d\d)\b")
_TIME = re.compile(r"\b(\d{1,2}:\d\d)\b")
_QTY = re.compile(r"\b(\d{1,2})\s*(?:шт|шин|штук|колес)", re.IGNORECASE)

INJECTION = re.compile(
    r"ігноруй|игнорируй|ignore (?:all |previous )|адміністратор|администратор|admin|system prompt|"
    r"вивантаж|выгрузи|dump|базу клієнтів|базу клиентов",
    re.IGNORECASE,
)
OPERATOR = re.compile(r"оператор|живу людину|живого человека|менеджер|з людиною|с человеком", re.IGNORECASE)
ANGRY = re.compile(r"жах|обурлив|безобраз|скільки можна|сколько можно|набридл|достали|!!", re.IGNORECASE)
ORDER_WORDS = re.compile(r"оформ|замовля|замовити|заказ|беру|купую|куплю", re.IGNORECASE)
FITTING_WORDS = re.compile(r"шиномонтаж|монтаж|запис|перевзу|переобу", re.IGNORECASE)
STATUS_WORDS = re.compile(r"статус|де моє|где мой|замовлення|заказ", re.IGNORECASE)
BYE_WORDS = re.compile(r"дякую|до побачення|спасибо|до свидания|все, бувай", re.IGNORECASE)


def _season(text: str) -> str | None:
    t = text.lower()
    if "всесезон" in t:
        return "all_season"
    if "зим" in t:
        return "winter"
    if "літ" in t or "лет" in t:
        return "summer"
    return None


def _turn_items(chat_ctx: llm.ChatContext) -> tuple[str, list[llm.FunctionCall], list[llm.FunctionCallOutput]]:
    """The last user text and the tool calls/outputs made since."""
    user = ""
    calls: list[llm.FunctionCall] = []
    outputs: list[llm.FunctionCallOutput] = []
    for item in chat_ctx.items:
        if item.type == "message" and item.role == "user":
            user = item.text_content or ""
            calls, outputs = [], []
        elif item.type == "function_call":
            calls.append(item)
        elif item.type == "function_call_output":
            outputs.append(item)
    return user, calls, outputs


def _last_tool_result(chat_ctx: llm.ChatContext, name: str) -> dict[str, Any] | None:
    for item in reversed(chat_ctx.items):
        if item.type == "function_call_output" and item.name == name and not item.is_error:
            try:
                out = json.loads(item.output)
            except (TypeError, ValueError):
                return None
            return out if isinstance(out, dict) else None
    return None


def decide(chat_ctx: llm.ChatContext) -> Action:
    """The fake model's policy: what to do next given the conversation."""
    user, calls, outputs = _turn_items(chat_ctx)
    if outputs:
        last = outputs[-1]
        errors = [o for o in outputs if o.is_error]
        if last.name == "transfer_to_operator":
            return Action("Зачекайте, будь ласка, з'єдную вас з оператором.")
        if last.is_error and "Unknown function" in last.output:
            return Action("Вибачте, я можу допомогти лише з шинами, замовленнями та записом на шиномонтаж.")
        if last.is_error and "недоступний" in last.output:
            if len(errors) >= 2:
                return Action(tool_calls=[("transfer_to_operator", {"reason": "store_unavailable"})])
            prev = next(c for c in reversed(calls) if c.call_id == last.call_id)
            return Action(tool_calls=[(prev.name, json.loads(prev.arguments or "{}"))])
        if last.is_error:
            return Action("На жаль, не вдалося: " + last.output.split(":")[-1].strip()[:80] + ". Щось іще?")
        try:
            data = json.loads(last.output)
        except ValueError:
            data = {}
        if last.name == "find_tyres":
            opts = data.get("options") or []
            if not opts:
                return Action("На жаль, такого розміру зараз немає в наявності.")
            o = opts[0]
            return Action(
                f"Є {o['brand']} {o['model']} за {o['price_uah']} гривень за шину, в наявності {o['stock']}. Оформити?"
            )
        if last.name == "create_order":
            return Action(f"Замовлення {data.get('order_id')} оформлено, сума {data.get('total_uah')} гривень.")
        if last.name == "book_fitting":
            return Action(f"Записала вас на шиномонтаж {data.get('date')} о {data.get('time')}.")
        if last.name == "check_order_status":
            return Action(f"Замовлення {data.get('order_id')} має статус {data.get('status')}.")
        return Action("Готово. Щось іще?")

    if INJECTION.search(user):
        # the "model" falls for the injection and asks for a tool the agent does not have
        return Action(tool_calls=[("export_customer_database", {"format": "csv", "include": "phones"})])
    if OPERATOR.search(user):
        return Action(tool_calls=[("transfer_to_operator", {"reason": "customer_request"})])
    if ANGRY.search(user):
        return Action(tool_calls=[("transfer_to_operator", {"reason": "angry_customer"})])
    if (m := _SIZE.search(user)) is not None:
        size = f"{m.group(1)}/{m.group(2)} R{m.group(3)}"
        args: dict[str, Any] = {"size": size}
        if (season := _season(user)) is not None:
            args["season"] = season
        return Action(tool_calls=[("find_tyres", args)])
    phone = _PHONE.search(user)
    if FITTING_WORDS.search(user) and (d := _DATE.search(user)) and (t := _TIME.search(user)):
        fargs: dict[str, Any] = {"date": d.group(1), "time": t.group(1), "phone": phone.group(0) if phone else ""}
        if (o := _ORDER.search(user)) is not None:
            fargs["order_id"] = f"UA-{o.group(1)}"
        return Action(tool_calls=[("book_fitting", fargs)])
    if (o := _ORDER.search(user)) is not None and STATUS_WORDS.search(user):
        return Action(tool_calls=[("check_order_status", {"order_id": f"UA-{o.group(1)}"})])
    if ORDER_WORDS.search(user) and phone:
        found = _last_tool_result(chat_ctx, "find_tyres")
        opts = (found or {}).get("options") or []
        if not opts:
            return Action("Спершу скажіть, будь ласка, розмір шин.")
        q = _QTY.search(user)
        return Action(
            tool_calls=[("create_order", {"tyre_id": opts[0]["id"], "quantity": int(q.group(1)) if q else 4,
                                          "phone": phone.group(0)})]
        )
    if BYE_WORDS.search(user):
        return Action("Дякую за дзвінок! Гарного дня.")
    return Action("Уточніть, будь ласка: вам потрібні шини, шиномонтаж чи статус замовлення?")


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ScriptedLLM(llm.LLM):
    def __init__(
        self,
        *,
        ttft: LatencyModel = LatencyModel(0.2, 0.0),
        token_s: float = 0.0,
        rng: random.Random | None = None,
        model: str = "sim-llm-mini",
        policy: Callable[[llm.ChatContext], Action] = decide,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.ttft = ttft
        self.token_s = token_s
        self.rng = rng or random.Random()
        self._model = model
        self.policy = policy
        self.time_scale = time_scale
        self.requests = 0

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return "voxpulse-sim"

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
        self.requests += 1
        return _ScriptedLLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _ScriptedLLMStream(llm.LLMStream):
    def __init__(self, m: ScriptedLLM, **kwargs: Any) -> None:
        super().__init__(m, **kwargs)
        self._m = m

    async def _run(self) -> None:
        m = self._m
        delay = m.ttft.sample(m.rng) * m.time_scale
        fault = m.ttft.fault(m.rng)
        if fault == "timeout":
            await asyncio.sleep(self._conn_options.timeout)
            raise APITimeoutError()
        await asyncio.sleep(delay)
        if fault == "error":
            raise APIStatusError("sim LLM overloaded", status_code=503, retryable=True)
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
                    await asyncio.sleep(m.token_s * m.time_scale)
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


# ------------------------------------------------------------------------------------------------
# TTS
# ------------------------------------------------------------------------------------------------
class FakeTTS(tts.TTS):
    def __init__(
        self,
        *,
        ttfb: LatencyModel = LatencyModel(0.15, 0.0),
        char_s: float = 0.055,
        rng: random.Random | None = None,
        model: str = "sim-tts",
        voice: str = "uk-female-1",
        time_scale: float = 1.0,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=TTS_SAMPLE_RATE, num_channels=1
        )
        self.ttfb = ttfb
        self.char_s = char_s
        self.rng = rng or random.Random()
        self._model = model
        self.voice = voice
        self.time_scale = time_scale

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return "voxpulse-sim"

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
        delay = t.ttfb.sample(t.rng) * t.time_scale
        fault = t.ttfb.fault(t.rng)
        if fault == "timeout":
            await asyncio.sleep(self._conn_options.timeout)
            raise APITimeoutError()
        await asyncio.sleep(delay)
        if fault == "error":
            raise APIConnectionError("sim TTS connection reset")
        seconds = max(0.1, len(self.input_text) * t.char_s)
        n = int(seconds * TTS_SAMPLE_RATE)
        tone = (np.sin(2 * np.pi * 220.0 * np.arange(n) / TTS_SAMPLE_RATE) * 6000).astype(np.int16)
        output_emitter.push(tone.tobytes())
        output_emitter.flush()


# ------------------------------------------------------------------------------------------------
# audio I/O (the "room")
# ------------------------------------------------------------------------------------------------
class QueueAudioInput(lk_io.AudioInput):
    """Caller audio: frames put into the queue are what the session hears."""

    def __init__(self, label: str = "sim-caller") -> None:
        super().__init__(label=label)
        self._ch = utils.aio.Chan[rtc.AudioFrame]()

    def push(self, frame: rtc.AudioFrame) -> None:
        if not self._ch.closed:
            self._ch.send_nowait(frame)

    def close(self) -> None:
        self._ch.close()

    async def __anext__(self) -> rtc.AudioFrame:
        try:
            return await self._ch.recv()
        except utils.aio.ChanClosed:
            raise StopAsyncIteration from None


class RecordingAudioOutput(lk_io.AudioOutput):
    """Agent audio sink: "plays" each segment for its duration x ``playout_scale`` and fires the
    playback callbacks a real sink fires. Records when each segment's first frame arrived."""

    def __init__(self, *, playout_scale: float = 1.0, label: str = "sim-speaker") -> None:
        super().__init__(label=label, capabilities=lk_io.AudioOutputCapabilities(pause=False), sample_rate=None)
        self.playout_scale = playout_scale
        self.first_frame_times: list[float] = []  # wall clock (time.time())
        self.segments_finished = 0
        self.interrupted = 0
        self._seg_started: float | None = None
        self._seg_audio = 0.0
        self._playout: asyncio.Task[None] | None = None
        self.on_first_frame: Callable[[float], None] | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._seg_started is None:
            if self._playout is not None and not self._playout.done():
                # a new segment while the previous one still plays: finish that one first
                self._playout.cancel()
                self._finish(self._seg_audio, interrupted=False)
            now = time.time()
            self._seg_started = time.monotonic()
            self._seg_audio = 0.0
            self.first_frame_times.append(now)
            self.on_playback_started(created_at=now)
            if self.on_first_frame is not None:
                self.on_first_frame(now)
        self._seg_audio += _frame_s(frame)

    def flush(self) -> None:
        super().flush()
        if self._seg_started is None:
            return
        started, audio = self._seg_started, self._seg_audio
        self._seg_started = None
        remaining = max(0.0, audio * self.playout_scale - (time.monotonic() - started))
        self._playout = asyncio.get_running_loop().create_task(self._play(remaining, audio))

    async def _play(self, remaining: float, audio: float) -> None:
        await asyncio.sleep(remaining)
        self._finish(audio, interrupted=False)

    def _finish(self, position: float, *, interrupted: bool) -> None:
        self.segments_finished += 1
        self.interrupted += int(interrupted)
        self.on_playback_finished(playback_position=position, interrupted=interrupted)

    def clear_buffer(self) -> None:
        if self._playout is not None and not self._playout.done():
            self._playout.cancel()
            self._finish(self._seg_audio, interrupted=True)
        elif self._seg_started is not None:
            started = self._seg_started
            self._seg_started = None
            self._finish(min(self._seg_audio, (time.monotonic() - started) / max(self.playout_scale, 1e-6)),
                         interrupted=True)


def speech_frame(frame_ms: int, t0: int, *, freq: float = 180.0) -> rtc.AudioFrame:
    n = SAMPLE_RATE * frame_ms // 1000
    idx = np.arange(t0, t0 + n)
    x = (np.sin(2 * np.pi * freq * idx / SAMPLE_RATE) * 0.3 + np.sin(2 * np.pi * 2.1 * freq * idx / SAMPLE_RATE) * 0.1)
    data = (x * 32767).astype(np.int16)
    return rtc.AudioFrame(data.tobytes(), SAMPLE_RATE, 1, n)


_SILENCE_CACHE: dict[int, bytes] = {}


def silence_frame(frame_ms: int) -> rtc.AudioFrame:
    n = SAMPLE_RATE * frame_ms // 1000
    raw = _SILENCE_CACHE.get(n)
    if raw is None:
        raw = _SILENCE_CACHE[n] = bytes(2 * n)
    return rtc.AudioFrame(raw, SAMPLE_RATE, 1, n)
