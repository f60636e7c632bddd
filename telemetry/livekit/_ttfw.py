"""Time to first word at the caller's ear: the audio probe of one session (:class:`_TtfwProbe`).

It taps the session's audio input (the caller's last audible frame) and the room's audio source
(the answer's first audible frame), and estimates the media path both ways from the caller track's
jitter buffer. ``_session.SessionInstrumentation`` owns one probe per call and turns what it sees
into the turn's time to first word.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

from telemetry import _quality

if TYPE_CHECKING:
    from livekit import rtc
    from livekit.agents import AgentSession
    from livekit.agents.voice.io import AgentInput, AudioInput, AudioOutput

    from telemetry.livekit._session import SessionInstrumentation

__all__ = ["AUDIBLE_BLOCK_S", "AUDIBLE_RMS", "DEFAULT_JITTER_BUFFER_S", "MEDIA_FRAMING_S", "VAD_TRAILING_WINDOW_S"]

# Time to first word, at the caller's ear (see _TtfwProbe).
AUDIBLE_RMS: Final = 300.0  # a 10 ms block of int16 samples with a higher RMS is audible
AUDIBLE_BLOCK_S: Final = 0.010
# One way, on top of the receiving jitter buffer: the Opus packet (20 ms) and the encoder's
# look-ahead (6.5 ms); the sender's capture queue and the receiver's playout frame add about 1 ms
# more. 28 ms is what bench/bench_realcalls.py's calls placed one at a time leave, per direction,
# once twice the jitter-buffer delay is taken off the path the agent cannot see (loopback, 2-core
# machine, 14 turns, 2026-11-27: 28 +- 6 ms). An earlier 55 ms came from a loaded machine, where the
# caller's own scheduling delays (not the media path) made up the difference.
MEDIA_FRAMING_S: Final = 0.028
# The last audible frame counts as the end of the caller's speech only within this window before
# the VAD's end of speech (the VAD ends speech 100-250 ms after the last audible frame; a later
# "audible" frame is line noise).
VAD_TRAILING_WINDOW_S: Final = 0.6
DEFAULT_JITTER_BUFFER_S: Final = 0.040  # before the first WebRTC stats of the caller's track


class _TtfwProbe:
    """Measures time to first word as close to the caller's ear as the agent can know.

    * start -- the caller's last audible frame as it reached the agent: a tap on the session's
      audio input keeps the time of the last 10 ms block louder than :data:`AUDIBLE_RMS`. At the
      VAD's end of speech it is the end of the caller's speech when it lies within
      :data:`VAD_TRAILING_WINDOW_S` before the VAD's own end of speech (which the VAD declares
      100-250 ms after the last audible frame); otherwise the VAD's end is (method ``vad``).
    * end -- the answer's first audible block pushed into the room's audio source, plus the audio
      queued there ahead of it: when the caller's side starts to receive sound. LiveKit's own
      figure (``lk.e2e_latency``) ends at the agent-state change, when the first frame -- silence
      at the start of most TTS audio -- is pushed. Without a room audio source (an offline sink):
      the sink's playback start (method ``playback``).
    * network -- what neither end of the agent sees: the media path both ways. One way is the
      jitter-buffer delay of the caller's track at the agent (WebRTC stats over the last
      utterance) plus :data:`MEDIA_FRAMING_S`; the way back is assumed to be the same. 0 without
      a room.
    """

    def __init__(self, owner: SessionInstrumentation) -> None:
        self._owner = weakref.ref(owner)
        self.measures_output = False
        self._tap: AudioInput | None = None
        self._source: rtc.AudioSource | None = None
        self._last_loud: float | None = None
        self._loud_at_eos: float | None = None
        self._armed = False
        self._jitter_s: float | None = None
        self._jb_prev: tuple[float, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def install(self) -> None:
        """Taps the session's audio input and the room's audio source (idempotent; cheap)."""
        owner = self._owner()
        if owner is None or self._closed:
            return
        session = owner.session
        inputs: AgentInput | None = getattr(session, "input", None)  # None: not started
        current_in: AudioInput | None = getattr(inputs, "audio", None)
        if inputs is not None and current_in is not None and current_in is not self._tap:
            self._tap = _input_tap(current_in, self._on_input_frame, self.contain)
            inputs.audio = self._tap
        if self._source is None:
            source = _room_audio_source(getattr(getattr(session, "output", None), "audio", None))
            if source is not None:
                _attach_output_probe(source, self)
                self._source = source
                self.measures_output = True

    def close(self) -> None:
        self._closed = True
        self._armed = False
        for task in self._tasks:
            task.cancel()

    # -- start ------------------------------------------------------------------------------------
    def _on_input_frame(self, frame: rtc.AudioFrame) -> None:
        last = _last_audible_offset(frame)
        if last is not None:
            self._last_loud = time.time() - (_duration(frame) - last)

    def end_of_speech(self) -> None:
        """The VAD ended the caller's speech: the last audible frame so far belongs to it."""
        self._loud_at_eos = self._last_loud
        if self.measures_output and not self._closed:
            task = asyncio.get_running_loop().create_task(self._sample_jitter())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def speech_end(self, vad_stop: float | None) -> tuple[float | None, str]:
        """(when the caller's speech ended as the agent knows it, method) for a committed turn."""
        loud = self._loud_at_eos
        if vad_stop is None:
            return (loud, "audio") if loud is not None else (None, "vad")
        if loud is not None and vad_stop - VAD_TRAILING_WINDOW_S <= loud <= vad_stop + AUDIBLE_BLOCK_S:
            return loud, "audio"
        return vad_stop, "vad"

    # -- end --------------------------------------------------------------------------------------
    def arm(self) -> None:
        self._armed = not self._closed

    def on_output_frame(self, frame: rtc.AudioFrame, queued_s: float) -> None:
        if not self._armed:
            return
        offset = _first_audible_offset(frame)
        if offset is None:
            return
        self._armed = False
        owner = self._owner()
        if owner is not None:
            owner._on_audible_out(time.time() + queued_s + offset)

    # -- network ----------------------------------------------------------------------------------
    def network_s(self) -> float:
        jitter = self._jitter_s if self._jitter_s is not None else DEFAULT_JITTER_BUFFER_S
        return 2 * (jitter + MEDIA_FRAMING_S)

    def contain(self, site: str, exc: Exception) -> None:
        owner = self._owner()
        if owner is not None:
            owner._contain(site, exc)

    async def _sample_jitter(self) -> None:
        try:
            await self._read_jitter()
        except Exception as exc:
            self.contain("livekit.ttfw.stats", exc)

    async def _read_jitter(self) -> None:
        owner = self._owner()
        if owner is None:
            return
        track = _caller_audio_track(owner.session)
        if track is None:
            return
        for st in await track.get_stats():
            if st.WhichOneof("stats") != "inbound_rtp":
                continue
            inbound = st.inbound_rtp.inbound
            delay, count = float(inbound.jitter_buffer_delay), int(inbound.jitter_buffer_emitted_count)
            prev = self._jb_prev
            jitter: float | None = None
            if prev is not None and count > prev[1]:
                jitter = (delay - prev[0]) / (count - prev[1])
            elif count > 0:
                jitter = delay / count
            # an impossible jitter-buffer delay leaves the estimate as it was (a data error)
            jitter = _quality.duration("livekit.rtc.jitter_buffer_delay", jitter, within_s=owner._so_far(),
                                       span=owner.scope.span)
            if jitter is not None:
                self._jitter_s = jitter
            self._jb_prev = (delay, count)
            return


