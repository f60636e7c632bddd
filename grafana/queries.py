"""Every panel query of the VoxPulse dashboards, with its datasource, ready to run against the stack.

    from grafana.queries import panel_queries, expand
    for q in panel_queries("jaeger"):
        print(q.dashboard, q.panel, q.language, expand(q, variables={"call_id": "abc"}))

``panel_queries(store)`` reads grafana/dashboards/<store>/*.json (the committed files; both sets
without ``store``). ``expand()`` replaces Grafana's variables and macros the way Grafana would
before sending the query, so PromQL goes to Prometheus's /api/v1/query, SQL to PostgreSQL and
TraceQL to Tempo's /api/search unchanged:

* PromQL: ``$__rate_interval``, ``$__interval``, ``$__range``;
* SQL: ``$__timeFilter(col)``, ``$__timeFrom()``, ``$__timeTo()``, ``${var:sqlstring}``, ``$period``;
* all: ``${call_id}`` / ``$call_id`` and other dashboard variables.

A Jaeger target (language ``jaeger``) is a search (service, operation, tags in logfmt, durations,
limit) or a trace id; ``jaeger_search(q, variables)`` turns it into the arguments of
``voxpulse_console.tracestore.JaegerTraceStore.search`` (the request Grafana's Jaeger data source
sends: ``GET /api/traces`` with the tags as JSON), or ``{"trace_id": ...}``.

``python grafana/queries.py`` prints them as JSON lines.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"

LANGUAGE = {"prometheus": "promql", "grafana-postgresql-datasource": "sql", "postgres": "sql",
            "tempo": "traceql", "jaeger": "jaeger"}
#: the fields of a Grafana Jaeger query that make its search (JaegerQuery in Grafana's data source)
JAEGER_FIELDS = ("queryType", "service", "operation", "tags", "minDuration", "maxDuration", "limit", "query")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # dashboard uid
    file: str  # <store>/<file name>
    panel_id: int
    panel: str  # panel title
    panel_type: str
    ref_id: str
    datasource_uid: str
    datasource_type: str
    language: str  # promql | sql | traceql | jaeger
    query: str  # as written in the dashboard (variables unexpanded); jaeger: JSON of JAEGER_FIELDS
    exemplar: bool = False
    instant: bool = False
    format: str = ""


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels") or [])


def _query(doc: dict[str, Any], file: str, p: dict[str, Any], t: dict[str, Any], ds: dict[str, Any],
           panel: str) -> PanelQuery:
    dtype = str(ds.get("type", ""))
    lang = LANGUAGE.get(dtype, dtype)
    if lang == "jaeger":
        text: Any = json.dumps({k: t[k] for k in JAEGER_FIELDS if k in t}, sort_keys=True)
    else:
        text = t.get("expr") if lang == "promql" else t.get("rawSql") if lang == "sql" else t.get("query")
    return PanelQuery(
        dashboard=str(doc.get("uid", "")), file=file, panel_id=int(p.get("id", 0)),
        panel=panel, panel_type=str(p.get("type", "")), ref_id=str(t.get("refId", "")),
        datasource_uid=str(ds.get("uid", "")), datasource_type=dtype, language=lang,
        query=str(text or ""), exemplar=bool(t.get("exemplar", False)),
        instant=bool(t.get("instant", False)), format=str(t.get("format", "")),
    )


def dashboard_queries(doc: dict[str, Any], file: str = "") -> list[PanelQuery]:
    out: list[PanelQuery] = []
    for p in iter_panels(doc.get("panels", [])):
        for t in p.get("targets") or []:
            ds = t.get("datasource") or p.get("datasource") or {}
            out.append(_query(doc, file, p, t, ds, str(p.get("title", ""))))
    return out


def dashboard_link_queries(doc: dict[str, Any], file: str = "") -> list[PanelQuery]:
    """The queries of the data links that open a data source in Explore (``internal`` links), e.g.
    a call_id cell's trace search; ``panel`` is "<panel title> / <field>: <link title>"."""
    out: list[PanelQuery] = []
    for p in iter_panels(doc.get("panels", [])):
        for override in (p.get("fieldConfig") or {}).get("overrides") or []:
            field = (override.get("matcher") or {}).get("options", "")
            for prop in override.get("properties") or []:
                for link in prop.get("value") or [] if prop.get("id") == "links" else []:
                    internal = link.get("internal")
                    if internal:
                        q = internal.get("query") or {}
                        ds = q.get("datasource") or {"uid": internal.get("datasourceUid", ""), "type": ""}
                        out.append(_query(doc, file, p, q, ds, f"{p.get('title', '')} / {field}: {link['title']}"))
    return out


def panel_queries(store: str | None = None, directory: Path = DASHBOARD_DIR) -> list[PanelQuery]:
    """The queries of the ``store`` set (tempo | jaeger), or of both sets."""
    out: list[PanelQuery] = []
    for f in sorted(directory.glob(f"{store or '*'}/*.json")):
        out.extend(dashboard_queries(json.loads(f.read_text(encoding="utf-8")), f"{f.parent.name}/{f.name}"))
    return out


