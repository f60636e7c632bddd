"""What LiveKit Agents' observability upload (v0) carries, read without livekit-agents installed.

* :func:`verify_token`: the Bearer JWT (HS256, ``iss`` = the API key) with the observability write grant;
* :func:`read_header`: the recording's ``header`` part, a ``livekit.MetricsRecordingHeader`` protobuf,
  decoded from the wire format by field number (:data:`HEADER_FIELDS`, checked against livekit-protocol
  by the contract tests);
* :func:`inspect_ogg`: whether ``recording.ogg`` is a whole Ogg stream (every page's checksum, the
  end-of-stream page) and its length;
* :func:`call_events`: the tags, verdicts, outcome and transcript items of an OTLP logs request;
* :func:`stamp_spans`: an OTLP traces request made joinable: ``call_id`` on LiveKit's own spans, and the
  spans VoxPulse exported itself left out.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from telemetry.semconv import DISTRO, Attr

__all__ = [
    "HEADER_FIELDS",
    "AuthError",
    "CallEvents",
    "OggCheck",
    "RecordingHeader",
    "call_events",
    "call_id_for",
    "inspect_ogg",
    "parse_keys",
    "read_header",
    "read_multipart",
    "stamp_spans",
    "verify_token",
]

# ------------------------------------------------------------------------------------------- auth
LEEWAY_S: Final = 10.0


class AuthError(Exception):
    """The request's token is missing, unsigned, expired, wrongly signed or lacks the write grant."""


def parse_keys(value: str | None) -> dict[str, str]:
    """``KEY: SECRET, KEY2: SECRET2`` (LiveKit's own ``LIVEKIT_KEYS`` form) -> {key: secret}."""
    keys: dict[str, str] = {}
    for item in (value or "").split(","):
        key, sep, secret = item.partition(":")
        if sep and key.strip() and secret.strip():
            keys[key.strip()] = secret.strip()
    return keys


def verify_token(authorization: str | None, keys: Mapping[str, str]) -> str:
    """The API key that signed the Bearer token of ``authorization``; :class:`AuthError` unless it is
    HS256-signed by a key of ``keys``, unexpired, and grants ``observability.write``."""
    import jwt

    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("no Bearer token")
    token = token.strip()
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError(f"not a JWT ({exc})") from exc
    issuer = unverified.get("iss")
    secret = keys.get(issuer) if isinstance(issuer, str) else None
    if secret is None:
        raise AuthError("token signed by an unknown API key")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=issuer, leeway=LEEWAY_S,
                            options={"require": ["exp", "iss"]})
    except jwt.PyJWTError as exc:
        raise AuthError(f"token rejected ({exc})") from exc
    grants = claims.get("observability")
    if not isinstance(grants, Mapping) or grants.get("write") is not True:
        raise AuthError("operation requires observability write grant")
    return str(issuer)


# ------------------------------------------------------------------------------------ call id
_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def call_id_for(room_id: str | None, job_id: str | None) -> str | None:
    """The call's id without personal data: the room's id (``RM_...``, VoxPulse's own ``call_id`` of a
    call without a SIP call id), else the job's id. Never the room name. None when neither is usable."""
    for candidate in (room_id, job_id):
        if candidate and _ID_RE.match(candidate) and candidate not in (".", ".."):
            return candidate
    return None


