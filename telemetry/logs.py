"""Structured logs: one setup function, JSON or text, call and trace ids on every line, PII redacted.

Every line has ``timestamp``, ``level``, ``component`` (the logger name) and ``event`` (the message);
inside a call also ``call_id``, ``trace_id`` and ``span_id``; fields passed with ``extra=``
(``request_id``, ``tool``, ``duration_ms``, ``success``, ...) are added as they are. Messages,
string fields and tracebacks go through the redactor.

Other handlers (LiveKit's CLI installs its own on the root logger, and LiveKit names its log lines
after the room, which a SIP dispatch names after the caller's number) are masked where they are by
:func:`mask_logs` (``telemetry.mask_logs``): every record they get is redacted in place first --
message, traceback, and each extra field by its key (``room`` masked, ``job_id``/``room_id`` kept,
numbers kept; see ``telemetry.redaction``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, TextIO

from opentelemetry import trace

from telemetry import _env
from telemetry.calls import _current_call_id
from telemetry.redaction import Redactor

__all__ = ["JsonFormatter", "context_filter", "mask_logs", "mask_record", "setup_logging"]

NOISY: Final = ("asyncio", "httpx", "httpcore", "urllib3", "grpc", "aiohttp", "websockets", "livekit",
                "opentelemetry", "asyncpg", "redis", "hpack", "openai")
_RESERVED: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_MARK = "_voxpulse_handler"
_MASKED = "_voxpulse_masked"
_VERBATIM: Final = frozenset({"call_id", "trace_id", "span_id"})
# LiveKit's loggers: records they make are masked when made (before any handler, in any process)
LIVEKIT_LOGGERS: Final = ("livekit", "livekit.agents")
# Log lines are redacted like spans, with room for tracebacks.
_redactor = Redactor(max_length=32768)


class _ContextFilter(logging.Filter):
    """Adds call_id / trace_id / span_id from the current context to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = _current_call_id()
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def context_filter() -> logging.Filter:
    """The filter that puts call_id, trace_id and span_id on records, for a handler of someone
    else's (LiveKit's job processes forward their records to the worker process)."""
    return _ContextFilter()


def _field(key: str, value: Any) -> Any:
    """An extra field of a record, redacted by its key (strings, containers), numbers as they are."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if key in _VERBATIM else _redactor.structured(key, value)
    if isinstance(value, (dict, list, tuple)):
        return _redactor.structured(key, value)
    return _redactor.text(str(value))  # an object: its text (what a formatter would print)


def mask_record(record: logging.LogRecord) -> None:
    """Redacts ``record`` in place, once: the message (its arguments merged in), the traceback (kept
    as text; the exception object is dropped, so no formatter prints it unmasked), the stack, and
    every extra field by its key."""
    if getattr(record, _MASKED, False):
        return
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the message: the handler reports it itself
        return
    record.msg = _redactor.text(message)
    record.args = None
    if "message" in record.__dict__:
        record.message = record.msg
    if record.exc_info and not record.exc_text:
        record.exc_text = _plain.formatException(record.exc_info)
    if record.exc_info:
        record.exc_info = None
    if record.exc_text:
        record.exc_text = _redactor.text(record.exc_text)
    if record.stack_info:
        record.stack_info = _redactor.text(record.stack_info)
    for key, value in list(record.__dict__.items()):
        if key in _RESERVED or key.startswith("_"):
            continue
        record.__dict__[key] = _field(key, value)
    setattr(record, _MASKED, True)


_plain = logging.Formatter()


class _MaskFilter(logging.Filter):
    """Masks each record before its handler (or logger) goes on with it."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


_MASK_FILTER: Final = _MaskFilter()


class _MaskingHandlers(list[logging.Handler]):
    """The root logger's handler list after :func:`mask_logs`: a handler added later (LiveKit's CLI
    adds its own when ``cli.run_app`` starts, after the agent's module ran) is masked as it is added."""

    def append(self, handler: logging.Handler) -> None:
        _mask_handler(handler)
        super().append(handler)

    def insert(self, index: Any, handler: logging.Handler) -> None:
        _mask_handler(handler)
        super().insert(index, handler)


def _mask_handler(handler: logging.Handler) -> None:
    if not getattr(handler, _MARK, False) and _MASK_FILTER not in handler.filters:
        handler.filters.insert(0, _MASK_FILTER)  # before the handler's other filters read the record


def mask_logs() -> None:
    """Masks every log line this process writes through the root logger's handlers, ours or not:
    each record is redacted in place (:func:`mask_record`) before the handler formats it. Covers the
    handlers there now and those added later (LiveKit's CLI adds its own when ``cli.run_app``
    starts), and records LiveKit's loggers make. Idempotent.

    In a LiveKit worker call it at the top of the agent's module (the worker's main process writes
    every line, its job processes' too, and adds the room name to them); ``configure()`` does it in
    the job process when it finds a handler there (LiveKit's, which forwards the records)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        _mask_handler(handler)
    if not isinstance(root.handlers, _MaskingHandlers):
        root.handlers = _MaskingHandlers(root.handlers)
    for name in LIVEKIT_LOGGERS:
        lk = logging.getLogger(name)
        if _MASK_FILTER not in lk.filters:
            lk.addFilter(_MASK_FILTER)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        redactor = _redactor
        line: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": record.name,
            "event": redactor.text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _RESERVED or key.startswith("_") or value is None:
                continue
            line[key] = _field(key, value)
        if record.exc_info:
            line["exception"] = redactor.text(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redactor.text(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = _redactor.text(super().format(record))
        call_id = getattr(record, "call_id", None)
        return f"{text} call_id={call_id}" if call_id else text


def has_handlers() -> bool:
    """True when the root logger already has a handler (the application set up its logging)."""
    return bool(logging.getLogger().handlers)


def setup_logging(level: str | None = None, fmt: _env.LogFormat | None = None, stream: TextIO | None = None) -> None:
    """Installs one handler on the root logger (replacing a previous one of ours) and sets the root
    level. ``level``/``fmt`` default to ``VOXPULSE_LOG_LEVEL``/``VOXPULSE_LOG_FORMAT`` (``_env``).
    The root logger's other handlers, now and later, are masked (:func:`mask_logs`): no line leaves
    the process unmasked, whichever handler writes it. In a LiveKit worker, whose CLI writes the
    lines, :func:`mask_logs` alone avoids writing each line twice."""
    level_name = str(_env.text(_env.VOXPULSE_LOG_LEVEL, level)).upper()
    fmt_name = _env.choice(_env.VOXPULSE_LOG_FORMAT, fmt, _env.LOG_FORMATS)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _MARK, True)
    handler.addFilter(_ContextFilter())
    if fmt_name == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    mask_logs()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level_name, logging.INFO))
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
