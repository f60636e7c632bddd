import { useEffect, useMemo, useState } from "preact/hooks";
import { getJson, type Meta } from "../api";
import { Chart, type Marker } from "../components/Chart";
import { fmtMs, fmtNum, fmtTime, outcomeLabel, stageLabel } from "../format";
import { t } from "../i18n";
import { navigate } from "../router";

interface Exemplar { t: number; value_ms: number; trace_id: string; stage: string }
interface LatencyData {
  window: string;
  start: number;
  end: number;
  objective_ms: number;
  quantiles?: Record<string, { p50?: number | null; p95?: number | null; p99?: number | null; count?: number | null }>;
  series?: { stage: string; points: [number, number | null][] }[];
  exemplars?: Exemplar[];
  slowest?: { call_id: string; started_at: number; outcome: string | null; scenario: string | null; trace_id: string | null; max_ttfw_ms: number; slow_turn: number }[];
  errors: Record<string, string>;
  queries: Record<string, string>;
}

export const STAGE_COLORS: Record<string, string> = {
  stt: "#0891b2", llm: "#7c3aed", tool: "#d97706", tts: "#059669", turn: "#2563eb", ttfw: "#dc2626",
};
const ROWS = ["ttfw", "stt", "first_chunk:stt", "llm", "first_chunk:llm", "tool", "tts", "first_chunk:tts", "turn"];

async function openTrace(traceId: string): Promise<void> {
  try {
    const r = await getJson<{ call_id: string | null; background?: string }>(`/api/traces/${traceId}/call`);
    if (!r.call_id) {
      alert(t("lat.background", { what: r.background || traceId }));
      return;
    }
    navigate(`/calls/${encodeURIComponent(r.call_id)}`);
  } catch (e) {
    alert(String((e as Error).message));
  }
}

