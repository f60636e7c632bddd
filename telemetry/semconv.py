"""Every name VoxPulse emits: span names, attribute keys, metric names, units and buckets.

This module is the single source of truth. ``docs/semantic-conventions.md`` is generated from it
(``python -m telemetry.semconv > docs/semantic-conventions.md``) and a test fails when the two
differ, when a key is not classified, or when a metric attribute could carry high cardinality.
Dashboards, alert rules and the collector config use the Prometheus names listed here.

Classification of attribute keys:

* ``pii`` -- the value may hold personal data (phone numbers, names, free text). Such keys carry a
  ``pii`` segment in the key where we own the name; standard keys (GenAI tool arguments) are
  marked here. PII values are redacted before export, or dropped, per the redaction mode.
* ``metric_label`` -- low cardinality, allowed as a metric attribute / spanmetrics dimension.
  ``call_id``, phone numbers, room names, trace ids and free text are never metric labels.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "ATTRIBUTES",
    "CALL_DURATION_BUCKETS_S",
    "COST_BUCKETS_USD",
    "DISTRO",
    "DURATION_BUCKETS_S",
    "LIVEKIT_JOB_ROOT",
    "LIVEKIT_JOB_SPANS",
    "LIVEKIT_METER",
    "LIVEKIT_METRIC_LABELS",
    "LIVEKIT_STAGE_SPANS",
    "LIVEKIT_TURN_SPANS",
    "LIVEKIT_USER_TURN",
    "METRICS",
    "OTHER",
    "SEGMENT_BUCKETS_S",
    "SPANMETRICS_CALLS",
    "SPANMETRICS_DIMENSIONS",
    "SPANMETRICS_DURATION",
    "SPANMETRICS_KEPT_CALLS",
    "SPANMETRICS_KEPT_DURATION",
    "TTFW_OBJECTIVE_S",
    "TURN_SEGMENT_OWNERS",
    "Attr",
    "AttributeSpec",
    "CallOutcome",
    "EventName",
    "GenAIOperation",
    "Metric",
    "MetricKind",
    "MetricSpec",
    "SpanName",
    "Stage",
    "TurnSegment",
    "error_type",
    "metric_spec",
    "prometheus_name",
    "read_metric_specs",
    "render_markdown",
]


class Stage(StrEnum):
    """Values of ``voice.stage``: one span per stage request carries it."""

    STT = "stt"
    LLM = "llm"
    TTS = "tts"
    TOOL = "tool"
    TURN = "turn"


class TurnSegment(StrEnum):
    """Values of ``voice.segment.name``: the parts of a turn's time to first word, in the pipeline's
    order (``telemetry.livekit._anatomy`` says how each is measured). They sum to the turn's
    ``voice.turn.time_to_first_word`` (the greeting's: ``call_setup`` first, then the reply's parts,
    summing to ``voice.greeting.time_to_first_word``)."""

    CALL_SETUP = "call_setup"
    TRANSPORT_IN = "transport_in"
    END_OF_SPEECH = "end_of_speech"
    STT_FINAL = "stt_final"
    END_OF_TURN = "end_of_turn"
    ON_USER_TURN_COMPLETED = "on_user_turn_completed"
    LLM_TOOL_CALL = "llm_tool_call"
    TOOLS = "tools"
    QUEUEING = "queueing"
    LLM_TTFT = "llm_ttft"
    LLM_FIRST_SENTENCE = "llm_first_sentence"
    TTS_TTFB = "tts_ttfb"
    PLAYBACK = "playback"
    PUBLICATION = "publication"
    TRANSPORT_OUT = "transport_out"
    UNACCOUNTED = "unaccounted"

    @property
    def attribute(self) -> str:
        """The turn span's attribute with this segment's seconds."""
        return f"voice.turn.segment.{self.value}"


TURN_SEGMENT_OWNERS: Final[dict[TurnSegment, tuple[str, str]]] = {
    TurnSegment.CALL_SETUP: (
        "agent", "the greeting only: the caller joined until the agent's session started (dispatch, the job's "
        "connect, the entrypoint's set-up)",
    ),
    TurnSegment.TRANSPORT_IN: ("transport", "the caller's audio to the agent: jitter buffer and framing (estimated)"),
    TurnSegment.END_OF_SPEECH: ("setting", "the VAD's silence before it ends the speech (min_silence_duration)"),
    TurnSegment.STT_FINAL: ("provider", "the STT's final transcript after the end of speech"),
    TurnSegment.END_OF_TURN: ("setting", "the end-of-turn decision (turn detector, endpointing delay)"),
    TurnSegment.ON_USER_TURN_COMPLETED: ("agent", "the agent's on_user_turn_completed hook"),
    TurnSegment.LLM_TOOL_CALL: ("provider", "the LLM generation that chose a tool, to the first tool call"),
    TurnSegment.TOOLS: ("agent", "the tool calls, first start to last end (they run concurrently)"),
    TurnSegment.QUEUEING: ("framework", "a gap no component measures: before the reply's LLM generation started"),
    TurnSegment.LLM_TTFT: ("provider", "the LLM's time to first token"),
    TurnSegment.LLM_FIRST_SENTENCE: ("provider", "the LLM's first sentence after its first token, to the TTS"),
    TurnSegment.TTS_TTFB: ("provider", "the TTS's first audio after its first text"),
    TurnSegment.PLAYBACK: ("framework", "the first audio frame forwarded to the audio output until playback started"),
    TurnSegment.PUBLICATION: ("framework", "playback started until the first audible frame went into the room"),
    TurnSegment.TRANSPORT_OUT: ("transport", "the agent's audio to the caller's ear (estimated)"),
    TurnSegment.UNACCOUNTED: (
        "unaccounted", "time whose measurement is missing (a crashed job, a metric not reported)",
    ),
}


class CallOutcome(StrEnum):
    """Values of ``voice.call.outcome``."""

    RESOLVED_BY_BOT = "resolved_by_bot"
    TRANSFERRED = "transferred"
    ABANDONED = "abandoned"
    FAILED = "failed"


class GenAIOperation(StrEnum):
    """Values of ``gen_ai.operation.name`` we set; also the first word of LLM and tool span names."""

    CHAT = "chat"
    EXECUTE_TOOL = "execute_tool"


OTHER: Final = "_OTHER"
"""A low-cardinality stand-in for a value that is not in a known set (OTel's ``_OTHER`` convention):
e.g. the ``gen_ai.tool.name`` label of a tool the model made up."""


class SpanName:
    """Span names we create. LLM and tool spans follow the GenAI pattern ``{operation} {target}``."""

    CALL: Final = "call"
    TURN: Final = "turn"
    STT: Final = "speech_to_text"
    TTS: Final = "text_to_speech"
    GREETING: Final = "greeting"  # the caller's join to the greeting's first word (telemetry.livekit)
    CALLLOG_WRITE: Final = "voxpulse.calllog.write"  # a call-history batch written to PostgreSQL
    CALLLOG_BUFFER_PUSH: Final = "voxpulse.calllog.buffer_push"  # a batch pushed to the Redis buffer

    @staticmethod
    def llm(model: str | None) -> str:
        """``chat {model}`` (``chat`` when the model is unknown)."""
        return f"{GenAIOperation.CHAT} {model}" if model else GenAIOperation.CHAT.value

    @staticmethod
    def tool(name: str) -> str:
        """``execute_tool {name}``."""
        return f"{GenAIOperation.EXECUTE_TOOL} {name}"


class EventName:
    """Span event names VoxPulse adds."""

    DATA_ERROR: Final = "data_error"  # an impossible duration kept out of the histograms (telemetry._quality)
    INTERRUPTION: Final = "interruption"  # a barge-in, or the agent talking over the caller
    INTERRUPTION_YIELDED: Final = "interruption_yielded"  # the agent stopped talking after a barge-in
    INTERRUPTION_NOT_YIELDED: Final = "interruption_not_yielded"  # ... or talked through it
    BUDGET_EXCEEDED: Final = "budget_exceeded"  # a latency budget ran out (telemetry.livekit)


class Attr:
    """Attribute keys. Every key here is classified in :data:`ATTRIBUTES`."""

    # identity
    CALL_ID: Final = "call_id"
    CONVERSATION_ID: Final = "gen_ai.conversation.id"
    STAGE: Final = "voice.stage"
    # call (root span)
    CALL_DIRECTION: Final = "voice.call.direction"
    CALL_OUTCOME: Final = "voice.call.outcome"
    CALL_TRANSFER_REASON: Final = "voice.call.transfer_reason"
    CALL_SCENARIO: Final = "voice.call.scenario"
    CALL_COST_USD: Final = "voice.call.cost_usd"
    CALL_TURNS: Final = "voice.call.turns"
    # LiveKit's own keys where LiveKit has one (its join keys with the server, SIP and client traces)
    CALL_CALLER: Final = "lk.pii.sip.phoneNumber"
    CALL_ROOM: Final = "lk.pii.room_name"
    SIP_CALL_ID: Final = "lk.sip.callID"
    ROOM_SID: Final = "lk.room_sid"
    JOB_ID: Final = "lk.job_id"
    AGENT_VERSION: Final = "voice.agent.version"
    # turn
    TURN_INDEX: Final = "voice.turn.index"
    TURN_TTFW: Final = "voice.turn.time_to_first_word"
    TURN_TTFW_AT_AGENT: Final = "voice.turn.time_to_first_word_at_agent"
    TURN_MEDIA_LATENCY: Final = "voice.turn.media_latency"
    TURN_TTFW_METHOD: Final = "voice.turn.time_to_first_word_method"
    TURN_SEGMENT: Final = "voice.segment.name"
    TURN_SEGMENT_OWNER: Final = "voice.segment.owner"
    TURN_NAMED_SHARE: Final = "voice.turn.named_share"
    TURN_OVERLAPPED: Final = "voice.turn.overlapped_segments"
    GREETING_TTFW: Final = "voice.greeting.time_to_first_word"
    GREETING_START: Final = "voice.greeting.start"
    INTERRUPTION_DIRECTION: Final = "voice.interruption.direction"
    INTERRUPTION_KIND: Final = "voice.interruption.kind"
    INTERRUPTION_RESUMED: Final = "voice.interruption.resumed"
    INTERRUPTION_YIELD_TIME: Final = "voice.interruption.yield_time"
    BUDGET: Final = "voice.budget"
    BUDGET_LIMIT: Final = "voice.budget.limit"
    BUDGET_ELAPSED: Final = "voice.budget.elapsed"
    BUDGET_LIVE: Final = "voice.budget.live"
    TURN_SLOW: Final = "voice.turn.slow"
    TURN_USER_TEXT: Final = "voice.turn.pii.user_text"
    TURN_AGENT_TEXT: Final = "voice.turn.pii.agent_text"
    TURN_TOOL_CALLS: Final = "voice.turn.tool_calls"
    # provider / model (GenAI conventions)
    OPERATION: Final = "gen_ai.operation.name"
    PROVIDER: Final = "gen_ai.provider.name"
    MODEL: Final = "gen_ai.request.model"
    INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
    TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
    # streams of any stage (seconds from call to first chunk)
    STREAM_TTFC: Final = "voice.stream.time_to_first_chunk"
    STREAM_CHUNKS: Final = "voice.stream.chunks"
    # stt / tts
    STT_AUDIO_SECONDS: Final = "voice.stt.audio_seconds"
    STT_TRANSCRIPT: Final = "voice.stt.pii.transcript"
    TTS_VOICE: Final = "voice.tts.voice"
    TTS_CHARACTERS: Final = "voice.tts.characters"
    TTS_TEXT: Final = "voice.tts.pii.text"
    # tools (GenAI conventions)
    TOOL_NAME: Final = "gen_ai.tool.name"
    TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
    TOOL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
    TOOL_RESULT: Final = "gen_ai.tool.call.result"
    TOOL_SUCCESS: Final = "voice.tool.success"
    TOOL_ANOMALY: Final = "voice.tool.anomaly"
    # outcome of any span
    ERROR_TYPE: Final = "error.type"
    CANCELLED: Final = "voice.cancelled"
    HTTP_STATUS: Final = "http.response.status_code"
    # telemetry self-observation
    CALLLOG_RESULT: Final = "voxpulse.calllog.result"
    CALLLOG_BUFFER: Final = "voxpulse.calllog.buffer"
    CALLLOG_BATCH_RECORDS: Final = "voxpulse.calllog.batch.records"
    CALLLOG_BATCH_CALLS: Final = "voxpulse.calllog.batch.calls"
    CALLLOG_BATCH_SOURCE: Final = "voxpulse.calllog.batch.source"
    EXPORT_SIGNAL: Final = "voxpulse.export.signal"
    # the insights receiver (voxpulse_console.insights): LiveKit Agents' judges, outcomes, tags, uploads
    INSIGHTS_JUDGE: Final = "voxpulse.insights.judge"
    INSIGHTS_VERDICT: Final = "voxpulse.insights.verdict"
    INSIGHTS_OUTCOME: Final = "voxpulse.insights.outcome"
    INSIGHTS_TAG: Final = "voxpulse.insights.tag"
    INSIGHTS_UPLOAD_KIND: Final = "voxpulse.insights.upload.kind"
    INTERNAL_ERROR_SITE: Final = "voxpulse.internal_error.site"
    DATA_ERROR_SOURCE: Final = "voxpulse.data_error.source"
    DATA_ERROR_REASON: Final = "voxpulse.data_error.reason"
    DATA_ERROR_VALUE: Final = "voxpulse.data_error.value"
    DATA_ERROR_LIMIT: Final = "voxpulse.data_error.limit"
    # tail sampling (telemetry/sampling.py, otel-collector/processing.yaml)
    TRACE_KEEP: Final = "voxpulse.trace.keep"
    COLLECTOR: Final = "voxpulse.collector"
    # resource: which distribution of OpenTelemetry made the spans (OpenTelemetry's own keys)
    DISTRO_NAME: Final = "telemetry.distro.name"
    DISTRO_VERSION: Final = "telemetry.distro.version"


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    key: str
    description: str
    pii: bool = False
    metric_label: bool = False


#: ``telemetry.distro.name`` of VoxPulse's resource
DISTRO: Final = "voxpulse"

ATTRIBUTES: Final[tuple[AttributeSpec, ...]] = (
    AttributeSpec(
        Attr.CALL_ID,
        "The phone call's id, never personal data: LiveKit's SIP call id (sip.callID) for a SIP caller, "
        "else the room's id (RM_...), else the job's id, else generated; on every span of the call's trace.",
    ),
    AttributeSpec(Attr.CONVERSATION_ID, "GenAI conversation id; equals call_id on every span of the call's trace."),
    AttributeSpec(Attr.STAGE, "stt, llm, tts, tool or turn; exactly one span per stage request.", metric_label=True),
    AttributeSpec(Attr.CALL_DIRECTION, "inbound or outbound.", metric_label=True),
    AttributeSpec(
        Attr.CALL_OUTCOME, "resolved_by_bot, transferred, abandoned or failed.", metric_label=True
    ),
    AttributeSpec(Attr.CALL_TRANSFER_REASON, "Why the call went to an operator (a short code).", metric_label=True),
    AttributeSpec(
        Attr.CALL_SCENARIO, "What the call was about, a short code the application sets (order, booking, ...).",
        metric_label=True,
    ),
    AttributeSpec(Attr.CALL_COST_USD, "Price table applied to the call's usage, USD."),
    AttributeSpec(Attr.CALL_TURNS, "Number of turns in the call."),
    AttributeSpec(Attr.CALL_CALLER, "Caller phone number (LiveKit's key; masked before export).", pii=True),
    AttributeSpec(
        Attr.CALL_ROOM,
        "LiveKit room name (LiveKit's key): personal data, SIP rooms are named after the caller's number.",
        pii=True,
    ),
    AttributeSpec(Attr.SIP_CALL_ID, "LiveKit SIP's call id (participant attribute sip.callID), when SIP."),
    AttributeSpec(Attr.ROOM_SID, "The LiveKit room's id (RM_...)."),
    AttributeSpec(Attr.JOB_ID, "The LiveKit job's id (AJ_...)."),
    AttributeSpec(Attr.AGENT_VERSION, "Version of the agent that handled the call.", metric_label=True),
    AttributeSpec(Attr.TURN_INDEX, "0-based index of the turn in the call."),
    AttributeSpec(
        Attr.TURN_TTFW,
        "Time to first word at the caller's ear, seconds: time_to_first_word_at_agent + media_latency "
        "(see 'Time to first word' below).",
    ),
    AttributeSpec(
        Attr.TURN_TTFW_AT_AGENT,
        "Measured at the agent, seconds: the caller's last audible frame received -> the agent's first "
        "audible frame into the room's audio source, plus the audio queued ahead of it.",
    ),
    AttributeSpec(
        Attr.TURN_MEDIA_LATENCY,
        "Estimated media latency both ways, seconds: 2 x (the caller track's jitter-buffer delay + 28 ms "
        "of Opus packet, look-ahead and audio frames); 0 without a room.",
    ),
    AttributeSpec(
        Attr.TURN_TTFW_METHOD,
        "audio (audible frames at both ends), vad (VAD end of speech: no audible frame seen) or playback "
        "(the sink's playback start: no room audio source).",
    ),
    AttributeSpec(
        Attr.TURN_SEGMENT, "A part of the turn's time to first word (metric label; the turn span carries "
        "each part's seconds as voice.turn.segment.<part>).", metric_label=True,
    ),
    AttributeSpec(
        Attr.TURN_SEGMENT_OWNER,
        "Whose the part is: transport, setting, provider, agent, framework or unaccounted.", metric_label=True,
    ),
    AttributeSpec(
        Attr.TURN_NAMED_SHARE,
        "The share (0-1) of the turn's time to first word named by a measured part (not queueing or unaccounted).",
    ),
    AttributeSpec(
        Attr.TURN_OVERLAPPED,
        "The parts that were measured but cost the caller no time: each was done no later than the part "
        "before it, so it has no voice.turn.segment.<part> (llm_ttft when the LLM's first token came "
        "before the end-of-turn decision: preemptive generation). Absent when there is none.",
    ),
    AttributeSpec(
        Attr.INTERRUPTION_DIRECTION,
        "caller (a barge-in: the caller spoke while the agent spoke) or agent (the agent spoke over the caller).",
        metric_label=True,
    ),
    AttributeSpec(
        Attr.INTERRUPTION_KIND,
        "interruption, or false_interruption (a barge-in LiveKit resumed from: noise, a backchannel).",
        metric_label=True,
    ),
    AttributeSpec(
        Attr.GREETING_TTFW,
        "Seconds from the caller's join to the greeting's first word at the caller's ear (the greeting span).",
    ),
    AttributeSpec(
        Attr.GREETING_START,
        "Where the greeting's wait starts: joined (the caller's join, LiveKit's clock checked against the "
        "agent's) or session (the agent's session start: the join unknown, or on a clock that disagrees).",
    ),
    AttributeSpec(Attr.INTERRUPTION_RESUMED, "Whether LiveKit resumed the agent's speech after a false interruption."),
    AttributeSpec(
        Attr.INTERRUPTION_YIELD_TIME,
        "Seconds from the caller's first word of a barge-in to the agent's audio stopping (how fast it yields).",
    ),
    AttributeSpec(
        Attr.BUDGET, "Which latency budget was exceeded: time_to_first_word (the turn's) or a part of the turn.",
        metric_label=True,
    ),
    AttributeSpec(Attr.BUDGET_LIMIT, "The budget, seconds (on the budget_exceeded event)."),
    AttributeSpec(Attr.BUDGET_ELAPSED, "The time spent when the breach was seen, seconds."),
    AttributeSpec(
        Attr.BUDGET_LIVE, "True: seen while the caller was still waiting for the first word (the agent could act).",
    ),
    *(
        AttributeSpec(
            seg.attribute, f"Seconds of the turn's time to first word in {seg.value}: {TURN_SEGMENT_OWNERS[seg][1]}.",
        )
        for seg in TurnSegment
    ),
    AttributeSpec(
        Attr.TURN_SLOW,
        "True when the turn's time to first word is at or over the slow-turn threshold "
        "(VOXPULSE_TTFW_OBJECTIVE_S, default the 3 s objective), false when under it; absent when no time "
        "to first word was measured. The trace stores' Slow turns panels search by it.",
    ),
    AttributeSpec(Attr.TURN_USER_TEXT, "What the caller said (redacted by default).", pii=True),
    AttributeSpec(Attr.TURN_AGENT_TEXT, "What the agent answered (redacted by default).", pii=True),
    AttributeSpec(Attr.TURN_TOOL_CALLS, "Number of tool calls in the turn."),
    AttributeSpec(Attr.OPERATION, "GenAI operation (chat, execute_tool, ...).", metric_label=True),
    AttributeSpec(Attr.PROVIDER, "Provider of the STT/LLM/TTS service.", metric_label=True),
    AttributeSpec(Attr.MODEL, "Model (or voice model) requested.", metric_label=True),
    AttributeSpec(Attr.INPUT_TOKENS, "LLM input tokens."),
    AttributeSpec(Attr.OUTPUT_TOKENS, "LLM output tokens."),
    AttributeSpec(Attr.TIME_TO_FIRST_CHUNK, "LLM time to first chunk, seconds (GenAI)."),
    AttributeSpec(Attr.STREAM_TTFC, "Any stream's time from call to first chunk, seconds."),
    AttributeSpec(Attr.STREAM_CHUNKS, "Chunks a stream yielded."),
    AttributeSpec(Attr.STT_AUDIO_SECONDS, "Seconds of audio sent to STT."),
    AttributeSpec(Attr.STT_TRANSCRIPT, "STT transcript (redacted by default).", pii=True),
    AttributeSpec(Attr.TTS_VOICE, "TTS voice.", metric_label=True),
    AttributeSpec(Attr.TTS_CHARACTERS, "Characters synthesised."),
    AttributeSpec(Attr.TTS_TEXT, "Text sent to TTS (redacted by default).", pii=True),
    AttributeSpec(Attr.TOOL_NAME, "Tool (function) name.", metric_label=True),
    AttributeSpec(Attr.TOOL_CALL_ID, "Tool call id from the LLM."),
    AttributeSpec(Attr.TOOL_ARGUMENTS, "Tool arguments as JSON, redacted and truncated.", pii=True),
    AttributeSpec(Attr.TOOL_RESULT, "Tool result as JSON, redacted and truncated.", pii=True),
    AttributeSpec(Attr.TOOL_SUCCESS, "Whether the tool call succeeded."),
    AttributeSpec(
        Attr.TOOL_ANOMALY,
        "Why a tool call looks anomalous (unknown_tool, repeated, injection_pattern, ...).",
        metric_label=True,
    ),
    AttributeSpec(
        Attr.ERROR_TYPE, "Module-qualified exception class (see error_type()), or a short error code.",
        metric_label=True,
    ),
    AttributeSpec(Attr.CANCELLED, "True when the work was cancelled (barge-in, hang-up)."),
    AttributeSpec(Attr.HTTP_STATUS, "HTTP response status code (0: no response).", metric_label=True),
    AttributeSpec(Attr.CALLLOG_RESULT, "written, buffered, flushed, rejected or dropped.", metric_label=True),
    AttributeSpec(Attr.CALLLOG_BUFFER, "postgres, redis or memory.", metric_label=True),
    AttributeSpec(Attr.CALLLOG_BATCH_RECORDS, "Records in a call-history batch."),
    AttributeSpec(Attr.CALLLOG_BATCH_CALLS, "Distinct calls in a call-history batch (each linked)."),
    AttributeSpec(Attr.CALLLOG_BATCH_SOURCE, "Where a flushed batch came from: memory or redis."),
    AttributeSpec(Attr.EXPORT_SIGNAL, "traces or metrics.", metric_label=True),
    AttributeSpec(
        Attr.INSIGHTS_JUDGE,
        f"A LiveKit Agents judge's name (the agent's code, e.g. task_completion); bounded: past the "
        f"receiver's cap of distinct values, or not a short identifier, `{OTHER}`.", metric_label=True,
    ),
    AttributeSpec(
        Attr.INSIGHTS_VERDICT, f"The judge's verdict as it reports it (pass, fail, maybe, ...); bounded like the "
        f"judge (`{OTHER}`).", metric_label=True,
    ),
    AttributeSpec(
        Attr.INSIGHTS_OUTCOME, f"The session's outcome as the agent reports it (success, fail, ...); bounded "
        f"(`{OTHER}`).", metric_label=True,
    ),
    AttributeSpec(
        Attr.INSIGHTS_TAG, f"A tag the agent's tagger set on the call (its name, not its metadata); bounded "
        f"(`{OTHER}`).", metric_label=True,
    ),
    AttributeSpec(
        Attr.INSIGHTS_UPLOAD_KIND, "Which of LiveKit Agents' uploads: traces, metrics, logs or recordings.",
        metric_label=True,
    ),
    AttributeSpec(
        Attr.INTERNAL_ERROR_SITE, "Where in VoxPulse an internal error was contained (a fixed code).",
        metric_label=True,
    ),
    AttributeSpec(
        Attr.DATA_ERROR_SOURCE,
        "Which measured value was impossible (a fixed code, e.g. livekit.stt.transcription_delay).",
        metric_label=True,
    ),
    AttributeSpec(
        Attr.DATA_ERROR_REASON, "Why it was rejected: not_finite, negative, wrapped, exceeds_call or clock_backwards.",
        metric_label=True,
    ),
    AttributeSpec(Attr.DATA_ERROR_VALUE, "The rejected value as reported, seconds (on the data_error span event)."),
    AttributeSpec(
        Attr.DATA_ERROR_LIMIT, "The call's duration so far, seconds, that the rejected value exceeded (exceeds_call).",
    ),
    AttributeSpec(
        Attr.TRACE_KEEP,
        "True on a call whose measurement became an exemplar: the collectors' tail sampling keeps the trace.",
    ),
    AttributeSpec(
        Attr.COLLECTOR,
        "Set by the processing collector that kept the span's trace (p1, p2, ...; scale-out topology).",
    ),
    AttributeSpec(
        Attr.DISTRO_NAME,
        f"Resource: {DISTRO!r} on everything telemetry.configure() exports. The insights receiver leaves such "
        "spans out of LiveKit's upload (record=True puts LiveKit's exporter on VoxPulse's tracer provider): "
        "VoxPulse exported them itself.",
    ),
    AttributeSpec(Attr.DISTRO_VERSION, "Resource: the voxpulse-otel version that exported the spans."),
)

# LiveKit Agents' spans of a job process (root first); VoxPulse stamps call_id on them and holds
# those that end before the call's id is known (they are exported with it).
LIVEKIT_JOB_SPANS: Final[tuple[str, ...]] = (
    "job_entrypoint", "room_connect", "wait_for_participant", "job_shutdown", "on_session_end",
    "session_end_upload", "room_disconnect", "shutdown_callback",
)
LIVEKIT_JOB_ROOT: Final = "job_entrypoint"

# LiveKit Agents records its own metrics (gen_ai.client.*, lk.agents.*) with the meter
# "livekit-agents", stamping per-job attributes (room_id, job_id, and more when recording) on every
# point: a new series per call. configure() keeps only these labels on that meter's instruments
# (an allow-list: a new per-job key LiveKit may add is dropped too).
LIVEKIT_METER: Final = "livekit-agents"
LIVEKIT_METRIC_LABELS: Final[frozenset[str]] = frozenset({
    "model_name", "model_provider", "connection_reused", "severity",
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.agent.name", "gen_ai.token.type", "gen_ai.tool.name", "error.type",
})

# LiveKit's spans of one turn that VoxPulse nests under its `turn` span (LiveKit starts them under
# agent_session): the caller's speech and end of turn, then the agent's reply (LLM, tools, TTS,
# playout).
LIVEKIT_USER_TURN: Final = "user_turn"
LIVEKIT_TURN_SPANS: Final[tuple[str, ...]] = (LIVEKIT_USER_TURN, "on_user_turn_completed", "agent_turn")

# Spans LiveKit Agents already creates for a stage request: we annotate them with voice.stage
# instead of adding twins (exactly one span per stage request carries voice.stage).
LIVEKIT_STAGE_SPANS: Final[dict[str, Stage]] = {
    "llm_request": Stage.LLM,
    "function_tool": Stage.TOOL,
    "tts_request": Stage.TTS,
}

# Dimensions of the collector's spanmetrics connector (otel-collector/config.yaml follows this).
SPANMETRICS_DIMENSIONS: Final[tuple[str, ...]] = (
    Attr.STAGE,
    Attr.PROVIDER,
    Attr.MODEL,
    Attr.TOOL_NAME,
    Attr.CALL_OUTCOME,
)

# The time-to-first-word objective: a turn slower than this is a slow turn (the latency alert's
# threshold, and a trace the collectors' tail sampling always keeps).
TTFW_OBJECTIVE_S: Final = 3.0

# Voice latency: tens of milliseconds to tens of seconds.
DURATION_BUCKETS_S: Final[tuple[float, ...]] = (
    0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0,
)
# The parts of a turn: a few milliseconds (playback, publication) to seconds (a slow LLM).
SEGMENT_BUCKETS_S: Final[tuple[float, ...]] = (
    0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)
CALL_DURATION_BUCKETS_S: Final[tuple[float, ...]] = (
    5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
)
COST_BUCKETS_USD: Final[tuple[float, ...]] = (
    0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)


class MetricKind(StrEnum):
    HISTOGRAM = "histogram"
    COUNTER = "counter"
    UP_DOWN_COUNTER = "updowncounter"
    GAUGE = "gauge"


# UCUM units and the Prometheus suffix the collector's (and the SDK's) translation appends;
# annotations in braces ("{call}", "{USD}") add nothing.
_UNIT_SUFFIXES: Final[dict[str, str]] = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def prometheus_name(name: str, kind: MetricKind, unit: str) -> str:
    """The series name Prometheus shows for an OTel metric: dots become underscores, the unit's
    suffix is appended (``_seconds``; nothing for ``{annotations}``), counters end in ``_total``."""
    out = name.replace(".", "_")
    if not (unit.startswith("{") and unit.endswith("}")):
        suffix = _UNIT_SUFFIXES.get(unit)
        if suffix is None:
            raise ValueError(f"metric {name}: unit {unit!r} has no Prometheus suffix rule; use one of "
                             f"{', '.join(_UNIT_SUFFIXES)} or an {{annotation}}")
        if suffix == "ratio" and kind is MetricKind.COUNTER:
            suffix = ""
        if suffix and not out.endswith(f"_{suffix}"):
            out = f"{out}_{suffix}"
    if kind is MetricKind.COUNTER and not out.endswith("_total"):
        out = f"{out}_total"
    return out


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: OTel name, kind, UCUM unit, description, attribute keys (each must be classified
    ``metric_label``) and, for histograms, the bucket boundaries. Applications declare their own
    metrics with it too (see ``telemetry.metrics.Counter`` and friends)."""

    name: str
    kind: MetricKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"metric name {self.name!r}: lowercase dot-separated words (namespace.name)")
        if (self.buckets is not None) != (self.kind is MetricKind.HISTOGRAM):
            raise ValueError(f"metric {self.name}: buckets go with histograms, and histograms need them")
        if self.buckets is not None and list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"metric {self.name}: buckets must increase strictly")
        self.prometheus  # noqa: B018 -- validates the unit

    @property
    def prometheus(self) -> str:
        """The Prometheus series name (histograms add ``_bucket``, ``_sum``, ``_count``)."""
        return prometheus_name(self.name, self.kind, self.unit)


