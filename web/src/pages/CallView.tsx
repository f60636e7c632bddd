import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, getJson, type Meta } from "../api";
import { callUrl, takeReady } from "../prefetch";
import { InsightPills, type Insights, laneAt, RecordingTimeline } from "../components/Recording";
import { fmtDuration, fmtMs, fmtTime, fmtUsd, outcomeLabel, stageLabel } from "../format";
import { t } from "../i18n";
import * as live from "../live";

interface SpanRow {
  span_id: string;
  parent_id: string | null;
  name: string;
  kind: string;
  service: string;
  depth: number;
  start_ms: number;
  duration_ms: number;
  first_chunk_ms: number | null;
  error: boolean;
  attributes: Record<string, unknown>;
  more_attributes: string[];
  events: { t_ms: number; name: string }[];
}
interface Tool {
  name: string;
  tool_call_id: string | null;
  args: unknown;
  result: unknown;
  success: boolean | null;
  error: string | null;
  duration_ms: number | null;
  span_id: string | null;
  source: string;
}
interface Lane {
  key: string;
  index: number | null;
  start_ms: number;
  end_ms: number;
  user_text?: string;
  agent_text?: string;
  text_source?: string | null;
  ttfw_ms?: number | null;
  ttfw_over_objective?: boolean;
  greeting?: boolean; // the lane before the first turn holds the greeting: its anatomy and time to first word
  speech_end_ms?: number | null;
  first_audio_ms?: number | null;
  interrupted?: boolean;
  stats?: Record<string, number | null>;
  anatomy?: { segment: string; owner: string; what: string; ms: number }[];
  overlapped?: { segment: string; owner: string; what: string }[]; // measured, done in an earlier part's shadow
  named_share?: number | null;
  interruptions?: { t_ms: number; event: string; direction: string | null; kind: string | null; yield_ms: number | null }[];
  data_errors?: { span: string; source: string | null; reason: string | null; value: unknown }[];
  tools?: Tool[];
  spans: SpanRow[];
}
interface CallView {
  call: {
    call_id: string;
    trace_id: string | null;
    started_at: number | null;
    ended_at: number | null;
    duration_s: number | null;
    status: string | null;
    outcome: string | null;
    transfer_reason: string | null;
    scenario: string | null;
    direction: string | null;
    agent_version: string | null;
    cost_usd: number | null;
    cost_by_stage: Record<string, number> | null;
    caller: string | null;
    caller_masked: boolean;
    turns: number | null;
  };
  sources: { history: boolean; trace: boolean; history_error: string | null; trace_error: string | null };
  objective_ms: number;
  call_spans: SpanRow[];
  lanes: Lane[];
  other_tools: Tool[];
  span_count: number;
  links: { trace: string | null; logs: string | null };
  t0: number | null;
  insights: Insights | null;
}

const KINDS = ["speech", "stt", "llm", "tool", "tts", "playout", "turn", "other"];

