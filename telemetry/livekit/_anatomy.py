"""The anatomy of a turn: where the caller's time to first word went, in parts that add up to it.

A turn's time to first word at the caller's ear (``voice.turn.time_to_first_word``) runs from the
caller's last word to the first word the caller hears. This module cuts that interval into
segments on one clock (the agent's ``time.time()``, the clock of LiveKit's event timestamps), each
owned by someone: the transport, a setting (VAD silence, the end-of-turn model), a provider (STT,
LLM, TTS), the agent's own code, or the framework. Time that no component measures is a segment
of its own (``queueing``; ``unaccounted`` where a measurement is missing), never hidden.

How: every measurement becomes a *mark*, a moment on the agent's clock at which something the turn
waited for was done (the VAD fired, the final transcript arrived, the LLM's first token, ...). The
marks are taken in the pipeline's order, each clamped between the mark before it and the end, and
a segment is the time from one mark to the next, named after what the later mark waited for. So
the segments telescope: they sum to ``end - start`` exactly (to rounding), whatever LiveKit
reported. A mark that is later than the next one in order (the final transcript arriving after the
end-of-turn decision, say) makes the later segment 0: the earlier one was the critical path. Such a
part was measured but cost the caller nothing; :func:`anatomy` names it in ``overlapped`` (an LLM
whose first token came before the end-of-turn decision: LiveKit's preemptive generation).
A segment whose start mark is missing is ``unaccounted`` (a crashed job, a dropped batch, a
metric LiveKit did not report), so a turn with missing data still adds up and nothing is negative.

The marks, from LiveKit's per-message metrics (``ChatMessage.metrics``, LiveKit >= 1.3) and the
turn's own probes; where the answer's metrics are incomplete (an answer the caller interrupted is
added to the chat only after the caller's new turn began), the LLM and TTS marks come from LiveKit's
per-request metrics (``metrics_collected``: start = timestamp - duration, plus ttft / ttfb):

================================  ===========================================================
segment (ends when ...)            mark
================================  ===========================================================
``transport_in``                   the caller's last audible frame reached the agent (probe)
``end_of_speech``                  the VAD declared the end of speech (its silence setting)
``stt_final``                      the final transcript (stopped + transcription_delay)
``end_of_turn``                    the end-of-turn decision (stopped + end_of_turn_delay)
``on_user_turn_completed``         the agent's ``on_user_turn_completed`` returned
``llm_tool_call``                  the first tool call started (the LLM chose a tool)
``tools``                          the last tool call ended (tools run concurrently)
``queueing``                       the reply's LLM generation started (a gap: nobody measures it)
``llm_ttft``                       the LLM's first token
``llm_first_sentence``             the first sentence reached the TTS
``tts_ttfb``                       the TTS's first audio
``playback``                       the audio output said playback started
``publication``                    the first audible frame went into the room (probe)
``transport_out``                  ... and reached the caller's ear (estimated media latency)
================================  ===========================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from telemetry.semconv import TurnSegment

__all__ = ["GreetingMarks", "Segment", "TurnMarks", "anatomy", "greeting_anatomy", "named_share"]


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of a turn's time to first word, on the agent's clock (seconds since the epoch)."""

    segment: TurnSegment
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class TurnMarks:
    """What one turn measured, on the agent's clock; ``None`` where it was not measured. Durations
    reported by LiveKit must already have passed the data-quality guard (``telemetry._quality``)."""

    heard_end: float  # the caller's last audible frame at the agent (start of TTFW at the agent)
    audible_out: float  # the answer's first audible frame into the room (end of TTFW at the agent)
    transport_in_s: float = 0.0  # the media path caller -> agent (estimated)
    transport_out_s: float = 0.0  # the media path agent -> caller (estimated)
    vad_end_at: float | None = None  # the VAD's end-of-speech event
    stopped_speaking_at: float | None = None  # LiveKit's anchor for the delays below
    transcription_delay: float | None = None
    end_of_turn_delay: float | None = None
    on_user_turn_completed_delay: float | None = None
    tools: Sequence[tuple[float, float]] = ()  # (start, end) of each tool call before the reply
    started_speaking_at: float | None = None  # the reply's playback started (assistant metrics)
    playback_latency: float | None = None  # first frame forwarded -> playback started
    tts_node_ttfb: float | None = None  # first text into the TTS -> its first audio
    llm_node_ttfs: float | None = None  # LLM generation start -> first sentence into the TTS
    llm_node_ttft: float | None = None  # LLM generation start -> first token
    # when the answer's metrics are incomplete (an interrupted answer is added to the chat after
    # the turn it answered was closed): LiveKit's per-request metrics, (start, first token/audio)
    llm_requests: Sequence[tuple[float, float]] = ()
    tts_requests: Sequence[tuple[float, float]] = ()

    @classmethod
    def reply_metrics(cls, m: Mapping[str, object]) -> dict[str, float]:
        """The assistant message's metrics this module reads, as floats (missing ones left out)."""
        keys = ("started_speaking_at", "playback_latency", "tts_node_ttfb", "llm_node_ttfs", "llm_node_ttft")
        return {k: float(v) for k in keys if isinstance(v := m.get(k), int | float)}


