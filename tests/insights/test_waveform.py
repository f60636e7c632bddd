"""voxpulse_console/insights/_waveform.py: the peaks of a real call's recording (LiveKit's stereo Ogg
Opus, tests/fixtures/livekit_observability_v0_real), kept so the call page draws them at once."""

from __future__ import annotations

import base64
import json

from tests.insights.test_receiver import REAL_CALL
from voxpulse_console.insights._waveform import PER_SECOND, waveform
from voxpulse_console.insights._wire import inspect_ogg, read_multipart


def _real_recording() -> bytes:
    manifest = json.loads((REAL_CALL / "manifest.json").read_text(encoding="utf-8"))
    (req,) = [r for r in manifest["requests"] if r["path"].endswith("/recordings/v0")]
    ctype = next(v for k, v in req["headers"].items() if k.lower() == "content-type")
    return read_multipart(ctype, (REAL_CALL / req["body"]).read_bytes())["audio"][1]


def test_a_real_recordings_peaks_per_channel() -> None:
    audio = _real_recording()
    seconds = inspect_ogg(audio).seconds
    assert seconds is not None
    out = waveform(audio)
    assert out is not None and len(out) < len(audio) / 20  # a few kB where the audio is 500 kB
    w = json.loads(out)
    assert (w["per_second"], w["channels"]) == (PER_SECOND, 2)
    assert abs(w["seconds"] - seconds) < 0.1, (w["seconds"], seconds)
    peaks = [base64.b64decode(p) for p in w["peaks"]]
    assert all(abs(len(p) - seconds * PER_SECOND) <= 2 for p in peaks)
    for ch in peaks:  # both sides spoke, and both were silent part of the time
        loud = sum(1 for v in ch if v > 25) / len(ch)
        assert 0.05 < loud < 0.9, loud


def test_a_damaged_recording_gives_what_decodes_and_garbage_nothing() -> None:
    audio = _real_recording()
    half = waveform(audio[: len(audio) // 2])
    assert half is not None
    assert 5 < json.loads(half)["seconds"] < json.loads(waveform(audio) or b"{}")["seconds"]
    assert waveform(b"OggS not really an ogg file") is None
    assert waveform(b"") is None


def test_peaks_folded_a_second_at_a_time_equal_the_whole_recordings() -> None:
    """The receiver folds the decoded frames in as they come (a long call's samples are never held
    whole); the peaks are those of the whole array, whatever the frames' sizes."""
    import numpy as np

    from voxpulse_console.insights._waveform import _Peaks

    rng = np.random.default_rng(7)
    step = 480
    whole = (rng.standard_normal((2, 48_000 * 3 + 1_234)) * 0.3).astype(np.float32)
    acc = _Peaks(2, step)
    at = 0
    for size in rng.integers(1, 4_000, size=10_000):  # frames of any size, the last one short
        if at >= whole.shape[1]:
            break
        acc.add(whole[:, at:at + int(size)])
        at += int(size)
    got = acc.result()
    buckets = -(-whole.shape[1] // step)
    want = np.stack([[np.abs(ch[k * step:(k + 1) * step]).max() for k in range(buckets)] for ch in whole])
    assert acc.samples == whole.shape[1]
    assert got.shape == (2, buckets)
    np.testing.assert_array_equal(got, want)


def test_a_mono_frame_in_a_stereo_recording_counts_on_both_channels() -> None:
    import numpy as np

    from voxpulse_console.insights._waveform import _Peaks

    acc = _Peaks(2, 4)
    acc.add(np.array([[0.1, -0.5, 0.2, 0.0], [0.0, 0.0, 0.0, 0.9]], dtype=np.float32))
    acc.add(np.array([[0.25, -0.75, 0.0, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(acc.result(), np.array([[0.5, 0.75], [0.9, 0.75]], dtype=np.float32))
