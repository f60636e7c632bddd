"""The console's web application (aiohttp): the JSON API, the live feed and the built frontend.

    app = make_app(UiConfig.from_env())
    web.run_app(app, host="127.0.0.1", port=8090)

Every page and every API route needs a session (``/login``, its assets, ``/api/session``,
``/api/login`` and ``/healthz`` excepted). Each source is optional at run time: with PostgreSQL,
Prometheus or the trace store down, the routes that need it say so (``sources`` in every answer,
a banner in the browser) and the others keep working.

This module assembles the application and serves the pages; the rest, one job each:

* :mod:`~voxpulse_console.ui.state`: :class:`Console`, one process's state (config, sources, sessions);
* :mod:`~voxpulse_console.ui.middleware`: what every request goes through (errors, security headers);
* :mod:`~voxpulse_console.ui.login`: signing in and out (session cookie, CSRF, same origin);
* :mod:`~voxpulse_console.ui.api`: the JSON API;
* :mod:`~voxpulse_console.ui.events`: the live feed (Server-Sent Events).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from html import escape
from importlib import resources
from pathlib import Path
from typing import Final
from urllib.parse import quote

from aiohttp import web

from voxpulse_console.ui import filters
from voxpulse_console.ui.api import (
    api_alerts,
    api_call,
    api_calls,
    api_latency,
    api_meta,
    api_not_found,
    api_overview,
    api_span,
    api_trace,
    api_trace_call,
    healthz,
)
from voxpulse_console.ui.config import UiConfig
from voxpulse_console.ui.doors import safe_next
from voxpulse_console.ui.events import api_events
from voxpulse_console.ui.insights import api_call_audio, api_call_waveform, waveform_preload
from voxpulse_console.ui.login import api_login, api_logout, api_session, auth_middleware
from voxpulse_console.ui.middleware import MAX_BODY, _console, _security_headers, _session, error_middleware
from voxpulse_console.ui.state import CONSOLE_KEY, Console

__all__ = ["CONSOLE_KEY", "Console", "make_app", "static_dir"]

PAGES: Final = ("/", "/calls", "/latency", "/alerts")


def static_dir() -> Path:
    """The built frontend (``web/`` built by scripts/bootstrap.sh into the package's ``ui/static``)."""
    return Path(str(resources.files("voxpulse_console.ui").joinpath("static")))


# ------------------------------------------------------------------------------------------- pages
#: what every console page asks for first (web/src/main.tsx): preloaded with the page itself
APP_PRELOADS: Final = ("/api/meta", "/api/session")


def _with_preloads(html: bytes, urls: Iterable[str]) -> bytes:
    """The page with ``<link rel=preload>`` for ``urls`` in its head: the browser fetches them while
    the script loads, the script's own ``fetch`` of the same URL takes the response (``as=fetch``,
    ``crossorigin``: the mode and credentials of a same-origin ``fetch``), and the script finds what
    was preloaded in the head (web/src/prefetch.ts). The URLs are the server's own paths, quoted."""
    links = "".join(f'<link rel="preload" href="{escape(u)}" as="fetch" crossorigin>' for u in urls)
    head, sep, rest = html.partition(b"</head>")
    return head + links.encode() + sep + rest if sep else html


async def _serve(name: str, preload: Iterable[str] = ()) -> web.StreamResponse:
    f = static_dir() / name
    if not f.is_file():
        return web.Response(status=503, content_type="text/plain", text=(
            "The console's frontend is not built: run scripts/bootstrap.sh "
            "(npm ci && npm run build in web/). The JSON API under /api/ works without it."))
    return web.Response(body=_with_preloads(f.read_bytes(), preload), content_type="text/html", charset="utf-8")


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return await _serve(name, APP_PRELOADS if name == "index.html" else ())
    return handler


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form; with a session already, straight on to ``next`` (on this console only)."""
    if _session(request) is not None:
        raise web.HTTPFound(safe_next(request.query.get("next"), _console(request).origins))
    return await _page("login.html")(request)


async def call_page(request: web.Request) -> web.StreamResponse:
    """The console's page, with the call's data preloaded: its JSON, and its waveform's peaks where
    they are kept (a 10-minute call's waveform is drawn with the page's first render, not after it)."""
    call_id = request.match_info["call_id"]
    filters.check_call_id(call_id)
    wave = waveform_preload(request, call_id)
    return await _serve("index.html", (*APP_PRELOADS, f"/api/calls/{quote(call_id, safe='')}",
                                       *((wave,) if wave else ())))


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
    r.add_get("/api/calls/{call_id}/audio", api_call_audio)
    r.add_get("/api/calls/{call_id}/waveform", api_call_waveform)
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