def read_metric_specs(text: str) -> tuple[MetricSpec, ...]:
    """An application's metric declarations from TOML, so that scripts (dashboards, rules) read its
    names without importing its code: one ``[[metric]]`` table per metric with ``name``, ``kind``
    (``counter``, ``histogram``, ``updowncounter``, ``gauge``), ``unit``, ``description`` and,
    optionally, ``attributes`` (attribute keys) and ``buckets``. The example agent's are
    ``agent/metrics.toml``."""
    out = []
    for m in tomllib.loads(text).get("metric", []):
        buckets = m.get("buckets")
        out.append(MetricSpec(m["name"], MetricKind(m["kind"]), m["unit"], m["description"],
                              tuple(m.get("attributes", ())), None if buckets is None else tuple(buckets)))
    return tuple(out)


class Metric:
    """Names of the metrics VoxPulse records (specs in :data:`METRICS`)."""

    TTFW: Final = "voice.turn.time_to_first_word"
    TURN_SEGMENT: Final = "voice.turn.segment.duration"
    GREETING_TTFW: Final = "voice.greeting.time_to_first_word"
    GREETING_SEGMENT: Final = "voice.greeting.segment.duration"
    INTERRUPTIONS: Final = "voice.interruptions"
    YIELD_TIME: Final = "voice.interruption.yield_time"
    BUDGET_BREACHES: Final = "voice.budget.breaches"
    STAGE_TTFC: Final = "voice.stage.time_to_first_chunk"
    CALL_DURATION: Final = "voice.call.duration"
    CALL_COST: Final = "voice.call.cost"
    API_SPEND: Final = "voice.api.spend"
    CALLS_ACTIVE: Final = "voice.calls.active"
    OPERATOR_QUEUE: Final = "voice.operator.queue_length"
    CALLS: Final = "voice.calls"
    TRANSFERS: Final = "voice.transfers"
    TOOL_ANOMALIES: Final = "voice.tool.anomalies"
    EXPORT_DROPPED: Final = "voxpulse.export.dropped"
    INTERNAL_ERRORS: Final = "voxpulse.internal_errors"
    DATA_ERRORS: Final = "voxpulse.data.errors"
    CALLLOG_RECORDS: Final = "voxpulse.calllog.records"
    INSIGHTS_VERDICTS: Final = "voxpulse.insights.verdicts"
    INSIGHTS_OUTCOMES: Final = "voxpulse.insights.outcomes"
    INSIGHTS_TAGS: Final = "voxpulse.insights.tags"
    INSIGHTS_UPLOADS: Final = "voxpulse.insights.uploads"


METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec(
        Metric.TTFW, MetricKind.HISTOGRAM, "s",
        "Time to first word per turn, at the caller's ear: end of the caller's speech to the first audible "
        "agent audio (the turn span's voice.turn.time_to_first_word).",
        (Attr.AGENT_VERSION,), DURATION_BUCKETS_S,
    ),
    MetricSpec(
        Metric.TURN_SEGMENT, MetricKind.HISTOGRAM, "s",
        "The parts of each turn's time to first word (voice.turn.segment.<part> on the turn; they sum to it), "
        "by part and owner; exemplars open the turn.",
        (Attr.TURN_SEGMENT, Attr.TURN_SEGMENT_OWNER), SEGMENT_BUCKETS_S,
    ),
    MetricSpec(
        Metric.GREETING_TTFW, MetricKind.HISTOGRAM, "s",
        "Time to the greeting's first word: the caller's join to the agent's first audible word at the caller's "
        "ear (the greeting span's voice.greeting.time_to_first_word); exemplars open the call.",
        (Attr.AGENT_VERSION,), DURATION_BUCKETS_S,
    ),
    MetricSpec(
        Metric.GREETING_SEGMENT, MetricKind.HISTOGRAM, "s",
        "The parts of the greeting's time to first word (call_setup, then the reply's parts), by part and owner.",
        (Attr.TURN_SEGMENT, Attr.TURN_SEGMENT_OWNER), SEGMENT_BUCKETS_S,
    ),
    MetricSpec(
        Metric.INTERRUPTIONS, MetricKind.COUNTER, "{interruption}",
        "Interruptions by direction (caller: a barge-in; agent: it spoke over the caller) and kind "
        "(interruption, false_interruption); exemplars open the interrupted turn.",
        (Attr.INTERRUPTION_DIRECTION, Attr.INTERRUPTION_KIND),
    ),
    MetricSpec(
        Metric.YIELD_TIME, MetricKind.HISTOGRAM, "s",
        "How fast the agent stops talking after a barge-in: the caller's first word to the agent's audio stopping.",
        (), SEGMENT_BUCKETS_S,
    ),
    MetricSpec(
        Metric.BUDGET_BREACHES, MetricKind.COUNTER, "{breach}",
        "Latency budgets exceeded, by budget (time_to_first_word or a part of the turn); exemplars open the turn.",
        (Attr.BUDGET,),
    ),
    MetricSpec(
        Metric.STAGE_TTFC, MetricKind.HISTOGRAM, "s",
        "Time to first token (LLM), first byte (TTS) or first transcript (STT).",
        (Attr.STAGE, Attr.PROVIDER, Attr.MODEL), DURATION_BUCKETS_S,
    ),
    MetricSpec(
        Metric.CALL_DURATION, MetricKind.HISTOGRAM, "s", "Call duration.",
        (Attr.CALL_DIRECTION, Attr.CALL_OUTCOME), CALL_DURATION_BUCKETS_S,
    ),
    MetricSpec(
        Metric.CALL_COST, MetricKind.HISTOGRAM, "{USD}", "Cost of one call in USD (price table x usage).",
        (Attr.CALL_OUTCOME,), COST_BUCKETS_USD,
    ),
    MetricSpec(
        Metric.API_SPEND, MetricKind.COUNTER, "{USD}", "Provider API spend in USD.",
        (Attr.STAGE, Attr.PROVIDER, Attr.MODEL),
    ),
    MetricSpec(Metric.CALLS_ACTIVE, MetricKind.UP_DOWN_COUNTER, "{call}", "Calls in progress.", (Attr.CALL_DIRECTION,)),
    MetricSpec(
        Metric.OPERATOR_QUEUE, MetricKind.GAUGE, "{call}",
        "Callers waiting for a human operator (set by the application that knows its queue).",
    ),
    MetricSpec(
        Metric.CALLS, MetricKind.COUNTER, "{call}", "Finished calls by outcome, scenario and direction.",
        (Attr.CALL_OUTCOME, Attr.CALL_SCENARIO, Attr.CALL_DIRECTION),
    ),
    MetricSpec(
        Metric.TRANSFERS, MetricKind.COUNTER, "{call}", "Calls transferred to an operator, by reason.",
        (Attr.CALL_TRANSFER_REASON,),
    ),
    MetricSpec(
        Metric.TOOL_ANOMALIES, MetricKind.COUNTER, "{call}",
        f"Tool calls that look anomalous (prompt-injection suspicion); tools the agent does not have are "
        f"labelled `{OTHER}`.",
        (Attr.TOOL_NAME, Attr.TOOL_ANOMALY),
    ),
    MetricSpec(
        Metric.EXPORT_DROPPED, MetricKind.COUNTER, "{item}",
        "Spans the agent could not deliver (queue full or exporter failing).", (Attr.EXPORT_SIGNAL,),
    ),
    MetricSpec(
        Metric.INTERNAL_ERRORS, MetricKind.COUNTER, "{error}",
        "Internal VoxPulse errors contained so that the call goes on, by site.", (Attr.INTERNAL_ERROR_SITE,),
    ),
    MetricSpec(
        Metric.DATA_ERRORS, MetricKind.COUNTER, "{value}",
        "Impossible durations reported to VoxPulse (negative, wrapped, not finite, longer than the call, or "
        "from a clock that went backwards), by source and reason; kept out of every histogram and span "
        "duration attribute (the raw value is on the span's data_error event).",
        (Attr.DATA_ERROR_SOURCE, Attr.DATA_ERROR_REASON),
    ),
    MetricSpec(
        Metric.CALLLOG_RECORDS, MetricKind.COUNTER, "{record}",
        "Call-history records by result (written, buffered, flushed, dropped) and buffer.",
        (Attr.CALLLOG_RESULT, Attr.CALLLOG_BUFFER),
    ),
    # recorded by the insights receiver, once per call (a repeated upload counts nothing new)
    MetricSpec(
        Metric.INSIGHTS_VERDICTS, MetricKind.COUNTER, "{verdict}",
        "LiveKit Agents judges' verdicts received (insights receiver), by judge and verdict; each call's "
        "verdict of a judge counted once.",
        (Attr.INSIGHTS_JUDGE, Attr.INSIGHTS_VERDICT),
    ),
    MetricSpec(
        Metric.INSIGHTS_OUTCOMES, MetricKind.COUNTER, "{call}",
        "Calls' outcomes as LiveKit Agents reports them (insights receiver); each call counted once.",
        (Attr.INSIGHTS_OUTCOME,),
    ),
    MetricSpec(
        Metric.INSIGHTS_TAGS, MetricKind.COUNTER, "{tag}",
        "Tags LiveKit Agents' tagger set on calls (insights receiver); each call's tag counted once.",
        (Attr.INSIGHTS_TAG,),
    ),
    MetricSpec(
        Metric.INSIGHTS_UPLOADS, MetricKind.COUNTER, "{request}",
        "Requests of LiveKit Agents' observability upload the insights receiver answered, by kind and HTTP "
        "status (401: a bad token, 413: too large, 503: the database or collector down).",
        (Attr.INSIGHTS_UPLOAD_KIND, Attr.HTTP_STATUS),
    ),
)