def link_queries(store: str | None = None, directory: Path = DASHBOARD_DIR) -> list[PanelQuery]:
    """The data links' Explore queries of the ``store`` set, or of both sets."""
    out: list[PanelQuery] = []
    for f in sorted(directory.glob(f"{store or '*'}/*.json")):
        out.extend(dashboard_link_queries(json.loads(f.read_text(encoding="utf-8")), f"{f.parent.name}/{f.name}"))
    return out


_LOGFMT = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)$")
_DURATION_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def logfmt_tags(text: str) -> dict[str, str]:
    """Grafana's Jaeger tags field (logfmt: ``key=value key2="quoted value"``) as a dict."""
    out = {}
    for key, value in _LOGFMT.findall(text):
        if value.startswith('"'):
            value = json.loads(value)
        out[key] = value
    return out


def jaeger_search(q: PanelQuery, *, variables: dict[str, str] | None = None) -> dict[str, Any]:
    """A Jaeger panel query with its variables expanded, as keyword arguments of
    ``JaegerTraceStore.search`` (service, operation, tags, min_duration_ms, limit; the caller adds the
    time range), or ``{"trace_id": ...}`` for a trace-id query."""
    assert q.language == "jaeger", q
    fields: dict[str, Any] = json.loads(q.query)
    values = variables or {}

    def sub(text: str) -> str:
        text = re.sub(r"\$\{([\w.]+)(?::\w+)?\}", lambda m: values.get(m.group(1), m.group(0)), text)
        return re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), m.group(0)), text)

    if fields.get("queryType") != "search":
        return {"trace_id": sub(str(fields["query"]))}
    out: dict[str, Any] = {"service": sub(str(fields["service"])), "limit": int(fields.get("limit") or 20)}
    if fields.get("operation"):
        out["operation"] = sub(str(fields["operation"]))
    if fields.get("tags"):
        out["tags"] = logfmt_tags(sub(str(fields["tags"])))
    if fields.get("minDuration"):
        m = _DURATION.match(str(fields["minDuration"]))
        assert m, fields["minDuration"]
        out["min_duration_ms"] = float(m.group(1)) * _DURATION_MS[m.group(2)]
    return out


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand(q: PanelQuery, *, variables: dict[str, str] | None = None, rate_interval: str = "1m",
           interval: str = "15s", range_: str = "1h", start: dt.datetime | None = None,
           end: dt.datetime | None = None) -> str:
    """The query as Grafana would send it, for the given variables and time range."""
    end = end or dt.datetime.now(dt.UTC)
    start = start or end - dt.timedelta(hours=1)
    values = {"period": "day", "call_id": ""} | (variables or {})
    text = q.query
    if q.language == "promql":
        text = text.replace("$__rate_interval", rate_interval).replace("$__interval", interval)
        text = text.replace("$__range", range_)
    if q.language == "sql":
        lo, hi = _sql_literal(start.isoformat()), _sql_literal(end.isoformat())
        text = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {lo}::timestamptz AND {hi}::timestamptz", text)
        text = text.replace("$__timeFrom()", f"{lo}::timestamptz").replace("$__timeTo()", f"{hi}::timestamptz")
        text = re.sub(r"\$\{(\w+):sqlstring\}", lambda m: _sql_literal(values.get(m.group(1), "")), text)
    text = re.sub(r"\$\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), m.group(0)), text)
    text = re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), m.group(0)), text)
    return text


# ------------------------------------------------------------------------------- PromQL names

_FUNC_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                  "offset", "bool", "inf", "nan", "atan2"}


@dataclass(frozen=True)
class PromNames:
    metrics: frozenset[str]  # metric names selected
    selector_labels: tuple[tuple[str, str], ...]  # (metric or "", label) used in {...} matchers
    grouping_labels: frozenset[str]  # labels in by/without/on/ignoring/group_*


def promql_names(expr: str) -> PromNames:
    """Metric names and label names an expression uses (a small lexer, enough for our queries)."""
    selector_labels: list[tuple[str, str]] = []
    metrics: set[str] = set()

    def selector(m: re.Match[str]) -> str:
        name, body = m.group(1) or "", m.group(2)
        body = re.sub(r'"(?:[^"\\]|\\.)*"' + "|'(?:[^'\\\\]|\\\\.)*'", '""', body)
        for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body):
            if label == "__name__":
                continue
            selector_labels.append((name, label))
        if name:
            metrics.add(name)
        return " "

    text = re.sub(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}", selector, expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", text)
    grouping: set[str] = set()

    def group(m: re.Match[str]) -> str:
        grouping.update(x.strip() for x in m.group(2).split(",") if x.strip())
        return " "

    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", group, text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors and subqueries
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", text)
    for m in re.finditer(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _FUNC_KEYWORDS:
            continue
        metrics.add(word)
    return PromNames(frozenset(metrics), tuple(selector_labels), frozenset(grouping))


if __name__ == "__main__":
    for pq in panel_queries():
        sys.stdout.write(json.dumps(asdict(pq) | {"expanded": expand(pq)}, ensure_ascii=False) + "\n")