def _sum(*parts: float | None) -> float | None:
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def _marks(m: TurnMarks) -> list[tuple[TurnSegment, float | None]]:
    """(segment, the moment it ended) in the pipeline's order; ``None`` for a missing mark."""
    stop = m.stopped_speaking_at
    eot = _sum(stop, m.end_of_turn_delay)
    first_tool = min((s for s, _ in m.tools), default=None)
    last_tool = max((e for _, e in m.tools), default=None)
    forwarded = _sum(m.started_speaking_at, -m.playback_latency if m.playback_latency is not None else None)
    tts_in = _sum(forwarded, -m.tts_node_ttfb if m.tts_node_ttfb is not None else None)
    llm_start = _sum(tts_in, -m.llm_node_ttfs if m.llm_node_ttfs is not None else None)
    first_token = _sum(llm_start, m.llm_node_ttft)
    if first_token is None:  # the answer's own metrics are incomplete: LiveKit's per-request ones
        llm_start = first_token = tts_in = forwarded = None
        until = m.started_speaking_at if m.started_speaking_at is not None else m.audible_out
        after = last_tool if last_tool is not None else -math.inf
        replies = [r for r in m.llm_requests if after <= r[0] < until]
        if replies:
            llm_start, first_token = replies[-1]
            speech = [r for r in m.tts_requests if r[0] >= llm_start]
            if speech:
                tts_in, forwarded = min(speech)
    return [
        (TurnSegment.TRANSPORT_IN, m.heard_end),
        (TurnSegment.END_OF_SPEECH, m.vad_end_at),
        (TurnSegment.STT_FINAL, _sum(stop, m.transcription_delay)),
        (TurnSegment.END_OF_TURN, eot),
        (TurnSegment.ON_USER_TURN_COMPLETED, _sum(eot, m.on_user_turn_completed_delay)),
        (TurnSegment.LLM_TOOL_CALL, first_tool),
        (TurnSegment.TOOLS, last_tool),
        (TurnSegment.QUEUEING, llm_start),
        (TurnSegment.LLM_TTFT, first_token),
        (TurnSegment.LLM_FIRST_SENTENCE, tts_in),
        (TurnSegment.TTS_TTFB, forwarded),
        (TurnSegment.PLAYBACK, m.started_speaking_at),
        (TurnSegment.PUBLICATION, m.audible_out),
    ]


# segments that are gaps: no component measures them (named, but not "measured" in named_share)
_GAPS: Final = frozenset({TurnSegment.QUEUEING})
# never "overlapped": a gap, and the publication (its mark is the turn's end at the agent, not a measurement)
_NOT_PARTS: Final = _GAPS | {TurnSegment.PUBLICATION}
# optional stages: absent from a turn without them (no tools), never a reason for "unaccounted"
_OPTIONAL: Final = frozenset({TurnSegment.LLM_TOOL_CALL, TurnSegment.TOOLS, TurnSegment.END_OF_SPEECH})


def anatomy(m: TurnMarks, *, overlapped: list[TurnSegment] | None = None) -> list[Segment]:
    """The turn's segments, in order, from the caller's last word (``heard_end - transport_in_s``)
    to the first word at the caller's ear (``audible_out + transport_out_s``). They sum to that
    interval; none is negative; a zero-length segment is left out. ``overlapped``, when given,
    receives the measured parts left out because their mark came no later than the part before
    them ended: they ran in that part's shadow (gaps such as ``queueing`` are not parts, and the
    first part has none before it)."""
    return _telescope(m.heard_end - m.transport_in_s, m.heard_end, m.audible_out, m.transport_out_s, _marks(m),
                      _OPTIONAL, overlapped)


