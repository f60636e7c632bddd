"""Generate VoxPulse's Grafana dashboards (grafana/dashboards/<trace store>/*.json) from plain dicts.

    python grafana/build_dashboards.py           # write the JSON files
    python grafana/build_dashboards.py --check   # exit 1 when a committed file differs

Output is deterministic (sorted keys, fixed ids and layout); tests/dashboards checks that the
committed files equal this script's output. Every metric and label name comes from its declaration:
VoxPulse's from telemetry/semconv.py (docs/semantic-conventions.md), the tyre shop's from
agent/metrics.toml (read as data: the agent is not imported), the span metrics' from semconv's
SPANMETRICS_* (the collector's connector); LiveKit,
node exporter and blackbox metrics are the exporters' own. The SQL of the PostgreSQL panels is in
grafana/panels.sql, by name.

One set of dashboards per trace store, because a trace query is written in the store's own language:
``tempo/`` (TraceQL: ``{ span.call_id = "..." }``) and ``jaeger/`` (Jaeger search: service + tags
``call_id=...``; Jaeger needs a service, so those dashboards have a ``service`` variable, the agent
services that have sent calls: ``label_values`` of the span metrics). Grafana loads the set that
``VOXPULSE_TRACE_STORE`` names (grafana/provisioning/dashboards/dashboards.yaml); the dashboards
without trace queries are the same in both sets.

Datasources are the provisioned fixed uids (grafana/provisioning/datasources/datasources.yaml):
``prometheus``, ``tempo``, ``jaeger``, ``postgres``. Refresh follows the polling intervals the users
asked for: the Real time dashboard 5 s (active calls), latency dashboards 15 s, charts and history
60 s; panel ``interval`` sets the matching minimum step.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from telemetry.semconv import (
    SPANMETRICS_CALLS,
    SPANMETRICS_DURATION,
    SPANMETRICS_KEPT_DURATION,
    TTFW_OBJECTIVE_S,
    Attr,
    Metric,
    SpanName,
    metric_spec,
    read_metric_specs,
)

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SQL_FILE = Path(__file__).resolve().parent / "panels.sql"

PROM = {"type": "prometheus", "uid": "prometheus"}
PG = {"type": "grafana-postgresql-datasource", "uid": "postgres"}

# TraceQL that finds every span of one call; ``{value}`` is a Grafana variable.
CALL_TRACEQL = '{{ span.call_id = "{value}" }}'
# The slow turns: the library marks a turn whose time to first word is at or over the objective
# (voice.turn.slow, VOXPULSE_TTFW_OBJECTIVE_S). Not a duration filter: a turn span lasts as long as the
# answer, and Jaeger's minDuration matches a trace when any of its spans is that long.
SLOW_TURNS_TRACEQL = f'{{ name = "{SpanName.TURN}" && span.{Attr.TURN_SLOW} = true }}'
SLOW_TURNS_JAEGER_TAGS = f"{Attr.TURN_SLOW}=true"

Panel = dict[str, Any]


@dataclass(frozen=True)
class TraceStore:
    """How the dashboards of one trace store ask it for traces (Grafana query models)."""

    kind: str  # tempo | jaeger: also the provisioned data source uid and type
    title: str

    @property
    def ds(self) -> dict[str, str]:
        return {"type": self.kind, "uid": self.kind}

    def call_query(self, call_id: str) -> dict[str, Any]:
        """The traces of one call (``call_id`` may be a Grafana variable)."""
        if self.kind == "tempo":
            return {"queryType": "traceql", "query": CALL_TRACEQL.format(value=call_id), "limit": 20,
                    "tableType": "traces"}
        return {"queryType": "search", "service": "${service}", "tags": f'call_id="{call_id}"', "limit": 20}

    def trace_query(self, trace_id: str) -> dict[str, Any]:
        """One trace by id."""
        if self.kind == "tempo":
            return {"queryType": "traceql", "query": trace_id, "limit": 20, "tableType": "traces"}
        return {"query": trace_id}  # Jaeger: no queryType is the trace-id lookup

    def slow_turns_query(self) -> dict[str, Any]:
        """The turn spans marked slow (time to first word at or over the objective)."""
        if self.kind == "tempo":
            return {"queryType": "traceql", "query": SLOW_TURNS_TRACEQL, "limit": 20, "spss": 3,
                    "tableType": "traces"}
        return {"queryType": "search", "service": "${service}", "operation": SpanName.TURN,
                "tags": SLOW_TURNS_JAEGER_TAGS, "limit": 20}

    def target(self, query: dict[str, Any], ref: str = "A") -> dict[str, Any]:
        return {"datasource": self.ds, "refId": ref, **query}

    @property
    def language(self) -> str:
        return "TraceQL" if self.kind == "tempo" else "Jaeger search by tag"


TRACE_STORES = (TraceStore("tempo", "Tempo"), TraceStore("jaeger", "Jaeger"))

# Jaeger searches one service at a time: the agent services that have sent calls.
SERVICE_VAR = {
    "type": "query", "name": "service", "label": "agent service",
    "description": "The agent service whose traces the Jaeger searches look in (services that sent calls).",
    "datasource": PROM,
    "definition": 'label_values(traces_span_metrics_calls_total{span_name="call"}, service_name)',
    "query": {"qryType": 1, "query": 'label_values(traces_span_metrics_calls_total{span_name="call"}, service_name)',
              "refId": "PrometheusVariableQueryEditor-VariableQuery"},
    "refresh": 2, "sort": 1, "regex": "", "hide": 0, "includeAll": False, "multi": False,
    "current": {}, "options": [],
}


def store_variables(store: TraceStore) -> list[dict[str, Any]]:
    return [SERVICE_VAR] if store.kind == "jaeger" else []


# --------------------------------------------------------------------------- links


def explore_url(store: TraceStore, query: dict[str, Any]) -> str:
    """Grafana Explore URL running ``query`` on the trace store over the dashboard's time range.

    The pane JSON is percent-encoded; Grafana variables in the query (``${__value.raw}``,
    ``${call_id}``, ``${service}``) are put back literally, with the ``:percentencode`` format, so
    Grafana interpolates them when the link is clicked.
    """
    pane = {
        "vp": {
            "datasource": store.kind,
            "queries": [store.target(query)],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    encoded = quote(json.dumps(pane, separators=(",", ":"), sort_keys=True), safe="")
    encoded = re.sub(r"%24%7B(__from|__to)%7D", r"${\1}", encoded)
    encoded = re.sub(r"%24%7B([A-Za-z_][A-Za-z0-9_.]*)%7D", r"${\1:percentencode}", encoded)
    return f"/explore?schemaVersion=1&orgId=1&panes={encoded}"


def internal_link(store: TraceStore, title: str, query: dict[str, Any]) -> dict[str, Any]:
    """A data link that opens ``query`` (Grafana variables allowed) on the trace store in Explore."""
    return {
        "title": title,
        "url": "",
        "targetBlank": False,
        "internal": {"datasourceUid": store.kind, "datasourceName": store.title, "query": store.target(query)},
    }


def call_trace_links(store: TraceStore) -> list[dict[str, Any]]:
    """Links of a call_id cell: its trace in the trace store (by call_id) and the Call explorer."""
    query = store.call_query("${__value.raw}")
    return [
        internal_link(store, f"Trace of call ${{__value.raw}} ({store.title})", query),
        {"title": "Trace of call ${__value.raw} (Explore, new tab)", "url": explore_url(store, query),
         "targetBlank": True},
        {"title": "Open call ${__value.raw} in the Call explorer",
         "url": "/d/voxpulse-call-explorer/call-explorer?var-call_id=${__value.raw}&${__url_time_range}",
         "targetBlank": False},
    ]


def trace_id_links(store: TraceStore) -> list[dict[str, Any]]:
    return [internal_link(store, f"Trace ${{__value.raw}} ({store.title})", store.trace_query("${__value.raw}"))]


def field_links(field: str, links: list[dict[str, Any]]) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "links", "value": links}]}


# --------------------------------------------------------------------------- targets


def prom(expr: str, legend: str = "", *, latency: bool = False, instant: bool = False,
         ref: str = "A") -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": PROM,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "editorMode": "code",
    }
    if latency:
        t["exemplar"] = True
    return t


def load_sql(path: Path = SQL_FILE) -> dict[str, str]:
    """The named queries of ``path``: ``-- name: <name>`` -> the SQL under it, white space folded
    (other comment lines and blank lines are not part of a query)."""
    lines: dict[str, list[str]] = {}
    name: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-- name: "):
            name = line.removeprefix("-- name: ").strip()
            if name in lines:
                raise ValueError(f"{path.name}: query {name!r} is defined twice")
            lines[name] = []
        elif name is not None and line.strip() and not line.lstrip().startswith("--"):
            lines[name].append(line)
    return {n: " ".join(" ".join(body).split()) for n, body in lines.items()}


SQL = load_sql()


def sql(name: str, fmt: str = "table", ref: str = "A") -> dict[str, Any]:
    """A PostgreSQL target running the query ``name`` of grafana/panels.sql."""
    return {"datasource": PG, "refId": ref, "rawSql": SQL[name], "format": fmt, "rawQuery": True,
            "editorMode": "code"}


# LiveKit server 1.13 reports packet loss as a histogram of per-stream loss percentages (no loss
# counter): its mean over a window is sum/count of the samples.
LIVEKIT_LOSS = ('sum by ({by}) (rate(livekit_packet_loss_percent_sum{{type="AUDIO"}}[{window}])) '
                '/ sum by ({by}) (rate(livekit_packet_loss_percent_count{{type="AUDIO"}}[{window}]))')


def quantile(q: float, metric: str, by: str = "", selector: str = "", window: str = "$__rate_interval") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{selector}[{window}])))"


# --------------------------------------------------------------------------- panels


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], *, w: int, h: int,
          unit: str | None = None, datasource: dict[str, str] = PROM, interval: str | None = None,
          options: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
          overrides: list[dict[str, Any]] | None = None) -> Panel:
    fd: dict[str, Any] = dict(defaults or {})
    if unit:
        fd["unit"] = unit
    p: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "targets": targets,
        "fieldConfig": {"defaults": fd, "overrides": overrides or []},
        "options": options or {},
        "gridPos": {"w": w, "h": h},
    }
    if interval:
        p["interval"] = interval
    return p


def kept_exemplars(targets: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each span-metric latency target gets a sibling over the kept spans' histogram, hidden, for its
    exemplars. With tail sampling (the scale-out topology, docs/scaling.md) the exact histogram of
    every span carries none -- most of its traces are dropped -- and the kept one carries exemplars
    that each open a stored trace; with one collector the kept one does not exist and the exact one
    carries the exemplars. Returns the targets and the overrides that hide the siblings' lines."""
    out, hidden = list(targets), []
    raw = re.compile(rf"(?<![\w:]){SPAN_MS}(?=_bucket|_sum|_count)")  # the series, not a recording of them
    for t in targets:
        if t.get("exemplar") and raw.search(t["expr"]):
            ref = f"{t['refId']}_kept"
            out.append({**t, "refId": ref, "expr": raw.sub(SPAN_KEPT_MS, t["expr"]),
                        "legendFormat": "kept traces (exemplars)"})
            hidden.append({"matcher": {"id": "byFrameRefID", "options": ref},
                           "properties": [{"id": "custom.hideFrom",
                                           "value": {"viz": True, "legend": True, "tooltip": True}}]})
    return out, hidden


