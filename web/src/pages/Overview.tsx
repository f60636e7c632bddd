import { useEffect, useMemo, useState } from "preact/hooks";
import { getJson, type AlertRow, type Meta } from "../api";
import { Chart } from "../components/Chart";
import { fmtMs, fmtNum, fmtTime, fmtUsd, outcomeLabel, stageLabel } from "../format";
import { t } from "../i18n";
import * as live from "../live";

interface Query { language: string; query: string; params?: unknown[]; time?: number }
interface OverviewData {
  time: number;
  objective_ms: number;
  values: {
    active_calls?: number;
    calls_today?: number;
    cost_today_usd?: number;
    resolved_by_bot?: number;
    transferred?: number;
    transfers_by_reason?: Record<string, number>;
    outcomes_today?: { outcome: string; transfer_reason: string; calls: number }[];
    ttfw_p50_ms?: number | null;
    ttfw_p95_ms?: number | null;
    stage_p95_ms?: Record<string, number | null>;
    ttfw_trend?: { p50: [number, number | null][]; p95: [number, number | null][] };
    recent_alerts?: AlertRow[];
  };
  queries: Record<string, Query>;
  errors: Record<string, string>;
}

function Stat(props: { id: string; label: string; value: string; raw?: number | null; sub?: string; query?: Query; tone?: string }) {
  return (
    <section class={`stat ${props.tone || ""}`} data-stat={props.id} aria-label={props.label}>
      <h2>{props.label}</h2>
      <p class="stat-value" data-value={props.raw ?? ""}>{props.value}</p>
      {props.sub && <p class="stat-sub">{props.sub}</p>}
      {props.query && (
        <details class="query">
          <summary>{t("ov.query")} ({props.query.language === "sql" ? "SQL" : "PromQL"})</summary>
          <code>{props.query.query}</code>
        </details>
      )}
    </section>
  );
}

