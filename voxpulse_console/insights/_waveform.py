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


def waveform(ogg: bytes) -> bytes | None:
    """``waveform.json`` for the Ogg Opus recording ``ogg`` (see the module's docstring), or None."""
    import av
    import numpy as np

    chunks: list[Any] = []
    rate = 0
    try:
        with av.open(io.BytesIO(ogg), mode="r", format="ogg") as container:
            stream = container.streams.audio[0]
            rate = int(stream.rate or stream.codec_context.sample_rate or 48000)
            try:
                for frame in container.decode(stream):
                    a = frame.to_ndarray()
                    if not frame.format.is_planar:  # interleaved: (1, samples * channels)
                        a = a.reshape(-1, len(frame.layout.channels)).T
                    chunks.append(np.abs(a.astype(np.float32)) / (32768.0 if a.dtype == np.int16 else 1.0))
            except (av.error.FFmpegError, ValueError) as exc:  # damaged: the peaks of what decoded
                log.info("the recording decodes only in part (%s)", exc)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        log.info("the recording does not decode (%s): no waveform kept", exc)
        return None
    if not chunks or rate <= 0:
        return None
    samples = np.concatenate(chunks, axis=1)
    step = max(1, rate // PER_SECOND)
    usable = samples.shape[1] - samples.shape[1] % step
    peaks = samples[:, :usable].reshape(samples.shape[0], -1, step).max(axis=2) if usable else samples[:, :0]
    if samples.shape[1] > usable:  # the last, shorter bucket
        peaks = np.concatenate([peaks, samples[:, usable:].max(axis=1, keepdims=True)], axis=1)
    scaled = np.clip(np.rint(peaks * 255), 0, 255).astype(np.uint8)
    return json.dumps({
        "per_second": rate / step, "channels": int(scaled.shape[0]), "seconds": samples.shape[1] / rate,
        "peaks": [base64.b64encode(ch.tobytes()).decode("ascii") for ch in scaled],
    }, separators=(",", ":")).encode("ascii")