def timeseries(title: str, description: str, targets: list[dict[str, Any]], *, unit: str, w: int = 12,
               h: int = 8, stacked: bool = False, interval: str | None = None, bars: bool = False,
               datasource: dict[str, str] = PROM) -> Panel:
    custom: dict[str, Any] = {"drawStyle": "bars" if bars else "line", "lineWidth": 1,
                              "fillOpacity": 20 if stacked else 5, "showPoints": "never", "spanNulls": False}
    if stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    targets, hidden = kept_exemplars(targets)
    return panel("timeseries", title, description, targets, w=w, h=h, unit=unit, interval=interval,
                 datasource=datasource, defaults={"custom": custom}, overrides=hidden or None,
                 options={"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                          "tooltip": {"mode": "multi", "sort": "desc"}})


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def stat(title: str, description: str, targets: list[dict[str, Any]], *, unit: str, w: int = 6, h: int = 5,
         steps: dict[str, Any] | None = None, kind: str = "stat", datasource: dict[str, str] = PROM,
         interval: str | None = None, mappings: list[dict[str, Any]] | None = None,
         decimals: int | None = None) -> Panel:
    defaults: dict[str, Any] = {"thresholds": steps or thresholds((None, "green"))}
    if mappings:
        defaults["mappings"] = mappings
    if decimals is not None:
        defaults["decimals"] = decimals
    options: dict[str, Any] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    if kind == "stat":
        options |= {"colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return panel(kind, title, description, targets, w=w, h=h, unit=unit, datasource=datasource,
                 interval=interval, defaults=defaults, options=options)


def table(title: str, description: str, targets: list[dict[str, Any]], *, w: int = 24, h: int = 9,
          datasource: dict[str, str] = PG, overrides: list[dict[str, Any]] | None = None,
          unit: str = "none") -> Panel:
    return panel("table", title, description, targets, w=w, h=h, unit=unit, datasource=datasource,
                 overrides=overrides, options={"showHeader": True, "cellHeight": "sm",
                                               "footer": {"show": False, "reducer": ["sum"], "fields": ""}})


def piechart(title: str, description: str, targets: list[dict[str, Any]], *, w: int = 8, h: int = 9,
             datasource: dict[str, str] = PG, unit: str = "none") -> Panel:
    """A donut of each row's value (one slice per row), with a value and percent legend."""
    return panel("piechart", title, description, targets, w=w, h=h, unit=unit, datasource=datasource,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                          "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                         "values": ["value", "percent"]}})


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def layout(panels: list[Panel]) -> list[Panel]:
    """Assign ids and flow the panels left to right, top to bottom, on Grafana's 24-column grid."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24 or p["type"] == "row":
            y, x, row_h = y + row_h, 0, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            y, x, row_h = y + h, 0, 0
    return panels


def dashboard(uid: str, title: str, description: str, refresh: str, panels: list[Panel], *,
              variables: list[dict[str, Any]] | None = None, time_from: str = "now-1h",
              tags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["voxpulse", *tags],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": refresh,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "15s", "30s", "1m", "5m", "15m"]},
        "templating": {"list": variables or []},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "links": [{"type": "dashboards", "tags": ["voxpulse"], "asDropdown": True, "title": "VoxPulse",
                   "includeVars": False, "keepTime": True}],
        "panels": layout(panels),
    }


# --------------------------------------------------------------------------- shared queries

def label(key: str) -> str:
    """The Prometheus label of an attribute key (OTel's translation: dots become underscores)."""
    return key.replace(".", "_")


def series(metric: str) -> str:
    """The Prometheus series name of one of VoxPulse's metrics (histograms: without ``_bucket``)."""
    return metric_spec(metric).prometheus


# Series: the SDK's (semconv), the tyre shop's own (agent/metrics.toml), the collector's span metrics.
TTFW = series(Metric.TTFW)
TTFC = series(Metric.STAGE_TTFC)
CALLS = series(Metric.CALLS)
CALLS_ACTIVE = series(Metric.CALLS_ACTIVE)
OPERATOR_QUEUE = series(Metric.OPERATOR_QUEUE)
CALL_COST = series(Metric.CALL_COST)
API_SPEND = series(Metric.API_SPEND)
SEGMENTS = series(Metric.TURN_SEGMENT)
GREETING_TTFW = series(Metric.GREETING_TTFW)
GREETING_SEGMENTS = series(Metric.GREETING_SEGMENT)
INTERRUPTIONS = series(Metric.INTERRUPTIONS)
YIELD_TIME = series(Metric.YIELD_TIME)
BUDGET_BREACHES = series(Metric.BUDGET_BREACHES)
DATA_ERRORS = series(Metric.DATA_ERRORS)
VERDICTS = series(Metric.INSIGHTS_VERDICTS)  # the insights receiver's (LiveKit Agents' judges)
OUTCOMES = series(Metric.INSIGHTS_OUTCOMES)
# the tyre shop's own metrics: its declarations (agent/metrics.toml) read as data, the agent not imported
AGENT_METRICS = {m.name: m for m in read_metric_specs(
    (Path(__file__).resolve().parents[1] / "agent" / "metrics.toml").read_text(encoding="utf-8"))}
STORE_API_ERRORS = AGENT_METRICS["voice.store_api.errors"].prometheus
SPAN_MS = SPANMETRICS_DURATION
SPAN_KEPT_MS = SPANMETRICS_KEPT_DURATION  # the kept spans (tail sampling): their exemplars
SPAN_CALLS = SPANMETRICS_CALLS
SPAN_STATUS = "status_code"  # the span metrics connector's own label
# prometheus/rules/recording.yml: mean span duration per stage over 5 minutes
STAGE_MEAN_5M = f"{label(Attr.STAGE)}:{SPANMETRICS_DURATION}:avg_5m"
# Labels
STAGE = label(Attr.STAGE)
OUTCOME = label(Attr.CALL_OUTCOME)
TOOL = label(Attr.TOOL_NAME)
PROVIDER = label(Attr.PROVIDER)
MODEL = label(Attr.MODEL)
HTTP_STATUS = label(Attr.HTTP_STATUS)
SEGMENT = label(Attr.TURN_SEGMENT)
SEGMENT_OWNER = label(Attr.TURN_SEGMENT_OWNER)
DIRECTION = label(Attr.INTERRUPTION_DIRECTION)
KIND = label(Attr.INTERRUPTION_KIND)
BUDGET = label(Attr.BUDGET)
DATA_SOURCE = label(Attr.DATA_ERROR_SOURCE)
DATA_REASON = label(Attr.DATA_ERROR_REASON)
JUDGE = label(Attr.INSIGHTS_JUDGE)
VERDICT = label(Attr.INSIGHTS_VERDICT)
INSIGHTS_OUTCOME = label(Attr.INSIGHTS_OUTCOME)
STAGES = f'{{{STAGE}=~"stt|llm|tts|tool"}}'

UP_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "DOWN", "color": "red", "index": 0},
    "1": {"text": "UP", "color": "green", "index": 1}}}]