function json(v: unknown): string {
  if (v == null) return "—";
  return typeof v === "string" ? v : JSON.stringify(v).replace(/,"/g, ', "').replace(/":/g, '": ');
}

function SpanAttributes(props: { callId: string; span: SpanRow }) {
  const s = props.span;
  const [full, setFull] = useState<Record<string, unknown> | null>(null);
  useEffect(() => {
    if (s.more_attributes.length === 0) return;
    getJson<{ attributes: Record<string, unknown> }>(`/api/calls/${encodeURIComponent(props.callId)}/spans/${s.span_id}`)
      .then((r) => setFull(r.attributes), () => undefined);
  }, [s.span_id]);
  const attrs = full || s.attributes;
  return (
    <div class="wf-attrs" role="region" aria-label={t("cv.attributes", { name: s.name })}>
      <dl>
        {Object.entries(attrs).map(([k, v]) => (<><dt>{k}</dt><dd>{json(v)}</dd></>))}
        {!full && s.more_attributes.map((k) => (<><dt>{k}</dt><dd class="muted">{t("common.loading")}</dd></>))}
        <dt>span_id</dt><dd class="mono">{s.span_id}</dd>
        {s.events.length > 0 && (<><dt>events</dt><dd>{s.events.map((e) => `${e.name} @${fmtMs(e.t_ms)}`).join(", ")}</dd></>)}
      </dl>
    </div>
  );
}

function Waterfall(props: { lane: Lane; objective: number; callId: string; onSeek?: (ms: number) => void }) {
  const { lane } = props;
  const [open, setOpen] = useState<string | null>(null);
  const t0 = lane.start_ms;
  const objectiveEnd = lane.speech_end_ms != null ? lane.speech_end_ms + props.objective : null;
  const end = Math.max(lane.end_ms, objectiveEnd ?? 0, lane.first_audio_ms ?? 0);
  const span = Math.max(1, end - t0);
  const pct = (ms: number) => `${Math.max(0, Math.min(100, ((ms - t0) / span) * 100))}%`;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => t0 + f * span);
  return (
    <div class="waterfall" data-testid="waterfall" data-lane={lane.key}>
      <div class="wf-axis" aria-hidden="true">
        <span class="wf-name"></span>
        <span class="wf-track">
          {ticks.map((x) => <span class="wf-tick" style={{ left: pct(x) }}>{fmtMs(x - t0)}</span>)}
        </span>
      </div>
      <div class="wf-rows">
        <div class="wf-overlay" aria-hidden="true">
          {lane.speech_end_ms != null && (
            <span class="wf-marker speech-end" style={{ left: pct(lane.speech_end_ms) }}><span>{t("cv.speech_end")}</span></span>
          )}
          {lane.first_audio_ms != null && (
            <span class={`wf-marker first-audio ${lane.ttfw_over_objective ? "bad" : ""}`} style={{ left: pct(lane.first_audio_ms) }}>
              <span>{t("cv.first_audio")}</span>
            </span>
          )}
          {lane.speech_end_ms != null && lane.first_audio_ms != null && (
            <span class={`wf-ttfw ${lane.ttfw_over_objective ? "bad" : ""}`}
              style={{ left: pct(lane.speech_end_ms), width: `calc(${pct(lane.first_audio_ms)} - ${pct(lane.speech_end_ms)})` }}>
              <span>TTFW {fmtMs(lane.ttfw_ms)}</span>
            </span>
          )}
          {(lane.interruptions || []).filter((i) => i.event === "interruption").map((i) => (
            <span class="wf-marker interruption" data-testid="interruption-marker" style={{ left: pct(i.t_ms) }}>
              <span>{i.direction === "agent" ? t("cv.agent_over_caller") : t("cv.barge_in")}</span>
            </span>
          ))}
          {objectiveEnd != null && (
            <span class="wf-marker objective" style={{ left: pct(objectiveEnd) }}><span>{t("cv.objective")} {fmtMs(props.objective)}</span></span>
          )}
        </div>
        {lane.spans.map((s) => (
          <div class={`wf-row ${s.error ? "err" : ""}`} data-span-id={s.span_id} data-span-name={s.name} data-kind={s.kind}>
            <button type="button" class="wf-name" style={{ paddingLeft: `${0.4 + s.depth * 0.9}rem` }}
              aria-expanded={open === s.span_id} onClick={() => setOpen(open === s.span_id ? null : s.span_id)}
              title={s.name}>
              <span class={`dot k-${s.kind}`} aria-hidden="true"></span>{s.name}
            </button>
            <span class="wf-track">
              <span class={`wf-bar k-${s.kind} ${props.onSeek ? "seekable" : ""}`} data-testid="span-bar" data-start-ms={s.start_ms}
                style={{ left: pct(s.start_ms), width: `max(2px, ${(s.duration_ms / span) * 100}%)` }}
                title={props.onSeek ? t("rec.seek") : undefined} onClick={props.onSeek ? () => props.onSeek!(s.start_ms) : undefined}>
                {s.first_chunk_ms != null && s.first_chunk_ms < s.duration_ms && (
                  <span class="wf-first" style={{ left: `${(s.first_chunk_ms / Math.max(1, s.duration_ms)) * 100}%` }}
                    title={`first chunk ${fmtMs(s.first_chunk_ms)}`}></span>
                )}
              </span>
              <span class="wf-dur" style={{ left: pct(s.start_ms + s.duration_ms) }}>
                {fmtMs(s.duration_ms)}{s.first_chunk_ms != null ? ` · ${s.kind === "llm" ? "TTFT" : s.kind === "tts" ? "TTFB" : "first"} ${fmtMs(s.first_chunk_ms)}` : ""}
              </span>
            </span>
            {open === s.span_id && <SpanAttributes callId={props.callId} span={s} />}
          </div>
        ))}
      </div>
    </div>
  );
}

