"""One console process's state: its configuration, its connections to its sources (the call history
in PostgreSQL, Prometheus, the trace store) and their health, the login sessions, the live hub, and how
rows are presented (masked) to a user.

:class:`Console` is held by the application under :data:`CONSOLE_KEY`; every request handler reaches
it from its request (``voxpulse_console.ui.middleware._console``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import secrets
import time
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import asyncpg
from aiohttp import web

from telemetry.semconv import SpanName
from voxpulse_console import tracestore
from voxpulse_console.ui.auth import LoginThrottle, SessionStore, hash_password
from voxpulse_console.ui.callview import mask_text
from voxpulse_console.ui.config import UiConfig
from voxpulse_console.ui.database import History
from voxpulse_console.ui.live import LiveHub
from voxpulse_console.ui.prom import Prometheus

__all__ = ["CONSOLE_KEY", "TRACE_SETTLED_S", "Console"]

TRACE_SETTLED_S: Final = 30.0  # a call's trace is complete this long after its root span ended


def _epoch(v: Any) -> float | None:
    return v.timestamp() if isinstance(v, dt.datetime) else None



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
            # "insights": a call only the insights receiver knows (an agent without VoxPulse code)
            "source": row.get("source") or "history",
            **self.present_call_insights(row.get("insights"), pii),
        }

    @staticmethod
    def present_call_insights(value: Any, pii: bool) -> dict[str, Any]:
        """A list row's part from the insights receiver (tags, LiveKit's outcome, failed judges)."""
        ins = json.loads(value) if isinstance(value, str) else value
        if not isinstance(ins, dict):
            return {"tags": [], "insight_outcome": None, "failed_judges": [], "has_audio": False}
        return {
            "tags": [mask_text(str(t), pii) for t in ins.get("tags") or []],
            "insight_outcome": ins.get("outcome"),
            "failed_judges": [mask_text(str(j), pii) for j in ins.get("failed_judges") or []],
            "has_audio": bool(ins.get("audio")),
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

    async def _load_changed(self, calls: list[tuple[str, dt.datetime]], alerts: list[int], insights: list[str]
                            ) -> tuple[list[Any], list[Any]]:
        h = await self.db()
        rows = await h.rows_by_key(calls) if calls else []
        if insights:  # a call's insights arrived: its row (the history's, else the receiver's own) again
            seen = {(r["call_id"], r["started_at"]) for r in rows}
            rows += [r for r in await h.rows_by_insights(insights) if (r["call_id"], r["started_at"]) not in seen]
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