def ttfw_quantiles(interval: str) -> Panel:
    return timeseries(
        "Response latency (time to first word) p50 / p95 / p99",
        "End of the caller's speech to the first byte of agent audio, per turn. Exemplars (dots) "
        "open the turn's trace in the trace store.",
        [prom(quantile(0.5, TTFW), "p50", latency=True, ref="A"),
         prom(quantile(0.95, TTFW), "p95", latency=True, ref="B"),
         prom(quantile(0.99, TTFW), "p99", latency=True, ref="C")],
        unit="s", interval=interval)


def stage_breakdown(q: float, interval: str, *, stacked: bool) -> Panel:
    return timeseries(
        f"STT / LLM / TTS / tool latency p{int(q * 100)}{' (stacked)' if stacked else ''}",
        "Span-derived latency of each stage request (voice.stage), from the collector's spanmetrics. "
        "Exemplars open the request's trace.",
        [prom(quantile(q, SPAN_MS, STAGE, STAGES), f"{{{{{STAGE}}}}}", latency=True)],
        unit="ms", stacked=stacked, interval=interval)


# --------------------------------------------------------------------------- dashboards


def realtime(store: TraceStore) -> dict[str, Any]:
    panels = [
        row("Now"),
        stat("Active calls", f"Calls in progress ({CALLS_ACTIVE}), refreshed every 5 s.",
             [prom(f"sum({CALLS_ACTIVE})", "active calls", instant=True)], unit="none", w=4,
             kind="gauge", steps=thresholds((None, "green"), (20, "orange"), (40, "red"))),
        stat("Operator queue", "Callers waiting for a human operator; the alert fires above 5.",
             [prom(f"max({OPERATOR_QUEUE})", "queue", instant=True)], unit="none", w=4,
             kind="gauge", steps=thresholds((None, "green"), (3, "orange"), (6, "red"))),
        stat("Calls per minute", f"Finished calls per minute ({CALLS}).",
             [prom(f"sum(rate({CALLS}[$__rate_interval])) * 60", "calls/min")], unit="none",
             w=4, decimals=1),
        stat("Response p95 (5 min)", "Time to first word p95 over the last 5 minutes; alert above 3 s.",
             [prom(quantile(0.95, TTFW, window="5m"), "p95", latency=True, instant=True)],
             unit="s", w=4, steps=thresholds((None, "green"), (2, "orange"), (3, "red"))),
        stat("Service status", "Scrape targets (up) and availability probes (probe_success).",
             [prom("min by (job) (up)", "{{job}}", instant=True, ref="A"),
              prom("min by (instance) (probe_success)", "probe {{instance}}", instant=True, ref="B")],
             unit="none", w=8, mappings=UP_MAPPINGS,
             steps=thresholds((None, "red"), (1, "green"))),
        row("Latency"),
        ttfw_quantiles("15s"),
        stage_breakdown(0.5, "15s", stacked=True),
        row("Load and errors"),
        timeseries("Calls per minute by outcome", "Finished calls per minute by voice.call.outcome.",
                   [prom(f"sum by ({OUTCOME}) (rate({CALLS}[$__rate_interval])) * 60",
                         f"{{{{{OUTCOME}}}}}")], unit="none", stacked=True, interval="1m"),
        timeseries("Errors by type", "Error spans per stage (STT/LLM/TTS/tool) and store API errors by "
                   "HTTP status, per minute.",
                   [prom(f'sum by ({STAGE}) (rate({SPAN_CALLS}{{{SPAN_STATUS}="STATUS_CODE_ERROR", '
                         f'{STAGE}!=""}}[$__rate_interval])) * 60', f"{{{{{STAGE}}}}} errors", ref="A"),
                    prom(f"sum by ({HTTP_STATUS}) (rate({STORE_API_ERRORS}"
                         f"[$__rate_interval])) * 60", f"store API {{{{{HTTP_STATUS}}}}}", ref="B")],
                   unit="none", interval="1m"),
        row("Calls and alerts"),
        table("Calls in progress", "Live calls from the call history (status active); call_id opens the "
              f"trace in {store.title}.",
              [sql("calls_in_progress")],
              w=12, overrides=[field_links("call_id", call_trace_links(store))]),
        table("Recent alerts", "Alerts fired and resolved (alerts_history, written by the Alertmanager "
              "webhook receiver).",
              [sql("recent_alerts")], w=12),
    ]
    return dashboard("voxpulse-realtime", "VoxPulse / Real time",
                     "Active calls, queue, response latency with exemplars, stage breakdown, errors, load, "
                     "service status and recent alerts.", "5s", panels, time_from="now-30m",
                     variables=store_variables(store), tags=("realtime",))


