"""What every request of the console goes through: the error middleware (bad input -> a clear 4xx,
anything unexpected -> a 500 without a stack trace), the security headers of every response, and the
helpers every handler uses (its console, its session, JSON answers and errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from voxpulse_console.ui.auth import Session
from voxpulse_console.ui.filters import BadRequest
from voxpulse_console.ui.state import CONSOLE_KEY, Console

__all__ = ["CSP", "MAX_BODY", "MAX_QUERY_STRING", "error_middleware"]

log = logging.getLogger("voxpulse.console.ui")

MAX_QUERY_STRING: Final = 2048
MAX_BODY: Final = 16 * 1024
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


def _session(request: web.Request) -> Session | None:
    s: Session | None = request.get("session")
    return s


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Bad input -> a clear 4xx; anything unexpected -> a 500 without a stack trace (logged here)."""
    if len(request.query_string) > MAX_QUERY_STRING:
        return _error(414, f"query string too long (at most {MAX_QUERY_STRING} characters)")
    try:
        return await handler(request)
    except BadRequest as exc:
        return _error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json" and request.path.startswith("/api/"):
            return _error(exc.status, exc.reason)
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal error (logged on the console)")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
    if request.secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith("/assets/") and response.status == 200:
        h.setdefault("Cache-Control", "public, max-age=31536000, immutable")  # content-hashed names
    else:
        h.setdefault("Cache-Control", "no-store")
    with contextlib.suppress(KeyError):
        del h["Server"]
