"""Signing in and out of the console: the session cookie, the checks on every state-changing request
(same origin, CSRF token: :func:`auth_middleware`) and the routes ``/api/session``, ``/api/login`` and
``/api/logout``. The primitives (password hashes, sessions, the login throttle) are in
:mod:`voxpulse_console.ui.auth`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from voxpulse_console.ui.auth import verify_password
from voxpulse_console.ui.config import UiConfig
from voxpulse_console.ui.doors import client_address, origin_of, safe_next
from voxpulse_console.ui.middleware import MAX_BODY, _console, _error, _json, _session

__all__ = ["PRE_CSRF_COOKIE", "PUBLIC_API", "SESSION_COOKIE", "api_login", "api_logout", "api_session",
           "auth_middleware"]

log = logging.getLogger("voxpulse.console.ui")

SESSION_COOKIE: Final = "vp_session"
PRE_CSRF_COOKIE: Final = "vp_login_csrf"
PUBLIC_API: Final = frozenset({"/api/session", "/api/login", "/healthz"})
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_origin(request: web.Request, origins: tuple[str, ...]) -> bool:
    """False for a browser request sent from another site: its ``Origin`` (else its ``Referer``'s
    origin) must be one of the console's configured ``origins`` -- never compared with the request's
    own ``Host``, which whoever sends the request (or a DNS-rebound name) chooses. Without either,
    ``Sec-Fetch-Site`` must say same-origin (a client that is no browser sends none of them and still
    needs the CSRF token)."""
    origin = request.headers.get("Origin")
    if origin is None and request.headers.get("Referer"):
        origin = origin_of(request.headers["Referer"]) or "null"
    if origin is not None:
        return (origin_of(origin) if origin != "null" else None) in origins
    site = request.headers.get("Sec-Fetch-Site")
    return site is None or site in ("same-origin", "none")


def _client(request: web.Request) -> str:
    """The client's address: the peer's, or behind a trusted proxy the one it forwarded."""
    cfg = _console(request).config
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", ()), cfg.trusted_proxies)


def _cookie_kwargs(request: web.Request, cfg: UiConfig) -> dict[str, Any]:
    return {"httponly": True, "samesite": "Strict", "secure": cfg.secure_cookies or request.secure, "path": "/"}



@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    c = _console(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = c.sessions.get(token)
    request["session"] = session
    path = request.path
    public = path in PUBLIC_API or path == "/login" or path.startswith("/assets/") or path == "/favicon.svg"
    if session is None and not public:
        if path.startswith("/api/"):
            return _error(401, "login required")
        return web.HTTPFound(f"/login?next={quote(request.path_qs, safe='/')}")
    if request.method not in _SAFE_METHODS:
        if not _same_origin(request, c.origins):
            return _error(403, "cross-site request refused: not from one of the console's origins "
                               "(VOXPULSE_UI_ORIGIN)")
        expected = session.csrf if session is not None else request.cookies.get(PRE_CSRF_COOKIE)
        got = request.headers.get("X-CSRF-Token", "")
        if not expected or not secrets.compare_digest(got, expected):
            return _error(403, "missing or wrong CSRF token")
    return await handler(request)


async def api_session(request: web.Request) -> web.Response:
    c = _console(request)
    s = _session(request)
    if s is not None:
        return _json({"authenticated": True, "user": s.user, "can_view_pii": s.can_view_pii,
                      "can_play_audio": s.can_play_audio, "csrf": s.csrf,
                      "next": safe_next(request.query.get("next"), c.origins)})
    token = request.cookies.get(PRE_CSRF_COOKIE)
    if not token or len(token) > 64:
        token = secrets.token_urlsafe(24)
    resp = _json({"authenticated": False, "csrf": token})
    resp.set_cookie(PRE_CSRF_COOKIE, token, max_age=3600, **_cookie_kwargs(request, c.config))
    return resp


async def api_login(request: web.Request) -> web.Response:
    c = _console(request)
    if request.content_type != "application/json":
        return _error(415, "send JSON: {\"user\": ..., \"password\": ...}")
    if (request.content_length or 0) > MAX_BODY:
        return _error(413, "request too large")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "malformed JSON")
    if not isinstance(body, dict):
        return _error(400, "expected an object")
    user, password = body.get("user"), body.get("password")
    if not isinstance(user, str) or not isinstance(password, str) or not user or not password \
            or len(user) > 64 or len(password) > 1024:
        return _error(400, "user and password are required")
    target = body.get("next")
    client = _client(request)
    wait = c.limiter.retry_after(user, client)
    if wait > 0:
        return web.json_response({"error": "too many failed logins; try again later",
                                  "retry_after_s": math.ceil(wait)}, status=429,
                                 headers={"Retry-After": str(math.ceil(wait))})
    account = c.config.users.get(user)
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(None, verify_password, password,
                                    account.password_hash if account else c._dummy_hash)
    if not ok or account is None:
        c.limiter.failed(user, client)
        log.warning("failed console login for %r from %s", user[:64], client)
        return _error(401, "wrong user name or password")
    c.limiter.succeeded(user, client)
    old = request.cookies.get(SESSION_COOKIE)
    c.sessions.drop(old)
    s = c.sessions.create(account)
    log.info("console login: %s from %s", account.name, client)
    resp = _json({"authenticated": True, "user": s.user, "can_view_pii": s.can_view_pii,
                      "can_play_audio": s.can_play_audio, "csrf": s.csrf,
                  "next": safe_next(target if isinstance(target, str) else None, c.origins)})
    resp.set_cookie(SESSION_COOKIE, s.token, **_cookie_kwargs(request, c.config))
    resp.del_cookie(PRE_CSRF_COOKIE, path="/")
    return resp


async def api_logout(request: web.Request) -> web.Response:
    c = _console(request)
    s = _session(request)
    if s is not None:
        c.sessions.drop(s.token)
        for client in list(c.hub.clients):
            if client.token == s.token:
                client.put("bye", {})
    resp = _json({"authenticated": False})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp
