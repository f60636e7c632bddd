"""The local pipeline for real calls without provider keys: Silero VAD, a SCRIPTED STT, the fake
LLM with the store tools, and a TTS that speaks with espeak-ng.

``VOXPULSE_PROVIDERS=local`` selects it in ``agent.server`` (the demo, the real-call tests and the
benchmarks use it). What is real and what is not:

* real: the LiveKit server, WebRTC/Opus audio both ways, Silero VAD on the caller's audio, end of
  turn, the session's scheduling, tools against the store API, synthesized agent speech, playout
  and interruptions, and all their timing;
* **scripted, not recognised**: :class:`ScriptedLineSTT` does not listen to the words. The callers
  of ``agent.caller`` publish the line they are saying as a participant attribute
  (:data:`LINE_ATTRIBUTE`), and the STT returns that line for each utterance the VAD detected in
  the audio it was given (once per line: a second fragment of the same line is empty);
* fake: the LLM (``agent.sim.providers.ScriptedLLM``: rules over the caller's words pick the tools and the
  answer).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, NotGivenOr, stt, tts
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN

from .speech import ESPEAK_RATE, espeak_command

__all__ = ["LINE_ATTRIBUTE", "EspeakTTS", "ScriptedLineSTT", "encode_line", "participant_line_source"]

# Participant attribute a simulated caller sets before speaking a line: {"n": <line number>, "text": ...}.
LINE_ATTRIBUTE = "voxpulse.sim.line"


def encode_line(n: int, text: str) -> str:
    return json.dumps({"n": n, "text": text}, ensure_ascii=False)


def participant_line_source(room: Any) -> Callable[[], tuple[int, str] | None]:
    """Reads the line a remote participant of ``room`` (an ``rtc.Room``) says now, from its attribute."""

    def current() -> tuple[int, str] | None:
        for p in room.remote_participants.values():
            raw = (getattr(p, "attributes", None) or {}).get(LINE_ATTRIBUTE)
            if raw:
                try:
                    data = json.loads(raw)
                    return int(data["n"]), str(data["text"])
                except (ValueError, KeyError, TypeError):
                    return None
        return None

    return current


class ScriptedLineSTT(stt.STT[Any]):
    """A SCRIPTED speech-to-text: returns the caller's current line (see the module docstring) for
    each utterance the framework hands it (LiveKit wraps it in its VAD-driven StreamAdapter), once
    per line. It never looks at the words in the audio; the audio's duration is billed as usage."""

    def __init__(self, line_source: Callable[[], tuple[int, str] | None], *, language: str = "uk") -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._line_source = line_source
        self._language = language
        self._last_n = -1

    @property
    def model(self) -> str:
        return "scripted-line"

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
        line = self._line_source()
        text = ""
        if line is not None and line[0] > self._last_n:
            self._last_n, text = line
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=uuid.uuid4().hex[:12],
            alternatives=[stt.SpeechData(language=LanguageCode(self._language), text=text,
                                         confidence=1.0 if text else 0.0)],
        )


class EspeakTTS(tts.TTS[Any]):
    """Text to speech with espeak-ng (Ukrainian voice; Russian for Russian text), 22.05 kHz mono.

    espeak-ng starts every utterance with ~50-100 ms of silence; it is kept (a real TTS has some
    too), which is why time to first word is measured at the first audible frame."""

    def __init__(self, *, voice: str | None = None) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=ESPEAK_RATE, num_channels=1)
        self.voice = voice

    @property
    def model(self) -> str:
        return "espeak-ng"

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _EspeakStream(self, text, conn_options)


class _EspeakStream(tts.ChunkedStream):
    def __init__(self, t: EspeakTTS, text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=t, input_text=text, conn_options=conn_options)
        self._voice = t.voice

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=uuid.uuid4().hex[:12], sample_rate=ESPEAK_RATE, num_channels=1, mime_type="audio/pcm",
        )
        proc = await asyncio.create_subprocess_exec(
            *espeak_command(self.input_text, voice=self._voice),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            header = b""
            while len(header) < 44:  # espeak-ng's WAV header (sizes unknown on a pipe)
                chunk = await proc.stdout.read(44 - len(header))
                if not chunk:
                    break
                header += chunk
            carry = b""
            while True:
                chunk = await proc.stdout.read(8192)
                if not chunk:
                    break
                data = carry + chunk
                cut = len(data) // 2 * 2
                carry = data[cut:]
                output_emitter.push(data[:cut])
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        output_emitter.flush()