export function Overview(_props: { meta: Meta }) {
  const [data, setData] = useState<OverviewData | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let stop = false;
    getJson<OverviewData>("/api/overview").then((d) => !stop && (setData(d), setErr(null)), (e) => !stop && setErr(String(e.message)));
    return () => { stop = true; };
  }, [tick]);
  useEffect(() => {
    // a call started or ended, an alert arrived: the numbers change (one read per burst)
    let timer = 0;
    const bump = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => setTick((n) => n + 1), 300);
    };
    const offs = [live.on("call", bump), live.on("alert", bump), live.on("resync", bump)];
    return () => { offs.forEach((f) => f()); window.clearTimeout(timer); };
  }, []);
  const trend = data?.values.ttfw_trend;
  const chart = useMemo(() => {
    if (!trend || !trend.p95.some((p) => p[1] != null)) return null;
    const xs = trend.p95.map((p) => p[0]);
    const p50 = new Map(trend.p50.map((p) => [p[0], p[1]]));
    return {
      data: [xs, trend.p95.map((p) => p[1]), xs.map((x) => p50.get(x) ?? null)] as [number[], (number | null)[], (number | null)[]],
      series: [
        { label: "p95", stroke: "#4338ca", width: 2, value: (_u: unknown, v: number | null) => fmtMs(v) },
        { label: "p50", stroke: "#0891b2", width: 2, value: (_u: unknown, v: number | null) => fmtMs(v) },
      ],
      hlines: [{ y: data!.objective_ms, color: "#dc2626", label: t("ov.objective", { v: fmtMs(data!.objective_ms) }) }],
    };
  }, [trend]);
  if (err) return <p class="error">{t("common.error", { e: err })}</p>;
  if (!data) return <p class="muted">{t("common.loading")}</p>;
  const v = data.values;
  const q = data.queries;
  const today = v.calls_today ?? 0;
  const pct = (n?: number) => (today && n != null ? `${Math.round((n / today) * 100)} % ${t("ov.of")}` : undefined);
  const obj = data.objective_ms;
  const tone = (ms?: number | null) => (ms == null ? "" : ms > obj ? "bad" : ms > obj * 0.8 ? "warn" : "good");
  const stages = ["stt", "llm", "tool", "tts"];
  const stageMax = Math.max(1, ...stages.map((s) => v.stage_p95_ms?.[s] ?? 0));
  return (
    <div class="page overview">
      <h1>{t("ov.title")}</h1>
      <div class="stats">
        <Stat id="active_calls" label={t("ov.active")} value={fmtNum(v.active_calls)} raw={v.active_calls} query={q.active_calls} />
        <Stat id="calls_today" label={t("ov.today")} value={fmtNum(v.calls_today)} raw={v.calls_today} query={q.calls_today} />
        <Stat id="resolved_by_bot" label={t("ov.resolved")} value={fmtNum(v.resolved_by_bot)} raw={v.resolved_by_bot}
          sub={pct(v.resolved_by_bot)} query={q.outcomes_today} />
        <Stat id="transferred" label={t("ov.transferred")} value={fmtNum(v.transferred)} raw={v.transferred}
          sub={Object.entries(v.transfers_by_reason || {}).map(([r, n]) => `${r}: ${n}`).join(" · ") || pct(v.transferred)}
          query={q.outcomes_today} />
        <Stat id="ttfw_p50_ms" label={`${t("ov.ttfw")} p50`} value={fmtMs(v.ttfw_p50_ms)} raw={v.ttfw_p50_ms}
          tone={tone(v.ttfw_p50_ms)} query={q.ttfw_p50_ms} sub={t("ov.objective", { v: fmtMs(obj) })} />
        <Stat id="ttfw_p95_ms" label={`${t("ov.ttfw")} p95`} value={fmtMs(v.ttfw_p95_ms)} raw={v.ttfw_p95_ms}
          tone={tone(v.ttfw_p95_ms)} query={q.ttfw_p95_ms} sub={t("ov.objective", { v: fmtMs(obj) })} />
        <Stat id="cost_today_usd" label={t("ov.cost")} value={fmtUsd(v.cost_today_usd, 2)} raw={v.cost_today_usd} query={q.cost_today_usd} />
      </div>
      <div class="grid-2">
        <section class="card" aria-labelledby="stages-h" data-stat="stage_p95_ms">
          <h2 id="stages-h">{t("ov.stages")}</h2>
          <ul class="bars">
            {stages.map((s) => {
              const val = v.stage_p95_ms?.[s] ?? null;
              return (
                <li data-stage={s}>
                  <span class="bar-label">{stageLabel(s)}</span>
                  <span class="bar-track"><span class={`bar-fill k-${s}`} ref={(el) => { if (el) el.style.width = `${((val ?? 0) / stageMax) * 100}%`; }}></span></span>
                  <span class="bar-value" data-value={val ?? ""}>{val == null ? t("ov.no_data") : fmtMs(val)}</span>
                </li>
              );
            })}
          </ul>
          {q.stage_p95_ms && <details class="query"><summary>{t("ov.query")} (PromQL)</summary><code>{q.stage_p95_ms.query}</code></details>}
        </section>
        <section class="card" aria-labelledby="alerts-h">
          <h2 id="alerts-h">{t("ov.alerts")}</h2>
          {(v.recent_alerts || []).length === 0 ? <p class="muted">{t("ov.no_alerts")}</p> : (
            <ul class="alert-list">
              {(v.recent_alerts || []).map((a) => (
                <li class={`st-${a.status}`}>
                  <span class={`badge st-${a.status}`}>{a.status}</span>
                  <strong>{a.alertname}</strong> <span class="muted">{a.summary || a.message}</span>
                  <span class="muted small"> · {fmtTime(a.received_at)}</span>
                </li>
              ))}
            </ul>
          )}
          <a href="/alerts">{t("nav.alerts")} →</a>
        </section>
      </div>
      <section class="card">
        {chart ? <Chart title={t("ov.trend")} data={chart.data} series={chart.series} hlines={chart.hlines} yLabel="ms"
          xRange={[data.time - 6 * 3600, data.time]} /> :
          <p class="muted">{t("ov.trend")}: {t("ov.no_data")}</p>}
      </section>
      <section class="card outcomes">
        <h2>{t("ov.today")}</h2>
        <table>
          <caption class="sr-only">{t("ov.today")}</caption>
          <thead><tr><th scope="col">{t("calls.outcome")}</th><th scope="col">reason</th><th scope="col" class="num">{t("calls.title")}</th></tr></thead>
          <tbody>
            {(v.outcomes_today || []).map((o) => (
              <tr><td><span class={`badge o-${o.outcome}`}>{outcomeLabel(o.outcome)}</span></td><td>{o.transfer_reason || "—"}</td><td class="num">{o.calls}</td></tr>
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}