def _blocks(frame: rtc.AudioFrame) -> tuple[Any, int] | None:
    """The frame's int16 samples as rows of 10 ms (channels mixed), and the samples per row."""
    import numpy as np

    rate = int(getattr(frame, "sample_rate", 0) or 0)
    channels = int(getattr(frame, "num_channels", 1) or 1)
    data = np.frombuffer(frame.data, dtype=np.int16)
    if rate <= 0 or data.size == 0:
        return None
    per = max(1, int(rate * AUDIBLE_BLOCK_S))
    mono = data.reshape(-1, channels)[:, 0] if channels > 1 else data
    n = mono.size // per
    if n == 0:
        return mono.reshape(1, -1).astype(np.float32), mono.size
    return mono[: n * per].reshape(n, per).astype(np.float32), per


def _audible_rows(frame: rtc.AudioFrame) -> tuple[Any, int, int] | None:
    import numpy as np

    blocks = _blocks(frame)
    if blocks is None:
        return None
    rows, per = blocks
    rms = np.sqrt(np.mean(rows * rows, axis=1))
    loud = np.nonzero(rms > AUDIBLE_RMS)[0]
    if loud.size == 0:
        return None
    return loud, per, int(frame.sample_rate)


def _first_audible_offset(frame: rtc.AudioFrame) -> float | None:
    """Seconds from the frame's start to its first audible 10 ms block, or None."""
    found = _audible_rows(frame)
    if found is None:
        return None
    loud, per, rate = found
    return float(loud[0]) * per / rate


