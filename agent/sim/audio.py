"""Audio of a simulated call: synthetic caller speech, and the "room" a session hears and plays into.

* :func:`speech_frame` / :func:`silence_frame` -- what the caller sends (speech is a two-tone signal
  above :data:`SPEECH_RMS`, silence is zeros);
* :class:`QueueAudioInput` -- the session's audio input: frames pushed into a queue;
* :class:`RecordingAudioOutput` -- the session's audio sink: "plays" each segment for its duration x
  ``playout_scale`` and fires the playback callbacks a real sink fires;
* :func:`rms` / :func:`frame_seconds` -- what the fake VAD and STT measure on a frame.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from livekit import rtc
from livekit.agents import utils
from livekit.agents.voice import io as lk_io

__all__ = [
    "SAMPLE_RATE",
    "SPEECH_RMS",
    "TTS_SAMPLE_RATE",
    "QueueAudioInput",
    "RecordingAudioOutput",
    "frame_seconds",
    "rms",
    "silence_frame",
    "speech_frame",
]

SAMPLE_RATE = 16000
TTS_SAMPLE_RATE = 24000
SPEECH_RMS = 0.05  # frames above this RMS count as speech


def rms(frame: rtc.AudioFrame) -> float:
    data = np.frombuffer(frame.data, dtype=np.int16)
    if data.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((data.astype(np.float32) / 32768.0) ** 2)))


def frame_seconds(frame: rtc.AudioFrame) -> float:
    return frame.samples_per_channel / frame.sample_rate


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
        self._seg_started: float | None = None
        self._seg_audio = 0.0
        self._playout: asyncio.Task[None] | None = None

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
        self._seg_audio += frame_seconds(frame)

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
