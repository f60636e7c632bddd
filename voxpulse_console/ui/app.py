"""The console's web application (aiohttp): the JSON API, the live feed and the built frontend.

    app = make_app(UiConfig.from_env())
    web.run_app(app, host="127.0.0.1", port=8090)

Every page and every API route needs a session (``/login``, its assets, ``/api/session``,
``/api/login`` and ``/healthz`` excepted). Each source is optional at run time: with PostgreSQL,
Prometheus or the trace store down, the routes that need it say so (``sources`` in every answer,
a banner in the browser) and the others keep working.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import asyncpg
from aiohttp import web

from telemetry.semconv import SpanName
from voxpulse_console import tracestore
from voxpulse_console.ui import filters
from voxpulse_console.ui.auth import LoginThrottle, Session, SessionStore, hash_password, verify_password
from voxpulse_console.ui.callview import build_call_view, mask_text, span_attributes
from voxpulse_console.ui.config import UiConfig
from voxpulse_console.ui.database import OVERVIEW_SQL, History
from voxpulse_console.ui.doors import client_address, origin_of, safe_next
from voxpulse_console.ui.filters import BadRequest
from voxpulse_console.ui.live import LiveHub
from voxpulse_console.ui.prom import STAGES, PromError, Prometheus, exprs

__all__ = ["CONSOLE_KEY", "Console", "make_app", "static_dir"]

log = logging.getLogger("voxpulse.console.ui")

MAX_QUERY_STRING: Final = 2048
PROM_LAG_S: Final = 10.0
TRACE_SETTLED_S: Final = 30.0  # a call's trace is complete this long after its root span ended
MAX_BODY: Final = 16 * 1024
SESSION_COOKIE: Final = "vp_session"
PRE_CSRF_COOKIE: Final = "vp_login_csrf"
PAGES: Final = ("/", "/calls", "/latency", "/alerts")
PUBLIC_API: Final = frozenset({"/api/session", "/api/login", "/healthz"})
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def static_dir() -> Path:
    """The built frontend (``web/`` built by scripts/bootstrap.sh into the package's ``ui/static``)."""
    return Path(str(resources.files("voxpulse_console.ui").joinpath("static")))


def _epoch(v: Any) -> float | None:
    return v.timestamp() if isinstance(v, dt.datetime) else None


def _fmt_window(seconds: float) -> str:
    return f"{max(60, int(seconds))}s"


class Console:
    """Everything one console process holds: config, connections, sessions, the live hub."""

    def __init__(self, config: UiConfig) -> None:
        self.config = config
        self.sessions = SessionStore(idle_s=config.session_idle_s)
        self.limiter = LoginThrottle(
            free_failures=config.login_free_failures, delay_s=config.login_delay_s,
            max_delay_s=config.login_max_delay_s, address_failures=config.login_address_failures,
            user_failures=config.login_user_failures)
        self.origins = config.allowed_origins
        self.pool: asyncpg.Pool | None = None
        self.history: History | None = None
        self.http: aiohttp.ClientSession | None = None
        self.prom: Prometheus | None = None
        self.traces: tracestore.TraceStore | None = None
        self.trace_error: str | None = None
        self.db_error: str | None = "not connected yet"
        self.prom_ok: bool | None = None
        self.traces_ok: bool | None = None
        self._pool_lock = asyncio.Lock()
        self._dummy_hash = hash_password(secrets.token_urlsafe(16))
        self.hub = LiveHub(config.database_url, self._load_changed, self._present, on_status=self._hub_status)
        self._tasks: list[asyncio.Task[None]] = []
        self._traces: collections.OrderedDict[str, tracestore.Trace] = collections.OrderedDict()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self.http = aiohttp.ClientSession()
        self.prom = Prometheus(self.config.prometheus_url, self.http)
        factory = getattr(tracestore, "from_env", None)
        if factory is None:
            self.trace_error = "no trace store implementation installed"
        else:
            try:
                self.traces = factory()
            except Exception as exc:  # a misconfigured store: the console runs without traces
                self.trace_error = f"trace store not configured: {exc}"
        if self.config.database_url:
            with contextlib.suppress(Exception):
                await self.db()
        else:
            self.db_error = "no database configured (set DATABASE_URL)"
        self.hub.start()
        self._tasks.append(asyncio.create_task(self._watch_sources(), name="console-sources"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.hub.stop()
        if self.traces is not None:
            with contextlib.suppress(Exception):
                await self.traces.aclose()
        if self.http is not None:
            await self.http.close()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)

    async def db(self) -> History:
        """The history reader; connects (and migrates) on first use, raises when PostgreSQL is down."""
        if self.history is not None:
            return self.history
        if not self.config.database_url:
            raise OSError("no database configured (set DATABASE_URL)")
        async with self._pool_lock:
            if self.history is None:
                from telemetry.history import migrate

                try:
                    pool = await asyncpg.create_pool(self.config.database_url, min_size=1, max_size=8, timeout=5,
                                                     command_timeout=15)
                    try:
                        async with pool.acquire() as conn:
                            await migrate(conn)
                    except BaseException:
                        await pool.close()
                        raise
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                    self.db_error = f"PostgreSQL unreachable ({type(exc).__name__})"
                    raise
                self.pool = pool
                self.history = History(pool, timezone=self.config.timezone)
                self.db_error = None
        assert self.history is not None
        return self.history

    def _hub_status(self, ok: bool, error: str | None) -> None:
        if not ok:
            self.db_error = error
        elif self.history is not None:
            self.db_error = None
        self.hub.broadcast("sources", self.sources())

    async def _watch_sources(self) -> None:
        """Prometheus's and the trace store's readiness every few seconds (pushed on change)."""
        while True:
            prom_ok = await self.prom.ready() if self.prom is not None else False
            traces_ok = False
            if self.traces is not None:
                try:
                    traces_ok = await asyncio.wait_for(self.traces.ready(), 3)
                except Exception:
                    traces_ok = False
            if self.history is None and self.config.database_url:
                with contextlib.suppress(Exception):
                    await self.db()
            if (prom_ok, traces_ok) != (self.prom_ok, self.traces_ok):
                self.prom_ok, self.traces_ok = prom_ok, traces_ok
                self.hub.broadcast("sources", self.sources())
            await asyncio.sleep(5)

    def sources(self) -> dict[str, Any]:
        return {
            "db": {"ok": self.db_error is None and self.history is not None, "error": self.db_error},
            "prometheus": {"ok": bool(self.prom_ok), "url": self.config.prometheus_url,
                           "error": None if self.prom_ok else "Prometheus not ready"},
            "traces": {"ok": bool(self.traces_ok), "kind": getattr(self.traces, "kind", None),
                       "error": self.trace_error or (None if self.traces_ok else "trace store not ready")},
            "live": {"ok": self.hub.connected, "error": self.hub.error},
        }

    # -- presentation (masking) ---------------------------------------------------------------------
    def present_call(self, row: dict[str, Any], pii: bool) -> dict[str, Any]:
        phone = row.get("phone")
        return {
            "call_id": row["call_id"],
            "started_at": _epoch(row.get("started_at")),
            "ended_at": _epoch(row.get("ended_at")),
            "status": row.get("status"),
            "outcome": row.get("outcome"),
            "transfer_reason": row.get("transfer_reason"),
            "scenario": row.get("scenario"),
            "direction": row.get("direction"),
            "duration_s": row.get("duration_seconds"),
            "cost_usd": row.get("cost_usd"),
            "turns": row.get("turns"),
            "caller": (phone if pii else mask_text(phone, False)) if phone else None,
            "trace_id": row.get("trace_id"),
            "max_ttfw_ms": row.get("max_ttfw_ms"),
            "has_errors": bool(row.get("has_errors")),
        }

    @staticmethod
    def present_alert(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"], "alertname": row.get("alertname"), "severity": row.get("severity"),
            "service": row.get("service"), "status": row.get("status"), "message": row.get("message"),
            "summary": row.get("summary"), "labels": row.get("labels") or {},
            "starts_at": _epoch(row.get("starts_at")), "resolved_at": _epoch(row.get("resolved_at")),
            "received_at": _epoch(row.get("received_at")), "generator_url": row.get("generator_url"),
        }

    def _present(self, kind: str, row: Any, pii: bool) -> Any:
        return self.present_call(row, pii) if kind == "call" else self.present_alert(row)

    async def _load_changed(self, calls: list[tuple[str, dt.datetime]], alerts: list[int]
                            ) -> tuple[list[Any], list[Any]]:
        h = await self.db()
        rows = await h.rows_by_key(calls) if calls else []
        alert_rows = [a for a in [await h.alert(i) for i in alerts] if a is not None]
        return rows, alert_rows

    async def trace(self, trace_id: str) -> tracestore.Trace | None:
        """A trace from the store; the traces of calls that ended a while ago (complete: no span
        can still arrive) are kept in a small LRU, so opening a call again does not fetch it again."""
        hit = self._traces.get(trace_id)
        if hit is not None:
            self._traces.move_to_end(trace_id)
            return hit
        assert self.traces is not None
        t = await self.traces.trace(trace_id)
        root = t.root if t is not None else None
        if t is not None and root is not None and root.name == SpanName.CALL and self.config.trace_cache \
                and root.end_ns / 1e9 < time.time() - TRACE_SETTLED_S:
            self._traces[trace_id] = t
            while len(self._traces) > self.config.trace_cache:
                self._traces.popitem(last=False)
        return t

    # -- links ---------------------------------------------------------------------------------------
    def trace_link(self, trace_id: str | None) -> str | None:
        """Where the user's browser opens the raw trace: ``VOXPULSE_UI_TRACE_URL`` (e.g. Grafana's
        Explore in compose) with ``{trace_id}`` filled in, else the console's own JSON of it
        (``/api/traces/<id>``) -- never the trace store's address, which only the server may reach."""
        if not trace_id:
            return None
        tpl = self.config.trace_url
        if tpl:
            return tpl.replace("{trace_id}", quote(trace_id, safe=""))
        return f"/api/traces/{quote(trace_id, safe='')}" if self.traces is not None else None

    def logs_link(self, call_id: str, trace_id: str | None) -> str | None:
        tpl = self.config.logs_url
        if not tpl:
            return None
        return tpl.replace("{call_id}", quote(call_id, safe="")).replace("{trace_id}", quote(trace_id or "", safe=""))


CONSOLE_KEY: Final[web.AppKey[Console]] = web.AppKey("console")


# ------------------------------------------------------------------------------------------ helpers
def _console(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


def _session(request: web.Request) -> Session | None:
    s: Session | None = request.get("session")
    return s


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status=status)


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


# --------------------------------------------------------------------------------------- middlewares
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


# ----------------------------------------------------------------------------------------- auth routes
async def api_session(request: web.Request) -> web.Response:
    c = _console(request)
    s = _session(request)
    if s is not None:
        return _json({"authenticated": True, "user": s.user, "can_view_pii": s.can_view_pii, "csrf": s.csrf,
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
    resp = _json({"authenticated": True, "user": s.user, "can_view_pii": s.can_view_pii, "csrf": s.csrf,
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


async def healthz(_request: web.Request) -> web.Response:
    return _json({"status": "ok"})


# ------------------------------------------------------------------------------------------- pages
def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_request: web.Request) -> web.StreamResponse:
        f = static_dir() / name
        if not f.is_file():
            return web.Response(status=503, content_type="text/plain", text=(
                "The console's frontend is not built: run scripts/bootstrap.sh "
                "(npm ci && npm run build in web/). The JSON API under /api/ works without it."))
        return web.FileResponse(f, headers={"Content-Type": "text/html; charset=utf-8"})
    return handler


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form; with a session already, straight on to ``next`` (on this console only)."""
    if _session(request) is not None:
        raise web.HTTPFound(safe_next(request.query.get("next"), _console(request).origins))
    return await _page("login.html")(request)


async def call_page(request: web.Request) -> web.StreamResponse:
    filters.check_call_id(request.match_info["call_id"])
    return await _page("index.html")(request)


# --------------------------------------------------------------------------------------------- API
async def api_meta(request: web.Request) -> web.Response:
    c = _console(request)
    s = _session(request)
    assert s is not None
    values: dict[str, list[str]] = {"scenario": [], "outcome": []}
    with contextlib.suppress(Exception):
        values = await (await c.db()).filter_values()
    return _json({
        "user": s.user, "can_view_pii": s.can_view_pii, "objective_ms": c.config.ttfw_objective_ms,
        "timezone": c.config.timezone, "windows": list(filters.WINDOWS), "filters": values,
        "stages": list(STAGES), "sources": c.sources(), "trace_store": getattr(c.traces, "kind", None),
    })


async def api_overview(request: web.Request) -> web.Response:
    c = _console(request)
    # PromQL is evaluated PROM_LAG_S in the past: samples of a scrape in progress (timestamped at its
    # start, appended up to the scrape timeout later) cannot change an answer once it was given.
    now = round(time.time() - PROM_LAG_S, 3)
    out: dict[str, Any] = {"time": now, "timezone": c.config.timezone, "objective_ms": c.config.ttfw_objective_ms}
    queries: dict[str, Any] = {}
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    window = "15m"

    async def from_db() -> None:
        try:
            h = await c.db()
            v = await h.overview()
            alerts = await h.alerts(limit=8)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            errors["db"] = f"PostgreSQL: {type(exc).__name__}"
            return
        values.update(v)
        outcomes = v["outcomes_today"]
        values["resolved_by_bot"] = sum(r["calls"] for r in outcomes if r["outcome"] == "resolved_by_bot")
        values["transferred"] = sum(r["calls"] for r in outcomes if r["outcome"] == "transferred")
        values["transfers_by_reason"] = {r["transfer_reason"] or "unknown": r["calls"]
                                         for r in outcomes if r["outcome"] == "transferred"}
        values["recent_alerts"] = [c.present_alert(a) for a in alerts]
        for name, sql in OVERVIEW_SQL.items():
            queries[name] = {"language": "sql", "query": sql,
                             "params": [c.config.timezone] if "$1" in sql else []}

    async def from_prom() -> None:
        assert c.prom is not None
        p = c.prom
        q = {
            "ttfw_p50_ms": exprs.ttfw_quantile(0.5, window),
            "ttfw_p95_ms": exprs.ttfw_quantile(0.95, window),
        }
        stage_q = exprs.stage_quantile(0.95, window, "stt|llm|tts|tool")
        try:
            for name, e in q.items():
                res = await p.query(e, now)
                values[name] = round(res[0][1] * 1000, 1) if res and res[0][1] is not None else None
                queries[name] = {"language": "promql", "query": e, "time": now, "scale": 1000}
            res = await p.query(stage_q, now)
            values["stage_p95_ms"] = {lbl.get("voice_stage", "?"): (round(v, 1) if v is not None else None)
                                      for lbl, v in res}
            queries["stage_p95_ms"] = {"language": "promql", "query": stage_q, "time": now, "scale": 1}
            trend_p95, trend_p50 = exprs.ttfw_quantile(0.95, "5m"), exprs.ttfw_quantile(0.5, "5m")
            start = now - 6 * 3600
            series: dict[str, list[list[float | None]]] = {}
            for key, e in (("p95", trend_p95), ("p50", trend_p50)):
                rr = await p.query_range(e, start, now, 300)
                series[key] = [[t, round(v * 1000, 1) if v is not None else None]
                               for t, v in (rr[0][1] if rr else [])]
            values["ttfw_trend"] = series
            queries["ttfw_trend"] = {"language": "promql", "query": trend_p95, "range": [start, now, 300]}
            c.prom_ok = True
        except PromError as exc:
            errors["prometheus"] = str(exc)

    await asyncio.gather(from_db(), from_prom())
    out["values"] = values
    out["queries"] = queries
    out["errors"] = errors
    out["sources"] = c.sources()
    return _json(out)


async def api_calls(request: web.Request) -> web.Response:
    c = _console(request)
    s = _session(request)
    assert s is not None
    f = filters.parse_call_filter(request.query)
    try:
        h = await c.db()
        res = await h.calls(f)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return _error(503, f"call history unavailable ({type(exc).__name__})", sources=c.sources())
    return _json({
        "items": [c.present_call(r, s.can_view_pii) for r in res.rows],
        "next_cursor": filters.encode_cursor(res.next_cursor) if res.next_cursor else None,
        "limit": f.limit,
    })


async def api_call(request: web.Request) -> web.Response:
    c = _console(request)
    s = _session(request)
    assert s is not None
    call_id = filters.check_call_id(request.match_info["call_id"])
    history: dict[str, Any] | None = None
    history_error: str | None = None
    trace = None
    trace_error: str | None = None
    try:
        history = await (await c.db()).call(call_id)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        history_error = f"call history unavailable ({type(exc).__name__})"
    trace_id = history.get("trace_id") if history else None
    if c.traces is None:
        trace_error = c.trace_error or "no trace store"
    else:
        try:
            if not trace_id:
                ids = await c.traces.traces_for_call(call_id)
                trace_id = ids[0] if ids else None
            if trace_id:
                trace = await c.trace(trace_id)
            if trace is None:
                trace_error = "the trace store does not have this call's trace (expired, or not yet written)"
        except Exception as exc:  # TraceStoreError and transport errors: the history still shows
            trace_error = f"trace store unavailable ({type(exc).__name__})"
    if history is None and trace is None:
        if history_error and trace_error:
            return _error(503, "neither the call history nor the trace store answered",
                          history_error=history_error, trace_error=trace_error)
        return _error(404, f"no call {call_id!r} in the call history or the trace store")
    if history is None and not history_error:
        history_error = "the call history has no row for this call"
    view = build_call_view(
        call_id, history=history, trace=trace, pii=s.can_view_pii, objective_ms=c.config.ttfw_objective_ms,
        trace_link=c.trace_link(trace.trace_id if trace is not None else trace_id),
        logs_link=c.logs_link(call_id, trace_id), history_error=history_error, trace_error=trace_error,
    )
    return _json(view)


async def api_span(request: web.Request) -> web.Response:
    """One span's full attributes (the call view leaves long values out of its payload)."""
    c = _console(request)
    s = _session(request)
    assert s is not None
    call_id = filters.check_call_id(request.match_info["call_id"])
    span_id = request.match_info["span_id"].lower()
    if not re.fullmatch(r"[0-9a-f]{16}", span_id):
        raise BadRequest("span id: 16 hexadecimal characters")
    if c.traces is None:
        return _error(503, c.trace_error or "no trace store")
    trace_id = None
    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        row = await (await c.db()).call(call_id)
        trace_id = row.get("trace_id") if row else None
    try:
        if not trace_id:
            ids = await c.traces.traces_for_call(call_id)
            trace_id = ids[0] if ids else None
        trace = await c.trace(trace_id) if trace_id else None
    except Exception as exc:
        return _error(503, f"trace store unavailable ({type(exc).__name__})")
    span = next((x for x in trace.spans if x.span_id == span_id), None) if trace is not None else None
    if span is None or trace is None or trace.call_id not in (None, call_id):
        return _error(404, f"no span {span_id} in call {call_id!r}")
    attrs, _ = span_attributes(span, s.can_view_pii)
    return _json({"span_id": span_id, "name": span.name, "attributes": attrs})


async def api_trace_call(request: web.Request) -> web.Response:
    """trace id (an exemplar's) -> the call it belongs to; for a trace of background work (a
    call-history batch, the worker's own housekeeping) ``call_id`` is null and ``background`` names
    that work, so the console says so instead of opening nothing."""
    c = _console(request)
    trace_id = filters.check_trace_id(request.match_info["trace_id"])
    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        call_id = await (await c.db()).call_id_for_trace(trace_id)
        if call_id:
            return _json({"trace_id": trace_id, "call_id": call_id, "source": "history"})
    if c.traces is not None:
        with contextlib.suppress(Exception):
            t = await c.traces.trace(trace_id)
            if t is not None and t.call_id:
                return _json({"trace_id": trace_id, "call_id": t.call_id, "source": "trace"})
            if t is not None and t.root is not None:
                return _json({"trace_id": trace_id, "call_id": None, "source": "trace",
                              "background": t.root.name, "service": t.root.service})
    return _error(404, f"no call found for trace {trace_id}")


async def api_trace(request: web.Request) -> web.Response:
    """The raw trace, as the trace store has it (personal data masked unless the user may see it):
    the call view's "trace" link, reachable wherever the console is."""
    c = _console(request)
    s = _session(request)
    assert s is not None
    trace_id = filters.check_trace_id(request.match_info["trace_id"])
    if c.traces is None:
        return _error(503, c.trace_error or "no trace store")
    try:
        trace = await c.trace(trace_id)
    except Exception as exc:
        return _error(503, f"trace store unavailable ({type(exc).__name__})")
    if trace is None:
        return _error(404, f"the trace store has no trace {trace_id}")
    spans = []
    for sp in trace.spans:
        attrs, _ = span_attributes(sp, s.can_view_pii)
        spans.append({"span_id": sp.span_id, "parent_id": sp.parent_id, "name": sp.name, "service": sp.service,
                      "start_ns": sp.start_ns, "end_ns": sp.end_ns, "duration_ms": round(sp.duration_ms, 3),
                      "error": sp.error, "attributes": attrs,
                      "events": [{"time_ns": t, "name": n} for t, n, _a in sp.events]})
    return _json({"trace_id": trace.trace_id, "call_id": trace.call_id, "store": c.traces.kind, "spans": spans})


async def api_latency(request: web.Request) -> web.Response:
    c = _console(request)
    unknown = set(request.query) - {"window", "end"}
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown)[:5])}")
    wname, wsec = filters.parse_window(request.query.get("window"))
    end = time.time()
    if request.query.get("end"):
        end = filters.parse_time(request.query["end"], "end").timestamp()
    start = end - wsec
    out: dict[str, Any] = {"window": wname, "start": start, "end": end, "objective_ms": c.config.ttfw_objective_ms}
    errors: dict[str, str] = {}
    queries: dict[str, str] = {}

    async def prom_part() -> None:
        assert c.prom is not None
        p = c.prom
        try:
            quant: dict[str, dict[str, float | None]] = {}
            for qname, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                e = exprs.stage_quantile(q, wname)
                queries[f"stage_{qname}"] = e
                for lbl, v in await p.query(e, end):
                    quant.setdefault(lbl.get("voice_stage", "?"), {})[qname] = round(v, 1) if v is not None else None
                e = exprs.ttfw_quantile(q, wname)
                queries[f"ttfw_{qname}"] = e
                res = await p.query(e, end)
                quant.setdefault("ttfw", {})[qname] = (round(res[0][1] * 1000, 1)
                                                       if res and res[0][1] is not None else None)
                e = exprs.first_chunk_quantile(q, wname)
                for lbl, v in await p.query(e, end):
                    quant.setdefault(f"first_chunk:{lbl.get('voice_stage', '?')}", {})[qname] = (
                        round(v * 1000, 1) if v is not None else None)
            for lbl, v in await p.query(exprs.stage_count(wname), end):
                quant.setdefault(lbl.get("voice_stage", "?"), {})["count"] = round(v) if v is not None else None
            out["quantiles"] = quant
            step = max(15.0, wsec / 120)
            rate_w = _fmt_window(step * 4)
            series = []
            for lbl, pts in await p.query_range(exprs.stage_quantile(0.95, rate_w), start, end, step):
                series.append({"stage": lbl.get("voice_stage", "?"), "points": [[t, v] for t, v in pts]})
            rr = await p.query_range(exprs.ttfw_quantile(0.95, rate_w), start, end, step)
            if rr:
                series.append({"stage": "ttfw", "points": [[t, v * 1000 if v is not None else None]
                                                           for t, v in rr[0][1]]})
            out["series"] = series
            out["step"] = step
            ex = []
            for bucket in (exprs.STAGE_BUCKET, exprs.STAGE_KEPT_BUCKET):  # one collector / tail sampling
                sel = f'{bucket}{{voice_stage=~"{"|".join(STAGES)}"}}'
                for x in await p.exemplars(sel, start, end):
                    ex.append({"t": x["t"], "value_ms": round(x["value"], 1), "trace_id": x["trace_id"],
                               "stage": x["series"].get("voice_stage", "?")})
            for x in await p.exemplars(exprs.TTFW_BUCKET, start, end):
                ex.append({"t": x["t"], "value_ms": round(x["value"] * 1000, 1), "trace_id": x["trace_id"],
                           "stage": "ttfw"})
            ex.sort(key=lambda x: -x["value_ms"])
            out["exemplars"] = ex[:3000]
        except PromError as exc:
            errors["prometheus"] = str(exc)

    async def db_part() -> None:
        try:
            rows = await (await c.db()).slowest_calls(dt.datetime.fromtimestamp(start, dt.UTC),
                                                      dt.datetime.fromtimestamp(end, dt.UTC), 10)
            out["slowest"] = [{"call_id": r["call_id"], "started_at": _epoch(r["started_at"]),
                               "outcome": r["outcome"], "scenario": r["scenario"], "trace_id": r["trace_id"],
                               "max_ttfw_ms": r["max_ttfw_ms"], "slow_turn": r["slow_turn"]} for r in rows]
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            errors["db"] = f"PostgreSQL: {type(exc).__name__}"

    await asyncio.gather(prom_part(), db_part())
    out["queries"] = queries
    out["errors"] = errors
    out["sources"] = c.sources()
    return _json(out)


async def api_alerts(request: web.Request) -> web.Response:
    c = _console(request)
    q = request.query
    unknown = set(q) - {"status", "before", "limit"}
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(sorted(unknown)[:5])}")
    status = q.get("status") or None
    if status is not None and status not in ("firing", "resolved"):
        raise BadRequest("status: firing or resolved")
    before = None
    if q.get("before"):
        if not q["before"].isdigit() or len(q["before"]) > 18:
            raise BadRequest("before: an alert id")
        before = int(q["before"])
    limit = 50
    if q.get("limit"):
        if not q["limit"].isdigit() or not 1 <= int(q["limit"]) <= 200:
            raise BadRequest("limit: 1 to 200")
        limit = int(q["limit"])
    try:
        rows = await (await c.db()).alerts(status=status, before_id=before, limit=limit + 1)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return _error(503, f"call history unavailable ({type(exc).__name__})", sources=c.sources())
    more = len(rows) > limit
    rows = rows[:limit]
    return _json({"items": [c.present_alert(r) for r in rows],
                  "next_before": rows[-1]["id"] if more and rows else None})


async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``call`` (a call row started/changed), ``alert`` (alerts_history),
    ``sources`` (a source went down or came back), ``resync`` (reload lists), ``bye`` (logged out)."""
    c = _console(request)
    s = _session(request)
    assert s is not None
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    })
    await resp.prepare(request)
    client = c.hub.add(s.user, s.can_view_pii, s.token)
    try:
        await resp.write(_sse("hello", {"user": s.user, "sources": c.sources()}))
        while True:
            try:
                event, data = await asyncio.wait_for(client.queue.get(), 15)
            except TimeoutError:
                if c.sessions.get(s.token) is None:
                    await resp.write(_sse("bye", {}))
                    break
                await resp.write(b": keepalive\n\n")
                continue
            if event == "closing":  # the console shuts down: the browser reconnects by itself
                break
            await resp.write(_sse(event, data))
            if event == "bye":
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        c.hub.remove(client)
    return resp


def _sse(event: str, data: Any) -> bytes:
    body = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    return f"event: {event}\ndata: {body}\n\n".encode()


async def api_not_found(request: web.Request) -> web.Response:
    return _error(404, f"no such API route: {request.path[:100]}")


# ----------------------------------------------------------------------------------------------- app
def make_app(config: UiConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY)
    console = Console(config)
    app[CONSOLE_KEY] = console
    app.on_response_prepare.append(_security_headers)

    async def on_startup(_app: web.Application) -> None:
        await console.start()

    async def on_shutdown(_app: web.Application) -> None:
        console.hub.broadcast("closing", {})  # end the event streams, so shutdown need not wait on them

    async def on_cleanup(_app: web.Application) -> None:
        await console.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/api/session", api_session)
    r.add_post("/api/login", api_login)
    r.add_post("/api/logout", api_logout)
    r.add_get("/api/meta", api_meta)
    r.add_get("/api/overview", api_overview)
    r.add_get("/api/calls", api_calls)
    r.add_get("/api/calls/{call_id}", api_call)
    r.add_get("/api/calls/{call_id}/spans/{span_id}", api_span)
    r.add_get("/api/traces/{trace_id}", api_trace)
    r.add_get("/api/traces/{trace_id}/call", api_trace_call)
    r.add_get("/api/latency", api_latency)
    r.add_get("/api/alerts", api_alerts)
    r.add_get("/api/events", api_events)
    r.add_route("*", "/api/{tail:.*}", api_not_found)
    r.add_get("/login", login_page)
    for p in PAGES:
        r.add_get(p, _page("index.html"))
    r.add_get("/calls/{call_id}", call_page)
    static = static_dir()
    if (static / "assets").is_dir():
        r.add_static("/assets/", static / "assets", append_version=False)
    if (static / "favicon.svg").is_file():
        async def favicon(_r: web.Request) -> web.StreamResponse:
            return web.FileResponse(static / "favicon.svg")

        r.add_get("/favicon.svg", favicon)
    return app
