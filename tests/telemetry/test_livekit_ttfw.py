"""The pieces of time to first word at the caller's ear: where sound starts and ends in a frame,
which end of speech counts, and the media path estimate."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from livekit import rtc

from telemetry.livekit import _ttfw as lk


def frame(*blocks: int, rate: int = 48000) -> rtc.AudioFrame:
    """10 ms blocks: 0 = silence, anything else = a tone of that amplitude."""
    n = rate // 100
    parts = []
    for amp in blocks:
        t = np.arange(n) / rate
        parts.append((np.sin(2 * np.pi * 220 * t) * amp).astype(np.int16))
    data = np.concatenate(parts)
    return rtc.AudioFrame(data.tobytes(), rate, 1, data.size)


def test_first_and_last_audible_block() -> None:
    f = frame(0, 0, 30, 4000, 4000, 0)  # a whisper below the threshold, then speech
    assert lk._first_audible_offset(f) == pytest.approx(0.03)
    assert lk._last_audible_offset(f) == pytest.approx(0.05)
    assert lk._first_audible_offset(frame(0, 100, 0)) is None  # RMS ~71: not audible
    assert lk._duration(f) == pytest.approx(0.06)


def test_24khz_frames_are_split_in_10ms_blocks_too() -> None:
    f = frame(0, 0, 0, 0, 3000, rate=24000)
    assert lk._first_audible_offset(f) == pytest.approx(0.04)


class Owner:
    def __init__(self) -> None:
        self.session = SimpleNamespace(input=None, output=None)
        self.out: list[float] = []
        self.errors: list[Exception] = []

    def _on_audible_out(self, at: float) -> None:
        self.out.append(at)

    def _contain(self, site: str, exc: Exception) -> None:
        self.errors.append(exc)


def probe() -> tuple[Any, Owner]:
    owner = Owner()
    return lk._TtfwProbe(owner), owner  # type: ignore[arg-type]


def test_the_last_audible_frame_counts_only_just_before_the_vads_end() -> None:
    p, _ = probe()
    p._loud_at_eos = 100.0
    assert p.speech_end(100.2) == (100.0, "audio")  # the VAD ended speech 200 ms after the last sound
    assert p.speech_end(99.99) == (100.0, "audio")  # within one block
    assert p.speech_end(101.0) == (101.0, "vad")  # 1 s before: another utterance, or noise
    assert p.speech_end(99.5) == (99.5, "vad")  # after the VAD's end: line noise
    p._loud_at_eos = None
    assert p.speech_end(100.2) == (100.2, "vad")


def test_the_first_audible_output_frame_after_arming_ends_the_turn() -> None:
    p, owner = probe()
    p.on_output_frame(frame(4000), queued_s=0.0)
    assert owner.out == []  # not armed: the greeting is no turn
    p.arm()
    p.on_output_frame(frame(0, 0, 0, 0, 0), queued_s=0.02)  # the TTS's leading silence
    assert owner.out == []
    p.on_output_frame(frame(0, 0, 4000, 4000, 4000), queued_s=0.05)
    assert len(owner.out) == 1
    p.on_output_frame(frame(4000), queued_s=0.0)  # disarmed after the first
    assert len(owner.out) == 1


def test_media_path_from_the_jitter_buffer() -> None:
    p, _ = probe()
    assert p.network_s() == pytest.approx(2 * (lk.DEFAULT_JITTER_BUFFER_S + lk.MEDIA_FRAMING_S))
    p._jitter_s = 0.03
    assert p.network_s() == pytest.approx(2 * (0.03 + lk.MEDIA_FRAMING_S))


class Source:
    """Stands in for the room's ``rtc.AudioSource`` (what the probe uses of it)."""

    def __init__(self) -> None:
        self.queued_duration = 0.01
        self.sent: list[rtc.AudioFrame] = []

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.sent.append(frame)


async def test_the_output_probe_wraps_a_source_once_and_reports_to_the_latest_probe() -> None:
    source = Source()
    first, first_owner = probe()
    second, second_owner = probe()
    lk._attach_output_probe(source, first)  # type: ignore[arg-type]
    lk._attach_output_probe(source, second)  # type: ignore[arg-type]  # the next session's probe
    first.arm()
    second.arm()
    loud = frame(4000)
    await source.capture_frame(loud)
    assert source.sent == [loud]  # passed on, once
    assert first_owner.out == [] and len(second_owner.out) == 1