def voice_quality() -> dict[str, Any]:
    panels = [
        row("Time to first word"),
        stat("Time to first word p95", "The users' hero number: p95 of end of caller speech to first "
             "agent audio, last 5 minutes.",
             [prom(quantile(0.95, TTFW, window="5m"), "p95", latency=True, instant=True)], unit="s", w=6,
             h=8, steps=thresholds((None, "green"), (1.5, "orange"), (3, "red"))),
        timeseries("Time to first word trend (1 min step)", "p50 and p95 of time to first word; "
                   "exemplars open the trace of a turn.",
                   [prom(quantile(0.5, TTFW), "p50", latency=True, ref="A"),
                    prom(quantile(0.95, TTFW), "p95", latency=True, ref="B")],
                   unit="s", w=18, interval="1m"),
        row("Media (LiveKit server)"),
        timeseries("Packet loss", "Mean packet loss of the audio streams, by direction, from LiveKit's "
                   "livekit_packet_loss_percent histogram (one sample per stream and report); the alert "
                   "fires above 1 %.",
                   [prom(LIVEKIT_LOSS.format(by="direction", window="$__rate_interval"), "{{direction}}")],
                   unit="percent", w=8, interval="15s"),
        timeseries("Jitter p95", "RTP jitter p95 from LiveKit's livekit_jitter_us histogram, in ms.",
                   [prom(quantile(0.95, "livekit_jitter_us", "direction") + " / 1000", "{{direction}}",
                         latency=True)], unit="ms", w=8, interval="15s"),
        timeseries("RTT p95", "Round-trip time p95 from LiveKit's livekit_rtt_ms histogram.",
                   [prom(quantile(0.95, "livekit_rtt_ms", "direction"), "{{direction}}", latency=True)],
                   unit="ms", w=8, interval="15s"),
        stat("Rooms", "LiveKit rooms open now.", [prom("sum(livekit_room_total)", "rooms", instant=True)],
             unit="none", w=8),
        stat("Participants", "LiveKit participants now.",
             [prom("sum(livekit_participant_total)", "participants", instant=True)], unit="none", w=8),
        stat("SIP calls active", "Active SIP calls (LiveKit SIP).",
             [prom("sum(livekit_sip_calls_active)", "SIP calls", instant=True)], unit="none", w=8),
        row("Where the time goes"),
        timeseries("Where the time goes: p50 by part of the turn (stacked)",
                   "Each turn's time to first word cut into parts that add up to it (voice.segment.name: "
                   "transport, VAD silence, STT final, end of turn, the agent's hook, tools, queueing, LLM, "
                   "TTS, playback, publication; unaccounted where a measurement is missing). Stacked medians "
                   "approximate the median turn; exemplars open a turn.",
                   [prom(quantile(0.5, SEGMENTS, SEGMENT), f"{{{{{SEGMENT}}}}}", latency=True)],
                   unit="s", w=12, stacked=True, interval="1m"),
        timeseries("Where the time goes: p95 by part of the turn",
                   "p95 of each part of the turn, and whose it is (owner: transport, setting, provider, agent, "
                   "framework); exemplars open a slow turn.",
                   [prom(quantile(0.95, SEGMENTS, f"{SEGMENT}, {SEGMENT_OWNER}"),
                         f"{{{{{SEGMENT}}}}} ({{{{{SEGMENT_OWNER}}}}})", latency=True)],
                   unit="s", w=12, interval="1m"),
        timeseries("The greeting: time to its first word p50 / p95",
                   "From the caller's join to the greeting's first word at the caller's ear (the agent's first "
                   "speech, before the caller's first line); exemplars open the call.",
                   [prom(quantile(0.5, GREETING_TTFW), "p50", ref="A", latency=True),
                    prom(quantile(0.95, GREETING_TTFW), "p95", ref="B", latency=True)],
                   unit="s", w=12, interval="1m"),
        timeseries("The greeting: p50 by part (stacked)",
                   "The greeting's wait cut into parts that add up to it: call_setup (the caller joined until the "
                   "agent's session ran: dispatch, connect, the entrypoint), then the reply's parts as in a turn.",
                   [prom(quantile(0.5, GREETING_SEGMENTS, SEGMENT), f"{{{{{SEGMENT}}}}}", latency=True)],
                   unit="s", w=12, stacked=True, interval="1m"),
        timeseries("Interruptions per minute by direction",
                   "Caller barge-ins (caller), the agent talking over the caller (agent) and false "
                   "interruptions LiveKit resumed from; the barge-in rate alert fires above 30 % of turns.",
                   [prom(f"sum by ({DIRECTION}, {KIND}) (rate({INTERRUPTIONS}[$__rate_interval])) * 60",
                         f"{{{{{DIRECTION}}}}} {{{{{KIND}}}}}")], unit="none", w=8, interval="1m"),
        timeseries("Time to yield after a barge-in p95",
                   "How fast the agent stops talking once the caller barges in (first word to the agent's "
                   "audio stopping).",
                   [prom(quantile(0.95, YIELD_TIME), "p95", latency=True)], unit="s", w=8, interval="1m"),
        timeseries("Budget breaches and data errors per minute",
                   "Latency budgets exceeded (voice.budget: the turn's time to first word, or a part) and "
                   "impossible durations kept out of every histogram (voxpulse.data.errors, by source).",
                   [prom(f"sum by ({BUDGET}) (rate({BUDGET_BREACHES}[$__rate_interval])) * 60",
                         f"budget {{{{{BUDGET}}}}}", ref="A"),
                    prom(f"sum by ({DATA_SOURCE}, {DATA_REASON}) (rate({DATA_ERRORS}[$__rate_interval])) * 60",
                         f"data error {{{{{DATA_SOURCE}}}}} {{{{{DATA_REASON}}}}}", ref="B")],
                   unit="none", w=8, interval="1m"),
        row("Agent insights"),
        timeseries("Verdicts per hour by judge and result",
                   "LiveKit Agents' judges (JudgeGroup) on each call, as the agent uploads them to the insights "
                   "receiver (LIVEKIT_OBSERVABILITY_URL): verdicts per hour by judge and result (pass, fail, "
                   "maybe); each call's verdict of a judge counted once. The console's calls list opens the calls.",
                   [prom(f"sum by ({JUDGE}, {VERDICT}) (rate({VERDICTS}[$__rate_interval])) * 3600",
                         f"{{{{{JUDGE}}}}} {{{{{VERDICT}}}}}")], unit="none", w=8, stacked=True, bars=True,
                   interval="1m"),
        timeseries("Failed share by judge (15 min)",
                   "The share of each judge's verdicts that are fail over 15 minutes; the judge alert fires above "
                   "20 % with at least 10 verdicts.",
                   [prom(f'sum by ({JUDGE}) (increase({VERDICTS}{{{VERDICT}="fail"}}[15m])) / '
                         f"sum by ({JUDGE}) (increase({VERDICTS}[15m]))", f"{{{{{JUDGE}}}}}")],
                   unit="percentunit", w=8, interval="1m"),
        timeseries("Outcomes per hour",
                   "The calls' outcomes as the agent reports them to the insights receiver (success, fail, ...).",
                   [prom(f"sum by ({INSIGHTS_OUTCOME}) (rate({OUTCOMES}[$__rate_interval])) * 3600",
                         f"{{{{{INSIGHTS_OUTCOME}}}}}")], unit="none", w=8, stacked=True, bars=True, interval="1m"),
        row("Latency breakdown"),
        stage_breakdown(0.95, "15s", stacked=False),
        timeseries("Time to first chunk by stage p95", "Time to first token (LLM), first byte (TTS) or "
                   "first transcript (STT); exemplars open the request's trace.",
                   [prom(quantile(0.95, TTFC, STAGE), f"{{{{{STAGE}}}}}", latency=True)], unit="s",
                   interval="15s"),
    ]
    return dashboard("voxpulse-voice-quality", "VoxPulse / Voice quality",
                     "Time to first word (hero and trend), where the time goes (the parts of a turn), "
                     "interruptions, packet loss, jitter, RTT, the agent's judges and outcomes, and the latency "
                     "breakdown by stage.", "15s", panels,
                     tags=("latency",))