/** The turn's time to first word in parts that add up to it, one stacked bar (telemetry.livekit._anatomy). */
function Anatomy(props: { lane: Lane }) {
  const parts = props.lane.anatomy || [];
  const total = parts.reduce((a, p) => a + p.ms, 0);
  if (parts.length === 0 || total <= 0) return null;
  return (
    <figure class="anatomy" data-testid="anatomy" data-total={total.toFixed(1)}>
      <figcaption class="muted small">{t("cv.anatomy", { ms: fmtMs(total) })}</figcaption>
      <div class="anatomy-bar" role="img" aria-label={parts.map((p) => `${p.segment} ${fmtMs(p.ms)}`).join(", ")}>
        {parts.map((p) => (
          <span class={`seg o-${p.owner}`} data-testid="segment" data-segment={p.segment} data-ms={p.ms}
            style={{ width: `${(p.ms / total) * 100}%` }} title={`${p.segment}: ${fmtMs(p.ms)} (${p.owner}: ${p.what})`}>
            {p.ms / total > 0.09 ? <span>{p.segment} {fmtMs(p.ms)}</span> : null}
          </span>
        ))}
      </div>
      {(props.lane.overlapped || []).length > 0 && (
        <p class="muted small" data-testid="overlapped">
          {t("cv.overlapped", { parts: (props.lane.overlapped || []).map((p) => p.segment).join(", ") })}
        </p>
      )}
    </figure>
  );
}

function TurnLane(props: { lane: Lane; objective: number; callId: string; playing: boolean; onSeek?: (ms: number) => void }) {
  const l = props.lane;
  const title = l.index != null ? t("cv.turn", { n: l.index + 1 }) : l.greeting ? t("cv.greeting")
    : l.key === "before" ? t("cv.before") : t("cv.after");
  const s = l.stats || {};
  return (
    <section class={`lane card ${props.playing ? "playing" : ""}`} data-testid="lane" data-lane={l.key} aria-label={title}
      data-playing={props.playing ? "true" : undefined} aria-current={props.playing ? "true" : undefined}>
      <header class="lane-head">
        <h2>{title}</h2>
        {props.onSeek && (
          <button type="button" class="ghost small-button" data-testid="lane-seek" onClick={() => props.onSeek!(l.start_ms)}>
            ▶ {t("rec.play_from")}
          </button>
        )}
        {l.ttfw_ms != null && (
          <span class={`pill ${l.ttfw_over_objective ? "bad" : "good"}`} data-testid="ttfw" data-value={l.ttfw_ms}>
            TTFW {fmtMs(l.ttfw_ms)} {l.ttfw_over_objective ? `> ${fmtMs(props.objective)}` : `≤ ${fmtMs(props.objective)}`}
          </span>
        )}
        {l.interrupted && <span class="pill warn">{t("cv.interrupted")}</span>}
        {(l.interruptions || []).filter((i) => i.event === "interruption").map((i) => (
          <span class="pill warn" data-testid="interruption" data-direction={i.direction} data-kind={i.kind}>
            {i.direction === "agent" ? t("cv.agent_over_caller") : i.kind === "false_interruption" ? t("cv.false_barge_in") : t("cv.barge_in")}
          </span>
        ))}
        {(l.interruptions || []).filter((i) => i.event === "interruption_yielded").map((i) => (
          <span class="pill" data-testid="yield">{t("cv.yielded", { ms: fmtMs(i.yield_ms) })}</span>
        ))}
        {(l.data_errors || []).map((e) => (
          <span class="pill bad" data-testid="data-error" title={`${e.span}: ${String(e.value)}`}>
            {t("cv.data_error")}: {e.source} ({e.reason})
          </span>
        ))}
        {l.index != null && (
          <span class="lane-stats muted small">
            STT {fmtMs(s.stt_ms)} · LLM TTFT {fmtMs(s.llm_ttft_ms)} · {t("stage.tool")} {fmtMs(s.tool_ms)} · TTS TTFB {fmtMs(s.tts_ttfb_ms)} · {t("stage.playout")} {fmtMs(s.playout_ms)}
          </span>
        )}
      </header>
      {(l.index != null || l.greeting) && <Anatomy lane={l} />}
      {l.index != null && (
        <div class="dialog">
          <div class="utter user" data-testid="user-text">
            <span class="who">{t("cv.caller_said")}</span>
            <p lang="uk">{l.user_text || "—"}</p>
          </div>
          <div class="utter agent" data-testid="agent-text">
            <span class="who">{t("cv.agent_said")}</span>
            <p lang="uk">{l.agent_text || "—"}</p>
          </div>
        </div>
      )}
      {(l.tools || []).length > 0 && (
        <div class="tools">
          <h3>{t("cv.tools")}</h3>
          <ul>
            {(l.tools || []).map((tool) => (
              <li class={tool.success === false ? "err" : ""} data-testid="tool">
                <span class="dot k-tool" aria-hidden="true"></span>
                <strong class="mono">{tool.name}</strong>
                <span class={`badge ${tool.success === false ? "err" : "ok"}`}>{tool.success === false ? t("cv.error") : t("cv.ok")}</span>
                <span class="muted small">{fmtMs(tool.duration_ms)}</span>
                <div class="kv"><span class="k">{t("cv.args")}</span><code>{json(tool.args)}</code></div>
                <div class="kv"><span class="k">{t("cv.result")}</span><code>{json(tool.result)}</code></div>
                {tool.error && <div class="kv"><span class="k">{t("cv.error")}</span><code>{tool.error}</code></div>}
              </li>
            ))}
          </ul>
        </div>
      )}
      {l.spans.length > 0 && <Waterfall lane={l} objective={props.objective} callId={props.callId} onSeek={props.onSeek} />}
    </section>
  );
}

