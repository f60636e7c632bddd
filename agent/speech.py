"""Real speech for real calls: espeak-ng synthesis (Ukrainian and Russian voices), sox resampling.

The callers of ``agent.caller`` speak their scripted lines with it, and the local pipeline's TTS
(``agent.local.EspeakTTS``) answers with it, so the audio that crosses the LiveKit server is
speech: VAD, end of turn, playout and interruptions see what they would see on a phone line.
Both programs come from Debian (``scripts/build-backends.sh --only=debian`` installs them).

    pcm = synthesize("Добрий день", rate=48000)     # int16 mono samples
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import numpy as np
import numpy.typing as npt

__all__ = [
    "ESPEAK_RATE",
    "SpeechToolsMissing",
    "check_tools",
    "espeak_command",
    "leading_silence_s",
    "synthesize",
    "synthesize_async",
    "voice_for",
]

ESPEAK_RATE = 22050  # espeak-ng's own output rate
WORDS_PER_MINUTE = 165
# What counts as sound, on int16 samples (the caller's and the agent's "audible" threshold).
AUDIBLE_RMS = 300.0

_RUSSIAN_ONLY = set("ыэёъЫЭЁЪ")
_UKRAINIAN_ONLY = set("іїєґІЇЄҐ")


class SpeechToolsMissing(RuntimeError):
    """espeak-ng or sox is not installed (scripts/build-backends.sh --only=debian installs both)."""


def check_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise SpeechToolsMissing(
            f"{' and '.join(missing)} not installed: run scripts/build-backends.sh --only=debian"
        )


def voice_for(text: str) -> str:
    """espeak-ng voice for a line: ``ru`` when it has letters only Russian uses, else ``uk``."""
    chars = set(text)
    if chars & _RUSSIAN_ONLY and not chars & _UKRAINIAN_ONLY:
        return "ru"
    return "uk"


def espeak_command(text: str, *, voice: str | None = None) -> list[str]:
    """espeak-ng writing a WAV (22.05 kHz mono) of ``text`` to stdout."""
    return ["espeak-ng", "-v", voice or voice_for(text), "-s", str(WORDS_PER_MINUTE), "--stdout", "--", text]


def _sox_command(rate: int) -> list[str]:
    return ["sox", "-q", "-t", "wav", "-", "-t", "raw", "-r", str(rate), "-e", "signed-integer", "-b", "16",
            "-c", "1", "-"]


def _pcm_from_wav(wav: bytes) -> npt.NDArray[np.int16]:
    """The samples of espeak-ng's WAV (it writes a 44-byte header with unknown sizes to a pipe)."""
    idx = wav.find(b"data")
    start = idx + 8 if idx >= 0 else 44
    body = wav[start:]
    return np.frombuffer(body[: len(body) // 2 * 2], dtype=np.int16).copy()


def synthesize(text: str, *, rate: int = 48000, voice: str | None = None) -> npt.NDArray[np.int16]:
    """``text`` as int16 mono samples at ``rate`` (blocking: espeak-ng, then sox when resampling)."""
    wav = subprocess.run(espeak_command(text, voice=voice), capture_output=True, check=True, timeout=30).stdout
    if rate == ESPEAK_RATE:
        return _pcm_from_wav(wav)
    raw = subprocess.run(_sox_command(rate), input=wav, capture_output=True, check=True, timeout=30).stdout
    return np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16).copy()


async def synthesize_async(text: str, *, voice: str | None = None) -> npt.NDArray[np.int16]:
    """``text`` at espeak-ng's own rate (22.05 kHz), without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        *espeak_command(text, voice=voice), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    wav, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng exited with {proc.returncode}")
    return _pcm_from_wav(wav)


def rms(samples: npt.NDArray[np.int16]) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)))


def leading_silence_s(samples: npt.NDArray[np.int16], rate: int, *, frame_ms: int = 10) -> float:
    """Seconds before the first audible 10 ms frame (espeak-ng starts every utterance with silence)."""
    n = rate * frame_ms // 1000
    for i in range(0, samples.size - n + 1, n):
        if rms(samples[i:i + n]) > AUDIBLE_RMS:
            return i / rate
    return samples.size / rate