def agent_performance() -> dict[str, Any]:
    panels = [
        row("Overview"),
        stat("Average response latency", "Mean time to first word over 5 minutes, ms.",
             [prom(f"1000 * sum(rate({TTFW}_sum[5m])) / sum(rate({TTFW}_count[5m]))", "avg",
                   latency=True, instant=True)], unit="ms", w=6,
             steps=thresholds((None, "green"), (1500, "orange"), (3000, "red"))),
        stat("Turns per minute", "Caller turns answered per minute (turn spans).",
             [prom(f'sum(rate({SPAN_CALLS}{{{STAGE}="turn"}}[$__rate_interval])) * 60', "turns/min")],
             unit="none", w=6, decimals=1),
        stat("Turns with tool calls", "Share of turns in which the agent called at least one tool "
             "(call history).",
             [sql("turns_with_tool_calls")], unit="percent", w=6, datasource=PG, decimals=1),
        stat("Cost per call", f"Mean cost of a finished call ({CALL_COST}), USD.",
             [prom(f"sum(rate({CALL_COST}_sum[$__rate_interval])) / sum(rate({CALL_COST}_count"
                   "[$__rate_interval]))", "USD per call")], unit="currencyUSD", w=6, decimals=3),
        row("Latency"),
        timeseries("Latency stack (mean per stage)", "Mean span duration per stage, stacked (recorded "
                   f"{STAGE_MEAN_5M}).",
                   [prom(f"sum by ({STAGE}) ({STAGE_MEAN_5M}{STAGES})", f"{{{{{STAGE}}}}}", latency=True)],
                   unit="ms", stacked=True, interval="15s"),
        timeseries("Tool latency p95 by tool", "execute_tool span duration p95 per tool; exemplars open "
                   "the call.",
                   [prom(quantile(0.95, SPAN_MS, TOOL, f'{{{STAGE}="tool"}}'), f"{{{{{TOOL}}}}}", latency=True)],
                   unit="ms", interval="15s"),
        row("Tools and cost"),
        table("Top tools", "Most used tools with their success rate and mean duration (call history).",
              [sql("top_tools")], w=12, h=8),
        timeseries("Tool calls per minute", "Tool calls per minute by tool and status (span-derived).",
                   [prom(f'sum by ({TOOL}, {SPAN_STATUS}) (rate({SPAN_CALLS}{{{STAGE}="tool"}}'
                         '[$__rate_interval])) * 60', f"{{{{{TOOL}}}}} {{{{{SPAN_STATUS}}}}}")],
                   unit="none", interval="1m"),
        timeseries("API spend per hour", "Provider API spend by stage, provider and model, USD per hour.",
                   [prom(f"sum by ({STAGE}, {PROVIDER}, {MODEL}) (rate({API_SPEND}[$__rate_interval])) * 3600",
                         f"{{{{{STAGE}}}}} {{{{{PROVIDER}}}}} {{{{{MODEL}}}}}")],
                   unit="currencyUSD", stacked=True, interval="1m"),
        timeseries("LLM requests and errors", "LLM request spans per minute by model and status.",
                   [prom(f'sum by ({MODEL}, {SPAN_STATUS}) (rate({SPAN_CALLS}{{{STAGE}="llm"}}'
                         '[$__rate_interval])) * 60', f"{{{{{MODEL}}}}} {{{{{SPAN_STATUS}}}}}")],
                   unit="none", interval="1m"),
    ]
    return dashboard("voxpulse-agent-performance", "VoxPulse / Agent performance",
                     "Average latency, turns per minute, share of turns with tool calls, latency stack, "
                     "top tools and cost.", "15s", panels, tags=("latency", "cost"))


