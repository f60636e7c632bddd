"""Live updates: PostgreSQL ``LISTEN voxpulse_live`` -> one read of each changed row -> every
connected browser, over Server-Sent Events. The database is never polled: the triggers of the
migration ``telemetry/history/migrations/0004_live_notify.sql`` notify on every write.

One listening connection per console process; notifications arriving together are read in one
query (coalesced for ``batch_s``) and broadcast to every client's bounded queue. A client that
falls behind is told to resynchronise instead of holding memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg

__all__ = ["CHANNEL", "Client", "LiveHub"]

log = logging.getLogger("voxpulse.console.live")

CHANNEL: Final = "voxpulse_live"
QUEUE_MAX: Final = 1000


@dataclass(eq=False)
class Client:
    """One browser's event stream."""

    user: str
    can_view_pii: bool
    token: str = ""
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False

    def put(self, event: str, data: Any) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((event, data))
        except asyncio.QueueFull:
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(("resync", {}))


# What the hub calls to turn notified keys into rows: (call keys, alert ids, call ids of insights rows:
# the insights receiver's, migration 0008) -> (call rows, alerts)
Loader = Callable[[list[tuple[str, dt.datetime]], list[int], list[str]], Awaitable[tuple[list[Any], list[Any]]]]
# A client-specific view of a row (masking): (row, can_view_pii) -> JSON-able
Presenter = Callable[[str, Any, bool], Any]


class LiveHub:
    def __init__(self, dsn: str | None, loader: Loader, presenter: Presenter, *, batch_s: float = 0.05,
                 on_status: Callable[[bool, str | None], None] | None = None) -> None:
        self.dsn = dsn
        self.loader = loader
        self.presenter = presenter
        self.batch_s = batch_s
        self.on_status = on_status
        self.clients: set[Client] = set()
        self.connected = False
        self.error: str | None = "not started" if dsn else "no database configured"
        self.notifications = 0
        self.broadcasts = 0
        self._pending_calls: dict[str, dt.datetime] = {}
        self._pending_alerts: dict[int, str] = {}
        self._pending_insights: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: Any = None
        self._stop = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.dsn is None:
            return
        self._tasks = [asyncio.create_task(self._listen_loop(), name="live-listen"),
                       asyncio.create_task(self._flush_loop(), name="live-flush")]

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2)
        for c in list(self.clients):
            c.put("closing", {})

    def _set_status(self, ok: bool, error: str | None) -> None:
        changed = ok != self.connected or error != self.error
        self.connected, self.error = ok, error
        if changed and self.on_status is not None:
            self.on_status(ok, error)

    async def _listen_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                self._conn = conn
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self._set_status(True, None)
                backoff = 0.5
                while not self._stop.is_set() and not lost.is_set() and not conn.is_closed():
                    # asyncpg tells a dead server only on I/O: a cheap keepalive every few seconds
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
                raise ConnectionError("listening connection lost")
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if self._stop.is_set():
                    return
                self._set_status(False, f"PostgreSQL unreachable ({type(exc).__name__})")
                log.warning("live feed: %s; retrying in %.1fs", exc, backoff)
                with contextlib.suppress(Exception):
                    if self._conn is not None:
                        self._conn.terminate()
                self._conn = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        try:
            msg = json.loads(payload)
            if msg.get("t") == "call":
                self._pending_calls[str(msg["id"])] = dt.datetime.fromtimestamp(float(msg["s"]), dt.UTC)
            elif msg.get("t") == "alert":
                self._pending_alerts[int(msg["id"])] = str(msg.get("op", ""))
            elif msg.get("t") == "insights":
                self._pending_insights.add(str(msg["id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("live feed: unexpected payload %r", payload[:200])
            return
        self._wake.set()

    async def _flush_loop(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self.batch_s:
                await asyncio.sleep(self.batch_s)  # coalesce a burst of notifications into one read
            calls, alerts, insights = self._pending_calls, self._pending_alerts, self._pending_insights
            self._pending_calls, self._pending_alerts, self._pending_insights = {}, {}, set()
            if not calls and not alerts and not insights:
                continue
            try:
                rows, alert_rows = await self.loader(list(calls.items()), list(alerts), sorted(insights))
            except Exception as exc:  # a failed read must not kill the feed
                log.warning("live feed: reading changed rows failed: %s", exc)
                for c in list(self.clients):
                    c.put("resync", {})
                continue
            t = time.time()
            for c in list(self.clients):
                for row in rows:
                    c.put("call", self.presenter("call", row, c.can_view_pii))
                for a in alert_rows:
                    c.put("alert", self.presenter("alert", a, c.can_view_pii) | {"op": alerts.get(a["id"], "")})
            self.broadcasts += 1
            log.debug("live feed: %d call(s), %d alert(s) to %d client(s) at %.3f", len(rows), len(alert_rows),
                      len(self.clients), t)

    # -- clients -----------------------------------------------------------------------------------
    def add(self, user: str, can_view_pii: bool, token: str = "") -> Client:
        c = Client(user, can_view_pii, token)
        self.clients.add(c)
        return c

    def remove(self, c: Client) -> None:
        self.clients.discard(c)

    def broadcast(self, event: str, data: Any) -> None:
        for c in list(self.clients):
            c.put(event, data)