_METRICS_BY_NAME: Final = {m.name: m for m in METRICS}


def metric_spec(name: str) -> MetricSpec:
    """The spec of one of VoxPulse's metrics, e.g. ``metric_spec(Metric.TTFW).prometheus``."""
    return _METRICS_BY_NAME[name]


# The collector's spanmetrics connector (namespace traces.span.metrics, unit ms).
SPANMETRICS_DURATION: Final = "traces_span_metrics_duration_milliseconds"
SPANMETRICS_CALLS: Final = "traces_span_metrics_calls_total"
# The scale-out topology's second connector (otel-collector/processing.yaml): the same series, for
# the spans of the traces that tail sampling kept only; its exemplars always open a stored trace.
SPANMETRICS_KEPT_DURATION: Final = "traces_span_kept_duration_milliseconds"
SPANMETRICS_KEPT_CALLS: Final = "traces_span_kept_calls_total"


def error_type(exc: BaseException | type[BaseException]) -> str:
    """The ``error.type`` of an exception: its class's qualified name, prefixed by its module unless
    it is a builtin (``ValueError``, ``asyncpg.exceptions.ConnectionDoesNotExistError``) -- the
    format the OTel SDK gives ``exception.type``. Low cardinality: a class, never a message."""
    cls = exc if isinstance(exc, type) else type(exc)
    module = cls.__module__
    return f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__