PERIOD_VAR = {
    "type": "custom", "name": "period", "label": "Period", "query": "day,week,month",
    "current": {"selected": True, "text": "day", "value": "day"},
    "options": [{"selected": v == "day", "text": v, "value": v} for v in ("day", "week", "month")],
    "hide": 0, "includeAll": False, "multi": False,
}


def analytics() -> dict[str, Any]:
    panels = [
        row("Totals"),
        stat("Calls", "Calls started in the selected time range.",
             [sql("calls")], unit="none",
             w=4, datasource=PG),
        stat("Resolved by bot", "Share of finished calls the bot resolved without an operator.",
             [sql("resolved_by_bot")], unit="percent", w=4,
             datasource=PG, decimals=1),
        stat("Average call cost", "Mean cost of finished calls, USD.",
             [sql("average_call_cost")],
             unit="currencyUSD", w=4, datasource=PG, decimals=3),
        stat("Average duration", "Mean duration of finished calls.",
             [sql("average_duration")],
             unit="s", w=4, datasource=PG),
        stat("Orders created", "Orders the bot created.",
             [sql("orders_created")], unit="none", w=4, datasource=PG),
        stat("Fitting bookings", "Tyre-fitting appointments the bot booked.",
             [sql("fitting_bookings")], unit="none", w=4, datasource=PG),
        row("Volume"),
        timeseries("Calls per $period", "Calls per day, week or month (variable period).",
                   [sql("calls_per_period", fmt="time_series")],
                   unit="none", bars=True, datasource=PG, interval="1m"),
        timeseries("Orders and fitting bookings per $period", "Orders created and fittings booked by the bot.",
                   [sql("orders_and_fitting_bookings_per_period", fmt="time_series")],
                   unit="none", bars=True, datasource=PG, interval="1m"),
        row("Outcomes"),
        piechart("Resolved by bot vs transferred", "Outcome of finished calls.",
                 [sql("resolved_by_bot_vs_transferred")]),
        piechart("Scenarios", "Detected scenario of each call.",
                 [sql("scenarios")]),
        table("Transfer reasons", "Why calls went to an operator.",
              [sql("transfer_reasons")],
              w=8, h=9),
        row("Cost and time of day"),
        timeseries("Average call cost per $period", "Mean cost of finished calls, USD.",
                   [sql("average_call_cost_per_period", fmt="time_series")],
                   unit="currencyUSD", datasource=PG, interval="1m"),
        panel("heatmap", "Calls by hour of day (UTC)", "Calls per day (x) and hour of day (y).",
              [sql("calls_by_hour_of_day_utc", fmt="time_series")],
              w=12, h=8, unit="none", datasource=PG, interval="1m",
              options={"calculate": False, "yAxis": {"axisPlacement": "left"},
                       "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                       "cellGap": 1, "tooltip": {"show": True, "yHistogram": False},
                       "legend": {"show": True}}),
    ]
    return dashboard("voxpulse-analytics", "VoxPulse / Analytics",
                     "Call history from PostgreSQL: volume, outcomes, scenarios, cost, time of day, "
                     "orders and fitting bookings.", "1m", panels, variables=[PERIOD_VAR],
                     time_from="now-30d", tags=("analytics",))


