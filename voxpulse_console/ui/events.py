"""The console's live feed: ``/api/events``, Server-Sent Events from the live hub
(:mod:`voxpulse_console.ui.live`, PostgreSQL LISTEN/NOTIFY) to one logged-in browser.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from voxpulse_console.ui.middleware import _console, _session

__all__ = ["api_events"]


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