def _last_audible_offset(frame: rtc.AudioFrame) -> float | None:
    """Seconds from the frame's start to the end of its last audible 10 ms block, or None."""
    found = _audible_rows(frame)
    if found is None:
        return None
    loud, per, rate = found
    return (float(loud[-1]) + 1) * per / rate


def _duration(frame: rtc.AudioFrame) -> float:
    rate = getattr(frame, "sample_rate", 0) or 0
    return float(frame.samples_per_channel) / rate if rate else 0.0


_FrameFn = Callable[["rtc.AudioFrame"], None]
_ContainFn = Callable[[str, Exception], None]
_TAP_CLASS: Callable[[AudioInput, _FrameFn, _ContainFn], AudioInput] | None = None


def _input_tap(source: AudioInput, on_frame: _FrameFn, contain: _ContainFn) -> AudioInput:
    """A pass-through AudioInput in front of ``source`` that shows every frame to ``on_frame``
    (whose errors go to ``contain``: the caller's audio flows whatever happens there)."""
    global _TAP_CLASS
    if _TAP_CLASS is None:
        from livekit.agents.voice import io as lk_io

        class _AudioTap(lk_io.AudioInput):
            def __init__(self, src: AudioInput, fn: _FrameFn, on_error: _ContainFn) -> None:
                super().__init__(label="voxpulse-tap", source=src)
                self._fn = fn
                self._on_error = on_error

            async def __anext__(self) -> rtc.AudioFrame:
                src = self.source
                if src is None:
                    raise StopAsyncIteration
                frame = await src.__anext__()
                try:
                    self._fn(frame)
                except Exception as exc:
                    self._on_error("livekit.ttfw.input", exc)
                return frame

        _TAP_CLASS = _AudioTap
    return _TAP_CLASS(source, on_frame, contain)


def _room_audio_source(output: AudioOutput | None) -> rtc.AudioSource | None:
    """The ``rtc.AudioSource`` behind a session's audio output chain (RoomIO's), or None.

    LiveKit exposes no public way to it: RoomIO's output keeps it as ``_audio_source`` (read, never
    set), behind any number of wrapping outputs (``next_in_chain``); typed ``Any`` while walking
    because the chain's classes differ between LiveKit's releases and the user's own outputs."""
    node: Any = output
    seen = 0
    while node is not None and seen < 16:
        source = getattr(node, "_audio_source", None)
        if source is not None and hasattr(source, "capture_frame") and hasattr(source, "queued_duration"):
            return cast("rtc.AudioSource", source)
        node = getattr(node, "next_in_chain", None)
        seen += 1
    return None


# the probe each wrapped audio source reports to (a source outlives a session: the next one's
# probe replaces the last)
_OUTPUT_PROBES: weakref.WeakKeyDictionary[rtc.AudioSource, _TtfwProbe] = weakref.WeakKeyDictionary()


def _attach_output_probe(source: rtc.AudioSource, probe: _TtfwProbe) -> None:
    """Shows every frame pushed into the room's audio source to ``probe`` (with the audio queued
    ahead of it), by wrapping the source's ``capture_frame`` on that one object: LiveKit has no
    hook on the frames it sends, and the output chain above it differs between its releases."""
    if source in _OUTPUT_PROBES:
        _OUTPUT_PROBES[source] = probe
        return
    original = source.capture_frame

    async def capture_frame(frame: rtc.AudioFrame) -> None:
        current = _OUTPUT_PROBES.get(source)
        if current is not None:
            try:
                current.on_output_frame(frame, float(source.queued_duration))
            except Exception as exc:  # the agent's audio flows whatever happens here
                current.contain("livekit.ttfw.output", exc)
        await original(frame)

    _OUTPUT_PROBES[source] = probe
    source.capture_frame = capture_frame  # type: ignore[method-assign]  # this one object's method


def _caller_audio_track(session: AgentSession[Any]) -> rtc.RemoteTrack | None:
    try:
        participant = session.room_io.linked_participant
    except Exception:  # no RoomIO (offline) or not linked yet
        return None
    if participant is None:
        return None
    for pub in participant.track_publications.values():
        track = pub.track
        if track is not None and hasattr(track, "get_stats") and pub.kind == 1:  # KIND_AUDIO
            return track
    return None