CALL_ID_VAR = {"type": "textbox", "name": "call_id", "label": "call_id", "query": "",
               "current": {"selected": False, "text": "", "value": ""}, "hide": 0}


def call_explorer(store: TraceStore) -> dict[str, Any]:
    call_links = [field_links("call_id", call_trace_links(store)), field_links("trace_id", trace_id_links(store))]
    panels = [
        row("Calls"),
        table("Recent calls", "Latest calls (filtered by the call_id box when set). Click a call_id to open "
              f"its trace in {store.title} ({store.language} by call_id) or to select it here.",
              [sql("recent_calls")],
              h=10, overrides=call_links),
        table("Slow calls", "Calls with the slowest turns (max time to first word); each opens its trace.",
              [sql("slow_calls")],
              w=12, h=9, overrides=call_links),
        table(f"Slow turns in {store.title}", f"Turns whose time to first word is at or over the objective "
              f"({Attr.TURN_SLOW} = true: VOXPULSE_TTFW_OBJECTIVE_S, default {TTFW_OBJECTIVE_S:g} s; "
              f"{store.language}); each row opens its trace.",
              [store.target(store.slow_turns_query())], w=12, h=9, datasource=store.ds),
        row("Selected call"),
        table("Trace of the selected call", "Every trace carrying span attribute call_id = $call_id.",
              [store.target(store.call_query("${call_id}"))], h=6, datasource=store.ds),
        table("Transcript", "The selected call's turns with per-stage latency (call_turns).",
              [sql("transcript")],
              w=14, h=12),
        table("Tool calls", "The selected call's tool calls with arguments and results (call_tool_calls).",
              [sql("tool_calls")],
              w=10, h=12),
    ]
    return dashboard("voxpulse-call-explorer", "VoxPulse / Call explorer",
                     f"Find a call by call_id, open its trace in {store.title}, read its transcript and tool "
                     "calls; slow calls link to their traces.", "1m", panels,
                     variables=[CALL_ID_VAR, *store_variables(store)],
                     time_from="now-24h", tags=("calls", "traces"))


DASHBOARDS: dict[str, Callable[[TraceStore], dict[str, Any]]] = {
    "realtime.json": realtime,
    "voice-quality.json": lambda _store: voice_quality(),
    "agent-performance.json": lambda _store: agent_performance(),
    "analytics.json": lambda _store: analytics(),
    "call-explorer.json": call_explorer,
}


def render() -> dict[str, str]:
    """``<trace store>/<file name>`` -> JSON text of every dashboard, for each trace store."""
    return {f"{store.kind}/{name}": json.dumps(build(store), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            for store in TRACE_STORES for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        path = OUT_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale dashboards (run python grafana/build_dashboards.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