export function CallViewPage(props: { meta: Meta; callId: string }) {
  // the call as prefetched when it is already in (the page's first render draws it whole), else fetched
  const [view, setView] = useState<CallView | null>(() => takeReady<CallView>(callUrl(props.callId)) ?? null);
  const [err, setErr] = useState<{ status: number; msg: string } | null>(null);
  const [tick, setTick] = useState(0);
  const audioRef = useRef<HTMLAudioElement>(null);
  const [current, setCurrent] = useState<string | null>(null);
  const fromPrefetch = useRef(view != null);
  useEffect(() => {
    if (fromPrefetch.current) {
      fromPrefetch.current = false;
      return;
    }
    let stop = false;
    getJson<CallView>(callUrl(props.callId)).then(
      (v) => { if (!stop) { setView(v); setErr(null); } },
      (e: ApiError) => { if (!stop) setErr({ status: e.status, msg: e.message }); },
    );
    return () => { stop = true; };
  }, [props.callId, tick]);
  useEffect(() => live.on("call", (row) => { if (row.call_id === props.callId) setTick((n) => n + 1); }), [props.callId]);
  if (err) return (
    <div class="page"><a href="/calls">{t("cv.back")}</a>
      <p class="error" role="alert" data-testid="call-error">{err.status === 404 ? t("cv.not_found") : t("common.error", { e: err.msg })}</p>
    </div>
  );
  if (!view) return <p class="muted">{t("common.loading")}</p>;
  const c = view.call;
  const ins = view.insights;
  const offset = ins ? ins.audio.offset_ms || 0 : 0;
  const seek = ins && ins.audio.url ? (ms: number) => {
    const audio = audioRef.current;
    if (!audio) return;
    audio.currentTime = Math.max(0, (ms - offset) / 1000);
    setCurrent(laneAt(view.lanes, Math.max(ms, offset)));
  } : undefined;
  const cost = c.cost_by_stage;
  const costTotal = cost ? Object.values(cost).reduce((a, b) => a + b, 0) : 0;
  return (
    <div class="page callview" data-testid="callview" data-call-id={c.call_id}>
      <a href="/calls">{t("cv.back")}</a>
      <header class="call-head card">
        <div class="call-title">
          <h1>{t("cv.title", { id: "" })}<span class="mono">{c.call_id}</span></h1>
          {c.status === "active"
            ? <span class="badge o-active">● {t("status.active")}</span>
            : <span class={`badge o-${c.outcome}`} data-testid="outcome">{outcomeLabel(c.outcome)}</span>}
          {c.transfer_reason && <span class="muted">{c.transfer_reason}</span>}
        </div>
        {ins && <InsightPills ins={ins} />}
        <dl class="facts">
          <div><dt>{t("cv.started")}</dt><dd>{fmtTime(c.started_at)}</dd></div>
          <div><dt>{t("cv.ended")}</dt><dd>{fmtTime(c.ended_at)}</dd></div>
          <div><dt>{t("cv.duration")}</dt><dd>{fmtDuration(c.duration_s)}</dd></div>
          <div><dt>{t("cv.scenario")}</dt><dd>{c.scenario || "—"}</dd></div>
          <div><dt>{t("cv.caller")}</dt><dd class="mono" data-testid="caller">{c.caller || "—"}{c.caller && c.caller_masked ? <span class="muted small"> ({t("cv.masked")})</span> : null}</dd></div>
          <div><dt>{t("cv.turns")}</dt><dd>{c.turns ?? "—"}</dd></div>
          <div><dt>{t("cv.cost")}</dt><dd>{fmtUsd(c.cost_usd)}</dd></div>
          <div><dt>trace</dt><dd class="mono small">{c.trace_id || "—"}</dd></div>
        </dl>
        {cost && costTotal > 0 && (
          <div class="cost-split" aria-label={`${t("cv.cost")} ${t("cv.cost_split")}`}>
            <span class="muted small">{t("cv.cost_split")}</span>
            <div class="stack-bar">
              {Object.entries(cost).map(([k, v]) => <span class={`k-${k}`} style={{ width: `${(v / costTotal) * 100}%` }} title={`${stageLabel(k)} ${fmtUsd(v, 5)}`}></span>)}
            </div>
            <span class="small">{Object.entries(cost).map(([k, v]) => `${stageLabel(k)} ${fmtUsd(v, 5)}`).join(" · ")}</span>
          </div>
        )}
        <div class="links">
          {view.links.trace ? <a href={view.links.trace} target="_blank" rel="noopener noreferrer" data-external data-testid="trace-link">{t("cv.trace")} ↗</a> : null}
          {view.links.logs ? <a href={view.links.logs} target="_blank" rel="noopener noreferrer" data-external>{t("cv.logs")} ↗</a>
            : <span class="muted small">{t("cv.no_logs")}</span>}
          <span class="muted small">{t("cv.spans", { n: view.span_count })}</span>
        </div>
      </header>
      {!view.sources.trace && <p class="notice" data-testid="source-notice" data-source="history-only">{t("cv.only_history", { e: view.sources.trace_error || "" })}</p>}
      {!view.sources.history && (ins
        ? <p class="notice" data-testid="source-notice" data-source="insights-only">{t("cv.only_insights")}</p>
        : <p class="notice" data-testid="source-notice" data-source="trace-only">{t("cv.only_trace", { e: view.sources.history_error || "" })}</p>)}
      {ins && (
        <RecordingTimeline ins={ins} lanes={view.lanes} callEndMs={c.duration_s != null ? c.duration_s * 1000 : null}
          objectiveMs={view.objective_ms} audioRef={audioRef} current={current}
          onSeek={(ms) => seek?.(ms)} onLane={setCurrent} />
      )}
      <div class="legend" aria-label={t("cv.legend")}>
        {KINDS.map((k) => <span><span class={`dot k-${k}`} aria-hidden="true"></span>{stageLabel(k)}</span>)}
        <span><span class="line objective" aria-hidden="true"></span>{t("cv.objective")} {fmtMs(view.objective_ms)}</span>
      </div>
      {view.lanes.map((l) => (
        <TurnLane lane={l} objective={view.objective_ms} callId={c.call_id} playing={current === l.key} onSeek={seek} />
      ))}
      {view.call_spans.length > 0 && (
        <details class="card call-spans">
          <summary>{t("cv.call_spans")} ({view.call_spans.length})</summary>
          <ul>{view.call_spans.map((s) => <li class="mono small" data-span-id={s.span_id}>{s.name} · {fmtMs(s.duration_ms)}</li>)}</ul>
        </details>
      )}
    </div>
  );
}
