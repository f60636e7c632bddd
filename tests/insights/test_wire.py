"""voxpulse_console/insights/_wire.py: tokens, the recording header, Ogg pages and the log records,
read from the requests livekit-agents 1.8.9 sent (tests/fixtures/livekit_observability_v0)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import jwt
import pytest
from livekit import api

from telemetry.semconv import DISTRO, Attr
from tests.insights.capture import FIXTURE_KEY, FIXTURE_SECRET, FIXTURES, JOB_ID, ROOM_ID
from voxpulse_console.insights._wire import (
    AuthError,
    call_events,
    call_id_for,
    inspect_ogg,
    parse_keys,
    read_header,
    read_multipart,
    stamp_spans,
    verify_token,
)

KEYS = {FIXTURE_KEY: FIXTURE_SECRET}


def token(*, key: str = FIXTURE_KEY, secret: str = FIXTURE_SECRET, write: bool = True,
          ttl: dt.timedelta = dt.timedelta(hours=6)) -> str:
    """A token as livekit-agents mints it (``api.AccessToken`` with the observability grant)."""
    return (api.AccessToken(key, secret).with_observability_grants(api.ObservabilityGrants(write=write))
            .with_ttl(ttl).to_jwt())


def fixture(kind: str) -> tuple[dict[str, str], bytes]:
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    (req,) = [r for r in manifest["requests"] if r["path"].split("/")[2] == kind]
    return req["headers"], (FIXTURES / req["body"]).read_bytes()


def recording_parts() -> dict[str, tuple[str | None, bytes]]:
    headers, body = fixture("recordings")
    return read_multipart(headers["Content-Type"], body)


def test_token_from_livekit_accepted() -> None:
    assert verify_token(f"Bearer {token()}", KEYS) == FIXTURE_KEY


@pytest.mark.parametrize(("authorization", "why"), [
    (None, "no Bearer token"),
    ("Basic abc", "no Bearer token"),
    ("Bearer not-a-jwt", "not a JWT"),
    (f"Bearer {token(key='APIother')}", "unknown API key"),
    (f"Bearer {token(secret='a-different-secret-of-enough-length-000')}", "Signature verification failed"),
    (f"Bearer {token(ttl=dt.timedelta(minutes=-5))}", "expired"),
    (f"Bearer {token(write=False)}", "observability write grant"),
    ("Bearer " + jwt.encode({"iss": FIXTURE_KEY, "exp": 4102444800, "observability": {"write": True}},
                            key="", algorithm="none"), "rejected"),  # unsigned
    ("Bearer " + jwt.encode({"iss": FIXTURE_KEY, "observability": {"write": True}}, FIXTURE_SECRET,
                            algorithm="HS256"), "exp"),  # never expires: refused
])
def test_bad_tokens_refused(authorization: str | None, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        verify_token(authorization, KEYS)


def test_parse_keys_livekit_form() -> None:
    assert parse_keys("APIa: s1, APIb:s2,broken,") == {"APIa": "s1", "APIb": "s2"}


def test_header_of_livekit_recording() -> None:
    h = read_header(recording_parts()["header"][1])
    assert (h.room_id, h.job_id, h.duration_ms) == (ROOM_ID, JOB_ID, 5000)
    assert h.start_time is not None and h.start_time.year >= 2026
    assert not h.simulated and not h.redaction_enabled
    assert json.loads(h.session_summary)["room_id"] == ROOM_ID


def test_call_id_never_the_room_name() -> None:
    assert call_id_for(ROOM_ID, JOB_ID) == ROOM_ID
    assert call_id_for("", JOB_ID) == JOB_ID
    assert call_id_for("../etc", None) is None and call_id_for("..", "..") is None


def test_livekit_ogg_is_whole() -> None:
    filename, audio = recording_parts()["audio"]
    assert filename == "recording.ogg"
    check = inspect_ogg(audio)
    assert check.ok and check.problem is None and check.pages >= 2
    assert check.seconds == pytest.approx(0.4, abs=0.03)


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda b: b[: len(b) - 7], "truncated page"),
    (lambda b: b[:100] + bytes([b[100] ^ 0xFF]) + b[101:], "checksum mismatch"),
    (lambda b: b"RIFF" + b[4:], "no Ogg page at byte 0"),
    (lambda b: b"", "empty file"),
])
def test_corrupt_ogg_named(mutate: object, problem: str) -> None:
    audio = recording_parts()["audio"][1]
    check = inspect_ogg(mutate(audio))  # type: ignore[operator]
    assert not check.ok and check.problem is not None and problem in check.problem


def test_ogg_without_end_of_stream_is_truncated() -> None:
    audio = recording_parts()["audio"][1]
    last = audio.rfind(b"OggS")
    check = inspect_ogg(audio[:last])  # whole pages, the last one missing
    assert not check.ok and check.problem == "no end-of-stream page (truncated)"


def test_log_records_of_livekit() -> None:
    _, body = fixture("logs")
    calls = call_events(gzip.decompress(body))
    assert list(calls) == [ROOM_ID]
    ev = calls[ROOM_ID]
    assert ev.job_id == JOB_ID and ev.agent_name == "fixture-agent" and ev.chat_items == 2
    assert ev.outcome == "success" and ev.outcome_reason == "booked"
    assert ev.tags["language:ru"] == {"confidence": 0.9}
    assert {"lk.success", "lk.judge.task_completion:pass", "lk.judge.conciseness:fail"} <= set(ev.tags)
    assert ev.evaluations["conciseness"]["verdict"] == "fail"
    assert ev.evaluations["task_completion"] == {"verdict": "pass", "reasoning": "booked",
                                                 "instructions": "book a slot"}


def test_not_otlp_logs() -> None:
    with pytest.raises(ValueError, match="not an OTLP logs request"):
        call_events(b"\xff\xff\xff")


def _spans(body: bytes) -> list[dict[str, object]]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [{"name": sp.name, **{kv.key: kv.value.string_value for kv in sp.attributes}}
            for rs in request.resource_spans for ss in rs.scope_spans for sp in ss.spans]


def test_livekit_spans_get_the_call_id() -> None:
    """An agent without VoxPulse: LiveKit's spans carry its room id, which becomes their call_id."""
    _, body = fixture("traces")
    before = _spans(gzip.decompress(body))
    assert before and all(Attr.CALL_ID not in s for s in before)
    stamped = stamp_spans(gzip.decompress(body))
    assert stamped is not None
    after = _spans(stamped)
    assert [s["name"] for s in after] == [s["name"] for s in before]
    assert {s[Attr.CALL_ID] for s in after} == {ROOM_ID}


