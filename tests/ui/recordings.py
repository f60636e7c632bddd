"""Real recordings for the console's insights tests, stored the way the insights receiver stores them.

* :func:`fixture_recording`: the Ogg Opus file of the committed LiveKit upload
  (tests/fixtures/livekit_observability_v0, libopus through PyAV as LiveKit's recorder writes it);
* :func:`speech_recording`: a stereo Ogg Opus file as LiveKit's recorder lays one out (the caller on
  the first channel, the agent on the second, one timeline), of espeak-ng speech, encoded by libopus
  (PyAV, the encoder LiveKit's recorder uses);
* :func:`store`: one call's recording, tags, verdicts and outcome saved through the receiver's own
  store (``voxpulse_console.insights._store``), so the console reads what the receiver really writes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from voxpulse_console.insights import _store, _wire
from voxpulse_console.insights._waveform import waveform

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "livekit_observability_v0"
RATE = 48000


def fixture_recording() -> bytes:
    """recording.ogg of the captured livekit-agents 1.8.9 upload."""
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    req = next(r for r in manifest["requests"] if r["path"] == "/observability/recordings/v0")
    parts = _wire.read_multipart(req["headers"]["Content-Type"], (FIXTURE / req["body"]).read_bytes())
    return parts["audio"][1]


def speech_recording(lines: Sequence[tuple[int, float, str]], seconds: float) -> bytes:
    """``seconds`` of stereo Ogg Opus with each ``(channel, start_s, text)`` spoken by espeak-ng there
    (channel 0: the caller, 1: the agent), silence elsewhere."""
    import io

    import av

    from agent.speech import synthesize

    pcm = np.zeros((2, int(seconds * RATE)), dtype=np.float32)
    for channel, start, text in lines:
        voice = synthesize(text, rate=RATE).astype(np.float32) / 32768.0
        a = int(start * RATE)
        b = min(pcm.shape[1], a + len(voice))
        pcm[channel, a:b] += voice[: b - a]
    out = io.BytesIO()
    with av.open(out, mode="w", format="ogg") as container:
        stream: Any = container.add_stream("libopus", rate=RATE, layout="stereo")
        block = 960  # 20 ms frames, as LiveKit's recorder feeds its encoder
        for i in range(0, pcm.shape[1], block):
            chunk = np.ascontiguousarray(pcm[:, i:i + block])
            if chunk.shape[1] < block:
                chunk = np.pad(chunk, ((0, 0), (0, block - chunk.shape[1])))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = i
            frame.time_base = Fraction(1, RATE)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


async def store(
    conn: Any, folder: Path, call_id: str, *, audio: bytes | None, started_at: dt.datetime,
    duration_ms: int = 30_000, tags: Mapping[str, Any] | None = None,
    verdicts: Mapping[str, tuple[str, str]] | None = None, outcome: tuple[str, str | None] | None = None,
    keep_audio: bool = True, wave: bool = True,
) -> None:
    """One call's upload saved by the receiver's store: the recording (checked by its Ogg check, so a
    damaged file is marked broken as the receiver marks it) and the log records' tags, verdicts
    ({judge: (verdict, reasoning)}) and outcome ((outcome, reason))."""
    header = _wire.RecordingHeader(room_id=call_id, job_id="AJ_test", duration_ms=duration_ms, start_time=started_at)
    ogg = _wire.inspect_ogg(audio) if audio is not None and keep_audio else None
    # the receiver keeps the recording's peaks with it (wave=False: a recording stored before it did)
    peaks = waveform(audio) if wave and ogg is not None and audio is not None else None
    await _store.save_recording(conn, folder, header, chat=b"[]", audio=audio, ogg=ogg, keep_audio=keep_audio,
                                wave=peaks)
    ev = _wire.CallEvents(room_id=call_id, job_id="AJ_test", agent_name="tyre-shop", sdk_version="1.8.9")
    ev.tags.update(tags or {})
    for judge, (verdict, reasoning) in (verdicts or {}).items():
        ev.evaluations[judge] = {"verdict": verdict, "reasoning": reasoning, "instructions": None}
    if outcome is not None:
        ev.outcome, ev.outcome_reason = outcome
    await _store.save_events(conn, {call_id: ev})
