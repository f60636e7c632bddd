"""A recording's waveform, computed once when it is stored, so the call page draws it at once.

Decoding a call's Ogg Opus in the browser (WebAudio) costs seconds for a long call (a 10-minute
recording: about 5 s in Chromium, 2 s even for native libopus): the page cannot wait for that before it
shows the waveform. The receiver decodes the recording once (PyAV, libopus) and keeps its peaks beside
it (``waveform.json``): per channel (LiveKit's recorder: the caller, then the agent), the largest
absolute sample of every :data:`PER_SECOND`-th of a second, scaled to 0-255. That is 100 bytes a second
per channel (base64 in the JSON): 160 kB for a 10-minute stereo call, instead of 8-12 MB of audio.

A damaged recording gives the peaks of what decodes; one that does not decode at all gives None (the
page then decodes it itself, as it does for a recording stored before this file existed).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any, Final

__all__ = ["PER_SECOND", "WAVEFORM_FILE", "waveform"]

log = logging.getLogger("voxpulse.insights")

WAVEFORM_FILE: Final = "waveform.json"
#: peaks per second: 10 ms each (a 1 400-pixel-wide waveform of a 10-minute call needs 2-3 a second)
PER_SECOND: Final = 100


class _Peaks:
    """Peaks folded in a second of frames at a time: memory for the peaks and about a second of
    samples, not the whole decoded call (a 10-minute stereo call is 230 MB of float samples), and a
    few array operations a second rather than a few per 20 ms frame."""

    def __init__(self, channels: int, step: int) -> None:
        self.channels = channels
        self.step = step
        self.samples = 0
        self.pending: list[Any] = []  # (channels, n) frames not folded yet
        self.pending_n = 0
        self.done: list[Any] = []  # (channels, n) peaks of full buckets

    def add(self, a: Any) -> None:
        import numpy as np

        if a.shape[0] != self.channels:  # a frame of another layout: its first channel in each
            a = np.repeat(a[:1], self.channels, axis=0)
        self.samples += a.shape[1]
        self.pending.append(a)
        self.pending_n += a.shape[1]
        if self.pending_n >= self.step * PER_SECOND:
            self._fold()

    def _fold(self) -> None:
        import numpy as np

        a = np.concatenate(self.pending, axis=1) if len(self.pending) > 1 else self.pending[0]
        full = a.shape[1] - a.shape[1] % self.step
        if full:
            block = a[:, :full].reshape(a.shape[0], -1, self.step)
            self.done.append(np.maximum(block.max(axis=2), -block.min(axis=2)))
        rest = a[:, full:]
        self.pending, self.pending_n = ([rest], rest.shape[1]) if rest.shape[1] else ([], 0)

    def result(self) -> Any:
        import numpy as np

        if self.pending:
            self._fold()
        parts = list(self.done)
        if self.pending:  # the last, shorter bucket
            parts.append(np.abs(self.pending[0]).max(axis=1, keepdims=True))
        return np.concatenate(parts, axis=1) if parts else np.zeros((self.channels, 0), dtype=np.float32)


def waveform(ogg: bytes) -> bytes | None:
    """``waveform.json`` for the Ogg Opus recording ``ogg`` (see the module's docstring), or None."""
    import av
    import numpy as np

    acc: _Peaks | None = None
    rate = 0
    try:
        with av.open(io.BytesIO(ogg), mode="r", format="ogg") as container:
            stream = container.streams.audio[0]
            rate = int(stream.rate or stream.codec_context.sample_rate or 48000)
            try:
                for frame in container.decode(stream):
                    a = frame.to_ndarray()
                    channels = len(frame.layout.channels)
                    if not frame.format.is_planar:  # interleaved: (1, samples * channels)
                        a = a.reshape(-1, channels).T
                    if a.dtype != np.float32:
                        a = a.astype(np.float32) / (32768.0 if a.dtype == np.int16 else 1.0)
                    if acc is None:
                        acc = _Peaks(channels, max(1, rate // PER_SECOND))
                    acc.add(a)
            except (av.error.FFmpegError, ValueError) as exc:  # damaged: the peaks of what decoded
                log.info("the recording decodes only in part (%s)", exc)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        log.info("the recording does not decode (%s): no waveform kept", exc)
        return None
    if acc is None or acc.samples == 0 or rate <= 0:
        return None
    peaks = acc.result()
    scaled = np.clip(np.rint(peaks * 255), 0, 255).astype(np.uint8)
    return json.dumps({
        "per_second": rate / acc.step, "channels": int(scaled.shape[0]), "seconds": acc.samples / rate,
        "peaks": [base64.b64encode(ch.tobytes()).decode("ascii") for ch in scaled],
    }, separators=(",", ":")).encode("ascii")