def test_spans_voxpulse_exported_are_left_out() -> None:
    """``record=True`` on an agent with VoxPulse: LiveKit uploads the spans of VoxPulse's tracer
    provider too (its resource says ``telemetry.distro.name`` = voxpulse, even on spans that ended
    before VoxPulse knew the call); VoxPulse exported them already, so the trace store gets each once."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _, body = fixture("traces")
    request = ExportTraceServiceRequest()
    request.ParseFromString(gzip.decompress(body))
    livekit = len(_spans(request.SerializeToString()))
    ours = request.resource_spans.add()
    ours.CopyFrom(request.resource_spans[0])
    kv = ours.resource.attributes.add()
    kv.key, kv.value.string_value = Attr.DISTRO_NAME, DISTRO
    for ss in ours.scope_spans:
        for sp in ss.spans:
            sp.name = "voxpulse_" + sp.name  # a span of VoxPulse's provider, with or without its call_id
    stamped = stamp_spans(request.SerializeToString())
    assert stamped is not None
    names = [s["name"] for s in _spans(stamped)]
    assert len(names) == livekit and not any(str(n).startswith("voxpulse_") for n in names)
    # only VoxPulse's spans: nothing to forward
    del request.resource_spans[:-1]
    assert stamp_spans(request.SerializeToString()) is None


def test_a_call_id_already_there_is_kept() -> None:
    """A span of another provider that names its call already (an integrator's own key) keeps it."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _, body = fixture("traces")
    request = ExportTraceServiceRequest()
    request.ParseFromString(gzip.decompress(body))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    kv = span.attributes.add()
    kv.key, kv.value.string_value = Attr.CALL_ID, "SCL_sip-call-1"
    stamped = stamp_spans(request.SerializeToString())
    assert stamped is not None
    first = _spans(stamped)[0]
    assert first[Attr.CALL_ID] == "SCL_sip-call-1"


def test_a_span_without_ids_is_kept_without_call_id() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = "orphan"
    kv = span.attributes.add()
    kv.key, kv.value.string_value = "room", "call-+380501234567"  # the room NAME: never a call id
    stamped = stamp_spans(request.SerializeToString())
    assert stamped is not None and _spans(stamped) == [{"name": "orphan", "room": "call-+380501234567"}]


def test_not_otlp_traces() -> None:
    with pytest.raises(ValueError, match="not an OTLP traces request"):
        stamp_spans(b"\xff\xff\xff not protobuf")


def test_fixtures_are_small() -> None:
    assert sum(p.stat().st_size for p in Path(FIXTURES).iterdir()) < 32 * 1024
