"""The console's JSON API: what the pages show (overview, calls, one call and its spans, traces,
latency, alerts). Each source is optional at run time: a route whose source is down says so
(``sources``, ``errors`` in its answer) and the others keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
from typing import Any, Final

import asyncpg
from aiohttp import web

from voxpulse_console.ui import filters
from voxpulse_console.ui.callview import build_call_view, span_attributes
from voxpulse_console.ui.database import OVERVIEW_SQL
from voxpulse_console.ui.filters import BadRequest
from voxpulse_console.ui.insights import chat_history, present_insights
from voxpulse_console.ui.middleware import _console, _error, _json, _session
from voxpulse_console.ui.prom import STAGES, PromError, exprs
from voxpulse_console.ui.state import _epoch

__all__ = ["api_alerts", "api_call", "api_calls", "api_latency", "api_meta", "api_not_found", "api_overview",
           "api_span", "api_trace", "api_trace_call", "healthz"]

PROM_LAG_S: Final = 10.0


def _fmt_window(seconds: float) -> str:
    return f"{max(60, int(seconds))}s"


async def healthz(_request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def api_meta(request: web.Request) -> web.Response:
    c = _console(request)
    s = _session(request)
    assert s is not None
    values: dict[str, list[str]] = {"scenario": [], "outcome": [], "judge": []}
    with contextlib.suppress(Exception):
        values = await (await c.db()).filter_values()
    return _json({
        "user": s.user, "can_view_pii": s.can_view_pii, "can_play_audio": s.can_play_audio,
        "objective_ms": c.config.ttfw_objective_ms,
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
    insights: dict[str, Any] | None = None
    trace = None
    trace_error: str | None = None
    try:
        h = await c.db()
        history = await h.call(call_id)
        if history is None and (owner := await h.call_id_for_room(call_id)) is not None:
            call_id = owner  # the receiver's key of a SIP call (its room's id): the call is VoxPulse's
            history = await h.call(call_id)
        insights = await h.insights(call_id)
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
    if history is None and trace is None and insights is None:
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
    view["insights"] = None
    if insights is not None:
        t0 = view["t0"] if view["t0"] is not None else _epoch(insights.get("started_at"))
        view["t0"] = t0
        chat = await chat_history(c.config.insights_dir, c.config.insights_s3, str(insights["call_id"]))
        view["insights"] = present_insights(insights, folder=c.config.insights_dir, pii=s.can_view_pii,
                                            can_play_audio=s.can_play_audio, t0=t0,
                                            in_bucket=c.config.insights_s3 is not None, chat=chat)
        header = view["call"]
        if header["started_at"] is None:  # only the insights receiver knows this call (an agent without VoxPulse)
            header["started_at"] = t0
            header["duration_s"] = insights.get("duration_s")
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


async def api_not_found(request: web.Request) -> web.Response:
    return _error(404, f"no such API route: {request.path[:100]}")