@dataclass(slots=True)
class GreetingMarks:
    """What the greeting (the agent's first speech after the caller joined) measured, on the agent's
    clock; ``None`` where it was not measured. The LLM marks are absent for a fixed greeting
    (``session.say``)."""

    start: float  # the caller joined the room (or the agent's session started: ``Greeting``)
    audible_out: float  # the greeting's first audible frame into the room
    transport_out_s: float = 0.0
    ready_at: float | None = None  # the agent's session started (its first state change)
    started_speaking_at: float | None = None
    playback_latency: float | None = None
    tts_node_ttfb: float | None = None
    llm_node_ttfs: float | None = None
    llm_node_ttft: float | None = None
    llm_requests: Sequence[tuple[float, float]] = ()
    tts_requests: Sequence[tuple[float, float]] = ()


def greeting_anatomy(g: GreetingMarks) -> list[Segment]:
    """The greeting's segments, from the caller's join to its first word at the caller's ear:
    ``call_setup`` (until the agent's session started), then the reply's parts as in a turn. They
    sum to that interval; none is negative."""
    forwarded = _sum(g.started_speaking_at, -g.playback_latency if g.playback_latency is not None else None)
    tts_in = _sum(forwarded, -g.tts_node_ttfb if g.tts_node_ttfb is not None else None)
    llm_start = _sum(tts_in, -g.llm_node_ttfs if g.llm_node_ttfs is not None else None)
    first_token = _sum(llm_start, g.llm_node_ttft)
    if tts_in is None:  # the message's own metrics are incomplete: LiveKit's per-request ones
        until = g.started_speaking_at if g.started_speaking_at is not None else g.audible_out
        replies = [r for r in g.llm_requests if r[0] < until]
        llm_start, first_token = replies[-1] if replies else (None, None)
        speech = [r for r in g.tts_requests if r[0] < until and (llm_start is None or r[0] >= llm_start)]
        tts_in, forwarded = min(speech) if speech else (None, None)
    marks = [
        (TurnSegment.CALL_SETUP, g.ready_at),
        (TurnSegment.QUEUEING, llm_start if llm_start is not None else tts_in),
        (TurnSegment.LLM_TTFT, first_token),
        (TurnSegment.LLM_FIRST_SENTENCE, tts_in if first_token is not None else None),
        (TurnSegment.TTS_TTFB, forwarded),
        (TurnSegment.PLAYBACK, g.started_speaking_at),
        (TurnSegment.PUBLICATION, g.audible_out),
    ]
    return _telescope(g.start, g.start, g.audible_out, g.transport_out_s, marks, _GREETING_OPTIONAL)


# a fixed greeting (``session.say``) has no LLM
_GREETING_OPTIONAL: Final = frozenset({TurnSegment.LLM_TTFT, TurnSegment.LLM_FIRST_SENTENCE})


def _telescope(
    start: float, at_agent_start: float, audible_out: float, transport_out_s: float,
    marks: Sequence[tuple[TurnSegment, float | None]], optional: frozenset[TurnSegment],
    overlapped: list[TurnSegment] | None = None,
) -> list[Segment]:
    """Cuts ``start`` .. ``audible_out + transport_out_s`` at the marks (see the module docstring):
    each mark clamped between the one before it and the end; a segment after a missing mark that is
    not ``optional`` is ``unaccounted``; the first mark's segment is always named. A named segment
    whose mark is not after the previous cut goes to ``overlapped`` (see :func:`anatomy`)."""
    end = audible_out + transport_out_s
    at_agent_end = max(audible_out, at_agent_start)
    out: list[Segment] = []
    prev = start
    prev_known = True  # the previous mark was measured (the segment after it is named)

    def cut(segment: TurnSegment, until: float) -> None:
        nonlocal prev
        until = min(max(until, prev), end)
        if until > prev:
            if out and out[-1].segment is segment:
                out[-1] = Segment(segment, out[-1].start, until)
            else:
                out.append(Segment(segment, prev, until))
        prev = until

    for pos, (segment, mark) in enumerate(marks):
        if mark is None:
            if segment not in optional:
                prev_known = False
            continue
        if segment is TurnSegment.PUBLICATION:
            mark = at_agent_end
        named = prev_known or pos == 0
        if overlapped is not None and pos > 0 and prev_known and mark <= prev and segment not in _NOT_PARTS:
            overlapped.append(segment)
        cut(segment if named else TurnSegment.UNACCOUNTED, min(mark, at_agent_end))
        prev_known = True
    cut(TurnSegment.TRANSPORT_OUT, end)
    return out


def named_share(segments: Sequence[Segment]) -> float:
    """The share of the turn's time named by a measured segment (not a gap, not unaccounted)."""
    total = sum(s.seconds for s in segments)
    if total <= 0:
        return 1.0
    gaps = sum(s.seconds for s in segments if s.segment in _GAPS or s.segment is TurnSegment.UNACCOUNTED)
    return 1.0 - gaps / total