export function Latency(props: { meta: Meta; query: URLSearchParams }) {
  const window_ = props.query.get("window") || "1h";
  const [data, setData] = useState<LatencyData | null>(null);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    setData(null);
    getJson<LatencyData>("/api/latency", { window: window_ }).then((d) => !stop && (setData(d), setErr(null)), (e) => !stop && setErr(String(e.message)));
    return () => { stop = true; };
  }, [window_]);
  const chart = useMemo(() => {
    if (!data?.series) return null;
    const stages = data.series.map((s) => s.stage);
    const xs = Array.from(new Set(data.series.flatMap((s) => s.points.map((p) => p[0])))).sort((a, b) => a - b);
    const cols = data.series.map((s) => { const m = new Map(s.points); return xs.map((x) => m.get(x) ?? null); });
    // the slowest exemplars and the latest ones (a fresh slow call is on the chart at once)
    const all = data.exemplars || [];
    const latest = [...all].sort((a, b) => b.t - a.t).slice(0, 100);
    const shown = Array.from(new Set([...all.slice(0, 300), ...latest]));
    const markers: Marker[] = shown.map((e, i) => ({
      x: e.t, y: e.value_ms, color: STAGE_COLORS[e.stage] || "#334155",
      label: t("lat.exemplar", { stage: stageLabel(e.stage), v: fmtMs(e.value_ms), t: fmtTime(e.t, false) }),
      onClick: () => void openTrace(e.trace_id), testid: `exemplar-${i}`, data: { traceId: e.trace_id, stage: e.stage },
    }));
    return {
      data: [xs, ...cols] as [number[], ...(number | null)[][]],
      series: stages.map((s) => ({ label: stageLabel(s), stroke: STAGE_COLORS[s] || "#334155", width: 2, spanGaps: true,
        value: (_u: unknown, v: number | null) => fmtMs(v) })),
      markers,
      hlines: [{ y: data.objective_ms, color: "#dc2626", label: `${t("stage.ttfw")} ${t("cv.objective")} ${fmtMs(data.objective_ms)}` }],
    };
  }, [data]);
  return (
    <div class="page latency">
      <h1>{t("lat.title")}</h1>
      <div class="segmented" role="group" aria-label={t("lat.window")}>
        {props.meta.windows.map((w) => (
          <a href={`/latency?window=${w}`} class="button" aria-current={w === window_ ? "true" : undefined}>{w}</a>
        ))}
      </div>
      {err && <p class="error" role="alert">{t("common.error", { e: err })}</p>}
      {!data && !err && <p class="muted">{t("common.loading")}</p>}
      {data && (
        <>
          {Object.entries(data.errors).map(([k, e]) => <p class="notice">{k}: {e}</p>)}
          <div class="grid-2 wide-left">
            <section class="card">
              {chart && chart.data[0].length > 0
                ? <Chart title={t("lat.chart")} data={chart.data} series={chart.series} markers={chart.markers} hlines={chart.hlines} yLabel="ms" height={320} xRange={[data.start, data.end]} />
                : <p class="muted">{t("ov.no_data")}</p>}
            </section>
            <section class="card">
              <table class="quantiles" data-testid="quantiles">
                <caption>{t("lat.window")}: {data.window}</caption>
                <thead><tr><th scope="col">{t("lat.stage")}</th><th scope="col" class="num">p50</th><th scope="col" class="num">p95</th><th scope="col" class="num">p99</th><th scope="col" class="num">{t("lat.count")}</th></tr></thead>
                <tbody>
                  {ROWS.filter((r) => data.quantiles?.[r]).map((r) => {
                    const q = data.quantiles![r];
                    const bad = (v?: number | null) => (r === "ttfw" && v != null && v > data.objective_ms ? "bad" : "");
                    return (
                      <tr data-stage={r}>
                        <th scope="row"><span class={`dot k-${r.replace("first_chunk:", "")}`} aria-hidden="true"></span>{stageLabel(r)}</th>
                        <td class={`num ${bad(q.p50)}`}>{fmtMs(q.p50)}</td><td class={`num ${bad(q.p95)}`}>{fmtMs(q.p95)}</td>
                        <td class={`num ${bad(q.p99)}`}>{fmtMs(q.p99)}</td><td class="num">{fmtNum(q.count)}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </section>
          </div>
          <div class="grid-2">
            <section class="card">
              <h2>{t("lat.slowest")}</h2>
              <table data-testid="slowest">
                <thead><tr><th scope="col">{t("calls.call")}</th><th scope="col">{t("calls.started")}</th><th scope="col">{t("calls.outcome")}</th><th scope="col" class="num">{t("calls.max_ttfw")}</th><th scope="col" class="num">{t("lat.turn")}</th></tr></thead>
                <tbody>
                  {(data.slowest || []).map((r) => (
                    <tr data-call-id={r.call_id}>
                      <td><a href={`/calls/${encodeURIComponent(r.call_id)}`} class="mono">{r.call_id}</a></td>
                      <td>{fmtTime(r.started_at)}</td><td>{outcomeLabel(r.outcome)}</td>
                      <td class={`num ${r.max_ttfw_ms > data.objective_ms ? "bad" : ""}`}>{fmtMs(r.max_ttfw_ms)}</td>
                      <td class="num">{r.slow_turn + 1}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
            <section class="card">
              <h2>{t("lat.exemplars")}</h2>
              {(data.exemplars || []).length === 0 ? <p class="muted">{t("lat.no_exemplars")}</p> : (
                <ul class="exemplar-list">
                  {(data.exemplars || []).slice(0, 10).map((e) => (
                    <li>
                      <button type="button" class="link" onClick={() => void openTrace(e.trace_id)} data-trace-id={e.trace_id}>
                        <span class={`dot k-${e.stage}`} aria-hidden="true"></span>{stageLabel(e.stage)} {fmtMs(e.value_ms)}
                      </button>
                      <span class="muted small"> {fmtTime(e.t, false)} · <span class="mono">{e.trace_id.slice(0, 12)}…</span></span>
                    </li>
                  ))}
                </ul>
              )}
            </section>
          </div>
        </>
      )}
    </div>
  );
}
