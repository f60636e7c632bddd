"""Structured logs: one setup function, JSON or text, call and trace ids on every line, PII redacted.

Every line has ``timestamp``, ``level``, ``component`` (the logger name) and ``event`` (the message);
inside a call also ``call_id``, ``trace_id`` and ``span_id``; fields passed with ``extra=``
(``request_id``, ``tool``, ``duration_ms``, ``success``, ...) are added as they are. Messages,
string fields and tracebacks go through the redactor.
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

__all__ = ["JsonFormatter", "context_filter", "setup_logging"]

NOISY: Final = ("asyncio", "httpx", "httpcore", "urllib3", "grpc", "aiohttp", "websockets", "livekit",
                "opentelemetry", "asyncpg", "redis", "hpack", "openai")
_RESERVED: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_MARK = "_voxpulse_handler"
_VERBATIM: Final = frozenset({"call_id", "trace_id", "span_id"})
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
            line[key] = redactor.text(value) if isinstance(value, str) and key not in _VERBATIM else value
        if record.exc_info:
            line["exception"] = redactor.text(self.formatException(record.exc_info))
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
    level. ``level``/``fmt`` default to ``VOXPULSE_LOG_LEVEL``/``VOXPULSE_LOG_FORMAT`` (``_env``)."""
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
    root.addHandler(handler)
    root.setLevel(getattr(logging, level_name, logging.INFO))
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