def render_markdown() -> str:
    """The body of docs/semantic-conventions.md."""
    out = [
        "# VoxPulse semantic conventions",
        "",
        "Generated from `telemetry/semconv.py` by `python -m telemetry.semconv`; a test keeps the two equal.",
        "This file is the contract for the library, the collector config, dashboards, alert rules and tests.",
        "",
        "## Spans",
        "",
        "| span | created by | voice.stage |",
        "|---|---|---|",
        f"| `{LIVEKIT_JOB_ROOT}` | LiveKit Agents: the job (one call), root of the call's trace in a worker | |",
        f"| `{SpanName.CALL}` | `telemetry.call()` (the call scope; the trace root outside a LiveKit job) | |",
        f"| `{SpanName.TURN}` | LiveKit integration, one per caller utterance and answer; parent of LiveKit's "
        + ", ".join(f"`{n}`" for n in LIVEKIT_TURN_SPANS) + " | `turn` |",
        f"| `{SpanName.STT}` | `@trace_stt`, LiveKit integration (LiveKit has no STT request span) | `stt` |",
        f"| `{SpanName.llm('{model}')}` | `@trace_llm` | `llm` |",
        f"| `{SpanName.TTS}` | `@trace_tts` | `tts` |",
        f"| `{SpanName.tool('{name}')}` | `@trace_tool` | `tool` |",
        f"| `{SpanName.CALLLOG_WRITE}` | call-history writer, own trace linked to each call | |",
        f"| `{SpanName.CALLLOG_BUFFER_PUSH}` | call-history writer while PostgreSQL is down | |",
    ]
    for lk_name, stage in LIVEKIT_STAGE_SPANS.items():
        out.append(f"| `{lk_name}` | LiveKit Agents (annotated by VoxPulse) | `{stage.value}` |")
    out += [
        "",
        "Every span of a call carries `call_id`. Exactly one span per stage request carries `voice.stage`.",
        "",
        "A call taken by a LiveKit worker is one trace:",
        "",
        "```",
        f"{LIVEKIT_JOB_ROOT}                     LiveKit: the job, from dispatch to the end of shutdown",
        "  room_connect, wait_for_participant",
        f"  {SpanName.CALL}                             VoxPulse: outcome, cost, turns",
        "    agent_session                  LiveKit",
        "      session_start ...",
        f"      {SpanName.TURN}                         VoxPulse: a caller utterance and its answer; TTFW",
        "        user_turn                  LiveKit: user_speaking, eou_wait (end of turn)",
        f"        {SpanName.STT}             VoxPulse: end of speech -> final transcript",
        "        on_user_turn_completed",
        "        agent_turn                 LiveKit: llm_node > llm_request, function_tool, tts_node > tts_request,",
        "                                   agent_speaking (playout; lk.interruption.source, lk.playout.position)",
        "      session_close",
        "  job_shutdown                     LiveKit: session_end_upload, room_disconnect, shutdown_callback",
        "```",
        "",
        "LiveKit's job spans (" + ", ".join(f"`{n}`" for n in LIVEKIT_JOB_SPANS) + ") carry `call_id` too:",
        "those that end before the call's id is known are held back and exported with it, and the job",
        "process flushes at its exit, after the root ended.",
        "",
        "## Attributes",
        "",
        "| key | pii | metric label | description |",
        "|---|---|---|---|",
    ]
    for a in ATTRIBUTES:
        out.append(
            f"| `{a.key}` | {'yes' if a.pii else ''} | {'yes' if a.metric_label else ''} | {a.description} |"
        )
    out += [
        "",
        "## Metrics from the agent (OTel SDK, exported with the traces)",
        "",
        "The `voxpulse.insights.*` metrics come from the insights receiver (`voxpulse insights-receiver`,",
        "docs/insights.md), exported the same way.",
        "",
        "| OTel name | kind | unit | Prometheus name | attributes | description |",
        "|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        attrs = ", ".join(f"`{k}`" for k in m.attributes)
        out.append(
            f"| `{m.name}` | {m.kind.value} | `{m.unit}` | `{m.prometheus}` | {attrs} | {m.description} |"
        )
    out += [
        "",
        "Applications add their own metrics with the same `MetricSpec` (`telemetry.metrics.Counter(spec)` and",
        "friends): the same naming, Prometheus and label rules apply to them.",
    ]
    dims = ", ".join(f"`{d}`" for d in SPANMETRICS_DIMENSIONS)
    out += [
        "",
        "## Metrics derived from spans (collector spanmetrics connector)",
        "",
        f"- `{SPANMETRICS_DURATION}_bucket|_sum|_count` and `{SPANMETRICS_CALLS}`",
        f"- labels: `service_name`, `span_name`, `span_kind`, `status_code`, and the dimensions {dims}"
        " with dots as underscores (`voice_stage`, `gen_ai_provider_name`, ...).",
        "- exemplars carry `trace_id` and `span_id`.",
        "",
        "## Time to first word",
        "",
        f"`{Attr.TURN_TTFW}` (span attribute and histogram, seconds) is what the caller hears: from the",
        "end of the caller's speech to the first audible word of the answer at the caller's ear. The agent",
        "measures what it can see and estimates the rest:",
        "",
        f"- `{Attr.TURN_TTFW_AT_AGENT}`, measured: from the caller's last audible 10 ms of speech as it",
        "  reached the agent (a tap on the session's audio input; taken when the VAD ended the speech, if",
        "  within 0.6 s before the VAD's own end of speech) to the answer's first audible 10 ms pushed into",
        "  the room's audio source, plus the audio queued there ahead of it. LiveKit's `lk.e2e_latency` starts",
        "  at the VAD's end of speech (100-250 ms after the last audible frame: the VAD needs silence to be",
        "  sure) and ends when the first frame -- the TTS's leading silence -- is pushed.",
        f"- `{Attr.TURN_MEDIA_LATENCY}`, estimated: the media path both ways, which neither end of the agent",
        "  sees: twice (the jitter-buffer delay of the caller's track at the agent, from WebRTC stats over",
        "  the last utterance, + 28 ms of Opus packet, encoder look-ahead and the capture and playout",
        "  frames). The way back is assumed to mirror the way in: the caller's own jitter buffer and",
        "  playout are not visible to the agent, and a loaded caller (or a loaded machine) is where the",
        "  estimate and the caller part most.",
        f"- `{Attr.TURN_TTFW_METHOD}`: `audio` (audible frames at both ends), `vad` (no audible frame",
        "  was seen before the VAD's end of speech: the VAD's end is the start) or `playback` (no room",
        "  audio source, e.g. an offline sink: the sink's playback start is the end, and no media path).",
        f"- `{Attr.TURN_SLOW}`: true when the time to first word is at or over the objective",
        f"  (`VOXPULSE_TTFW_OBJECTIVE_S`, default {TTFW_OBJECTIVE_S:g} s), else false: what the dashboards'"
        " Slow turns panels",
        "  search by (a trace store's duration filter cannot tell a slow turn from a long call or a long answer).",
        "",
        "Compared turn by turn with what simulated callers measure at their end (`bench/`, benchmarks.md).",
        "With tail sampling (the scale-out topology, docs/scaling.md) the connector above counts every"
        " span, before sampling, and carries no exemplars; a second one counts the spans of the kept"
        f" traces only: `{SPANMETRICS_KEPT_DURATION}_bucket|_sum|_count` and `{SPANMETRICS_KEPT_CALLS}`,"
        " same labels, with the exemplars (each opens a stored trace).",
        "",
        "## The anatomy of a turn",
        "",
        f"A turn's `{Attr.TURN_TTFW}` is cut into parts on the agent's clock, each the time until something",
        "the turn waited for was done; they sum to it (to the µs they are rounded to) and none is negative.",
        "The turn span carries each part's seconds (`voice.turn.segment.<part>`, a part of zero length is",
        f"left out) and `{Attr.TURN_NAMED_SHARE}`; `{metric_spec(Metric.TURN_SEGMENT).prometheus}` has one",
        "observation per part (labels part and owner), with exemplars to the turn. In the pipeline's order:",
        "",
        "| part | owner | what it is |",
        "|---|---|---|",
        *(f"| `{seg.value}` | {TURN_SEGMENT_OWNERS[seg][0]} | {TURN_SEGMENT_OWNERS[seg][1]} |" for seg in TurnSegment),
        "",
        "`queueing` is a gap no component measures; `unaccounted` is time whose measurement is missing (the",
        "answer's metrics never came, a crashed job): a turn with missing data still adds up.",
        "A part done while an earlier one still ran (its moment no later than the end of the part before",
        "it) cost the caller nothing and has no bar; the turn names it in"
        f" `{Attr.TURN_OVERLAPPED}`: `llm_ttft` there means the LLM's first token came",
        "before the end-of-turn decision (LiveKit's preemptive generation), `end_of_turn` that the final",
        "transcript came after the decision. The console lists them under the turn's bar.",
        "",
        "The greeting (the agent's first speech after the caller joined, before any caller turn) gets the",
        f"same treatment on a `{SpanName.GREETING}` span: `{Attr.GREETING_TTFW}` runs from the caller's join",
        "(the room's `joined_at`, on LiveKit's clock: when it is later than the moment the agent learned of",
        "the caller, the clocks disagree, a `data_error` with reason `clock_disagrees` is recorded and the",
        "wait starts at the agent's session start instead) to the first word at the caller's ear; its parts",
        "are `call_setup`, then the reply's parts, as `voice.turn.segment.<part>` on the greeting span and",
        f"in `{metric_spec(Metric.GREETING_SEGMENT).prometheus}`.",
        "",
        "## Tail sampling",
        "",
        f"- time-to-first-word objective: {TTFW_OBJECTIVE_S:g} s; a turn slower than it is kept, like a call"
        " with an error, a transfer or a tool anomaly.",
        f"- `{Attr.TRACE_KEEP}` = true on a call root: an exemplar points at this call; the collectors keep it.",
        "",
        "## Buckets",
        "",
        f"- latency (s): {', '.join(str(b) for b in DURATION_BUCKETS_S)}",
        f"- parts of a turn (s): {', '.join(str(b) for b in SEGMENT_BUCKETS_S)}",
        f"- call duration (s): {', '.join(str(b) for b in CALL_DURATION_BUCKETS_S)}",
        f"- cost (USD): {', '.join(str(b) for b in COST_BUCKETS_USD)}",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