# ------------------------------------------------------------------------------ recording header
#: ``livekit.MetricsRecordingHeader`` (livekit-protocol 1.1.x): field number -> (name, wire kind).
HEADER_FIELDS: Final[Mapping[int, tuple[str, str]]] = {
    1: ("room_id", "string"),
    3: ("duration", "uint"),  # milliseconds
    4: ("start_time", "timestamp"),
    6: ("room_name", "string"),  # personal data: read past, never kept
    7: ("room_start_time", "timestamp"),
    8: ("job_id", "string"),
    9: ("simulated", "bool"),
    10: ("redaction_enabled", "bool"),
    11: ("session_summary", "string"),
}


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    room_id: str = ""
    job_id: str = ""
    duration_ms: int = 0
    start_time: dt.datetime | None = None
    simulated: bool = False
    redaction_enabled: bool = False
    session_summary: str = ""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, data[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _timestamp(data: bytes) -> dt.datetime | None:
    seconds = nanos = 0
    for number, value in _fields(data):
        if number == 1 and isinstance(value, int):
            seconds = value
        elif number == 2 and isinstance(value, int):
            nanos = value
    if seconds == 0 and nanos == 0:
        return None
    return dt.datetime.fromtimestamp(seconds + nanos / 1e9, dt.UTC)


def read_header(data: bytes) -> RecordingHeader:
    """Decode a ``MetricsRecordingHeader``; ValueError when it is not one."""
    values: dict[str, Any] = {}
    for number, value in _fields(data):
        spec = HEADER_FIELDS.get(number)
        if spec is None:
            continue
        name, kind = spec
        if kind == "string" and isinstance(value, bytes):
            values[name] = value.decode("utf-8", "replace")
        elif kind in ("uint", "bool") and isinstance(value, int):
            values[name] = bool(value) if kind == "bool" else value
        elif kind == "timestamp" and isinstance(value, bytes):
            values[name] = _timestamp(value)
        else:
            raise ValueError(f"field {name} has the wrong wire type")
    return RecordingHeader(
        room_id=values.get("room_id", ""), job_id=values.get("job_id", ""),
        duration_ms=values.get("duration", 0), start_time=values.get("start_time"),
        simulated=values.get("simulated", False), redaction_enabled=values.get("redaction_enabled", False),
        session_summary=values.get("session_summary", ""),
    )


def read_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A ``multipart/form-data`` body -> {part name: (filename, bytes)}; ValueError when it is not one."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise ValueError("not multipart/form-data")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not msg.is_multipart():
        raise ValueError("no parts")
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = (part.get_filename(), payload)
    return parts


# ------------------------------------------------------------------------------------------ Ogg
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC: Final = _crc_table()


def _ogg_crc(page: bytes) -> int:
    crc = 0
    table = _CRC
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class OggCheck:
    ok: bool
    problem: str | None = None
    seconds: float | None = None  # Opus streams: the last granule position less the pre-skip
    pages: int = 0


def inspect_ogg(data: bytes) -> OggCheck:
    """Walk the Ogg pages of ``data``: each page's capture pattern, length and CRC, and an
    end-of-stream page last. A truncated or corrupt file is ``ok=False`` with the reason, never an error."""
    pos = pages = 0
    granule = -1
    pre_skip = 0
    opus = eos = False
    while pos < len(data):
        if data[pos:pos + 4] != b"OggS":
            return OggCheck(False, f"no Ogg page at byte {pos}", None, pages)
        if pos + 27 > len(data):
            return OggCheck(False, f"truncated page header at byte {pos}", None, pages)
        flags = data[pos + 5]
        nseg = data[pos + 26]
        head = pos + 27 + nseg
        if head > len(data):
            return OggCheck(False, f"truncated segment table at byte {pos}", None, pages)
        end = head + sum(data[pos + 27:head])
        if end > len(data):
            return OggCheck(False, f"truncated page at byte {pos}", None, pages)
        stored = int.from_bytes(data[pos + 22:pos + 26], "little")
        if _ogg_crc(data[pos:pos + 22] + b"\0\0\0\0" + data[pos + 26:end]) != stored:
            return OggCheck(False, f"page checksum mismatch at byte {pos}", None, pages)
        if pages == 0 and data[head:head + 8] == b"OpusHead" and end - head >= 12:
            opus, pre_skip = True, int.from_bytes(data[head + 10:head + 12], "little")
        g = int.from_bytes(data[pos + 6:pos + 14], "little", signed=True)
        if g >= 0:
            granule = g
        eos = bool(flags & 0x04)
        pos, pages = end, pages + 1
    if pages == 0:
        return OggCheck(False, "empty file", None, 0)
    seconds = max(0, granule - pre_skip) / 48000 if opus and granule >= 0 else None
    if not eos:
        return OggCheck(False, "no end-of-stream page (truncated)", seconds, pages)
    return OggCheck(True, None, seconds, pages)


# ----------------------------------------------------------------------------------- OTLP logs
#: The log record bodies livekit-agents' ``_upload_session_report`` emits (loggers ``chat_history``
#: and ``evaluations``).
EVENT_BODIES: Final = frozenset({"session report", "chat item", "evaluation", "tag", "outcome"})


@dataclass(slots=True)
class CallEvents:
    """What one call's log records say: merged into its insights_calls row."""

    room_id: str | None = None
    job_id: str | None = None
    agent_name: str | None = None
    sdk_version: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None
    outcome_reason: str | None = None
    chat_items: int = 0


def _any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return bytes(v.bytes_value).hex()
    return getattr(v, kind)


def call_events(body: bytes) -> dict[str, CallEvents]:
    """An OTLP ``ExportLogsServiceRequest`` -> {call_id: what its records say}; only the records of
    :data:`EVENT_BODIES` count. ValueError when ``body`` is not such a request."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP logs request ({exc})") from exc
    calls: dict[str, CallEvents] = {}
    for resource_logs in request.resource_logs:
        res = {kv.key: _any_value(kv.value) for kv in resource_logs.resource.attributes}
        for scope_logs in resource_logs.scope_logs:
            scope = {kv.key: _any_value(kv.value) for kv in scope_logs.scope.attributes}
            for record in scope_logs.log_records:
                text = _any_value(record.body)
                if text not in EVENT_BODIES:
                    continue
                attrs = {**res, **scope, **{kv.key: _any_value(kv.value) for kv in record.attributes}}
                room_id, job_id = attrs.get("room_id"), attrs.get("job_id")
                cid = call_id_for(room_id if isinstance(room_id, str) else None,
                                  job_id if isinstance(job_id, str) else None)
                if cid is None:
                    continue
                ev = calls.setdefault(cid, CallEvents(room_id=room_id, job_id=job_id))
                _apply(ev, str(text), attrs)
    return calls


def _apply(ev: CallEvents, body: str, attrs: Mapping[str, Any]) -> None:
    if body == "chat item":
        ev.chat_items += 1
    elif body == "tag":
        tag = attrs.get("tag")
        if isinstance(tag, Mapping) and isinstance(tag.get("name"), str):
            ev.tags[tag["name"]] = tag.get("metadata")
    elif body == "evaluation":
        e = attrs.get("evaluation")
        if isinstance(e, Mapping) and isinstance(e.get("name"), str):
            ev.evaluations[e["name"]] = {k: e.get(k) for k in ("verdict", "reasoning", "instructions")}
    elif body == "outcome":
        o = attrs.get("outcome")
        if isinstance(o, Mapping) and isinstance(o.get("outcome"), str):
            ev.outcome, ev.outcome_reason = o["outcome"], o.get("reason")
    elif body == "session report":
        for tag in attrs.get("session.tags") or []:
            if isinstance(tag, str):
                ev.tags.setdefault(tag, None)
        if isinstance(attrs.get("agent_name"), str):
            ev.agent_name = attrs["agent_name"]
        if isinstance(attrs.get("sdk_version"), str):
            ev.sdk_version = attrs["sdk_version"]


# ------------------------------------------------------------------------------------------ spans


def stamp_spans(body: bytes) -> bytes | None:
    """An OTLP ``ExportTraceServiceRequest`` as the trace store must get it from the upload.

    * The spans of a resource VoxPulse made (``telemetry.distro.name`` = ``voxpulse``) are left out:
      LiveKit's upload exporter sits on the integrator's tracer provider (``record=True``), so VoxPulse
      exported the same spans itself, and the trace store would hold each twice.
    * Any other span without a ``call_id`` gets one from the ``room_id`` / ``job_id`` LiveKit stamps on
      it (:func:`call_id_for`: never the room name), so the console and the trace store find a call of
      an agent without VoxPulse by the same key.

    Returns the request re-encoded, or None when no span is left. ValueError when ``body`` is not
    such a request."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP traces request ({exc})") from exc
    ids = ("room_id", "job_id", Attr.CALL_ID)
    kept = []
    for resource_spans in request.resource_spans:
        res = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
        if res.get(Attr.DISTRO_NAME) == DISTRO:
            continue
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attrs = {kv.key: kv.value.string_value for kv in span.attributes if kv.key in ids}
                if attrs.get(Attr.CALL_ID) or res.get(Attr.CALL_ID):
                    continue
                cid = call_id_for(attrs.get("room_id") or res.get("room_id"), attrs.get("job_id") or res.get("job_id"))
                if cid is not None:
                    kv = span.attributes.add()
                    kv.key = Attr.CALL_ID
                    kv.value.string_value = cid
        if any(ss.spans for ss in resource_spans.scope_spans):
            kept.append(resource_spans)
    if not kept:
        return None
    out = ExportTraceServiceRequest()
    out.resource_spans.extend(kept)
    return out.SerializeToString()
