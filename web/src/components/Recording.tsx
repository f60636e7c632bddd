// Agent insights on the call page: the tags, outcome and judges' verdicts as pills, and the call's
// recording under the turns on the call's own time axis (ms from the call view's t0): the turns as
// bars, the waveform decoded in the browser (WebAudio decodeAudioData; Chromium decodes Ogg Opus), one
// lane per channel (LiveKit's recorder: the caller on the first, the agent on the second), the
// time-to-first-word gaps and barge-ins marked on it, and an <audio> player whose position is a
// playhead on the same axis. The server streams the file with Range support, so seeking is cheap.
import type { RefObject } from "preact";
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { fmtMs } from "../format";
import { takeEarly, takeReady } from "../prefetch";
import { t } from "../i18n";

export interface Insights {
  tags: { name: string; metadata: unknown }[];
  outcome: string | null;
  outcome_reason: string | null;
  verdicts: { judge: string; result: string | null; reason: string | null }[];
  agent_name: string | null;
  sdk_version: string | null;
  simulated: boolean;
  /** LiveKit's chat history, what was said aloud (masked unless the user may see personal data) */
  transcript: TranscriptLine[];
  audio: {
    state: "present" | "broken" | "missing" | "dropped" | "none";
    problem: string | null;
    bytes: number;
    duration_s: number | null;
    started_at: number | null;
    offset_ms: number;
    channels: string[];
    allowed: boolean;
    url: string | null;
    /** the peaks the receiver kept; a 404 for an older recording (then the page decodes the audio) */
    waveform_url?: string | null;
  };
}

export interface TranscriptLine {
  role: "user" | "assistant";
  text: string;
  at: number | null;
  /** on the call's time axis */
  offset_ms: number | null;
  interrupted: boolean;
}

/** The line being heard at call-axis time `ms`: the last one said at or before it. */
export function lineAt(lines: TranscriptLine[], ms: number | null): number | null {
  if (ms == null) return null;
  let found: number | null = null;
  lines.forEach((l, i) => { if (l.offset_ms != null && l.offset_ms <= ms) found = i; });
  return found;
}

/** What the timeline needs of a lane (CallView's Lane). */
export interface TimelineLane {
  key: string;
  index: number | null;
  start_ms: number;
  end_ms: number;
  speech_end_ms?: number | null;
  first_audio_ms?: number | null;
  ttfw_ms?: number | null;
  ttfw_over_objective?: boolean;
  interruptions?: { t_ms: number; event: string; direction: string | null }[];
}

function verdictClass(result: string | null): string {
  return result === "pass" ? "good" : result === "fail" ? "bad" : "warn";
}

export function laneTitle(l: TimelineLane): string {
  return l.index != null ? t("cv.turn", { n: l.index + 1 }) : l.key === "before" ? t("cv.before_short") : t("cv.after_short");
}

/** The lane the call-axis time `ms` falls in: the last lane started at or before it, while inside it or before the next. */
export function laneAt(lanes: TimelineLane[], ms: number | null): string | null {
  if (ms == null) return null;
  let found: TimelineLane | null = null;
  for (const l of lanes) if (l.start_ms <= ms) found = l;
  if (!found) return null;
  const next = lanes.find((l) => l.start_ms > found!.start_ms);
  return ms <= found.end_ms || (next && ms < next.start_ms) ? found.key : null;
}

export function InsightPills(props: { ins: Insights }) {
  const { ins } = props;
  return (
    <div class="insights" data-testid="insights" aria-label={t("ins.title")}>
      <div class="insight-pills">
        {ins.outcome && (
          <span class={`pill ${ins.outcome === "success" ? "good" : ins.outcome === "fail" ? "bad" : "warn"}`}
            data-testid="insight-outcome" data-value={ins.outcome} title={ins.outcome_reason || undefined}>
            {t("ins.outcome")}: {t(`ins.outcome.${ins.outcome}`)}
          </span>
        )}
        {ins.verdicts.map((v) => (
          <span class={`pill ${verdictClass(v.result)}`} data-testid="verdict" data-judge={v.judge} data-result={v.result ?? ""}
            title={v.reason || undefined}>
            {v.judge}: {t(`ins.verdict.${v.result ?? "none"}`)}
          </span>
        ))}
        {ins.tags.map((tag) => (
          <span class="pill tag" data-testid="tag" data-tag={tag.name} title={tag.metadata != null ? JSON.stringify(tag.metadata) : undefined}>
            #{tag.name}
          </span>
        ))}
      </div>
      {(ins.outcome_reason || ins.verdicts.some((v) => v.reason)) && (
        <ul class="verdict-reasons small">
          {ins.outcome_reason && <li><strong>{t("ins.outcome")}</strong>: {ins.outcome_reason}</li>}
          {ins.verdicts.filter((v) => v.reason).map((v) => (
            <li data-testid="verdict-reason" data-judge={v.judge}><strong>{v.judge}</strong> ({t(`ins.verdict.${v.result ?? "none"}`)}): {v.reason}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** the decoded audio's samples (full scale 1), or the kept peaks as they come (bytes, full scale 255) */
interface Decoded { channels: Float32Array[] | Uint8Array[]; full: number; rate: number; duration: number; from: "peaks" | "audio" }

/** waveform.json (voxpulse_console/insights/_waveform.py): per channel, base64 peaks 0-255 */
interface KeptWaveform { per_second: number; channels: number; seconds: number; peaks: string[] }

/** base64 to bytes: natively where the browser can (Uint8Array.fromBase64), else through atob */
function bytesOf(b64: string): Uint8Array {
  const native = Uint8Array as unknown as { fromBase64?: (s: string) => Uint8Array };
  if (typeof native.fromBase64 === "function") return native.fromBase64(b64);
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** The kept peaks as a recording of `per_second` samples a second: peaks() draws either the same way. */
function fromPeaks(w: KeptWaveform): Decoded | null {
  if (!w.peaks.length || !(w.per_second > 0)) return null;
  return { channels: w.peaks.map(bytesOf), full: 255, rate: w.per_second, duration: w.seconds, from: "peaks" };
}

/** Per-pixel peak (max |sample|, 0-1) of each channel over [axisStart, axisEnd] (ms on the call axis). */
function peaks(d: Decoded, width: number, offsetMs: number, axisStart: number, axisEnd: number): Float32Array[] {
  const span = Math.max(1, axisEnd - axisStart);
  return (d.channels as ArrayLike<number>[]).map((samples) => {
    const out = new Float32Array(width);
    for (let x = 0; x < width; x++) {
      const t0 = axisStart + (x / width) * span - offsetMs;
      const t1 = axisStart + ((x + 1) / width) * span - offsetMs;
      const a = Math.max(0, Math.floor((t0 / 1000) * d.rate));
      const b = Math.min(samples.length, Math.ceil((t1 / 1000) * d.rate));
      let m = 0;
      for (let i = a; i < b; i++) {
        const v = samples[i] < 0 ? -samples[i] : samples[i];
        if (v > m) m = v;
      }
      out[x] = m / d.full;
    }
    return out;
  });
}

function Wave(props: { samples: Float32Array[]; index: number; width: number; label: string; cls: string }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useLayoutEffect(() => {
    const c = ref.current;
    if (!c) return;
    const dpr = window.devicePixelRatio || 1;
    const h = 48;
    c.width = Math.round(props.width * dpr);
    c.height = h * dpr;
    const g = c.getContext("2d");
    if (!g) return;
    g.scale(dpr, dpr);
    g.clearRect(0, 0, props.width, h);
    g.fillStyle = getComputedStyle(c).color;
    const p = props.samples[props.index];
    let max = 0;
    for (const v of p) if (v > max) max = v;
    const scale = max > 0 ? (h / 2 - 1) / Math.max(max, 0.05) : 0;
    for (let x = 0; x < p.length; x++) {
      const a = Math.max(0.5, p[x] * scale);
      g.fillRect(x, h / 2 - a, 1, 2 * a);
    }
  }, [props.samples, props.width]);
  const p = props.samples[props.index];
  let loud = 0;
  for (const v of p) if (v > 0.02) loud++;
  return (
    <div class={`wv-lane ${props.cls}`} data-testid="wave-lane" data-channel={props.label} data-loud-px={loud}>
      <span class="wv-label">{t(`rec.channel.${props.label}`)}</span>
      <canvas ref={ref} class="wv-canvas" style={{ width: `${props.width}px`, height: "48px" }} aria-hidden="true"></canvas>
    </div>
  );
}

export function RecordingTimeline(props: {
  ins: Insights;
  lanes: TimelineLane[];
  callEndMs: number | null;
  objectiveMs: number;
  audioRef: RefObject<HTMLAudioElement | null>;
  current: string | null;
  onSeek: (ms: number) => void;
  /** the lane being heard changed (the page highlights it) */
  onLane: (key: string | null) => void;
}) {
  const { ins, lanes } = props;
  const a = ins.audio;
  const offset = a.offset_ms || 0;
  // the kept peaks as prefetched when they are already in: drawn with the page's first render
  const [decoded, setDecoded] = useState<Decoded | null>(() => {
    const w = a.url && a.waveform_url ? takeReady<KeptWaveform>(a.waveform_url) : undefined;
    return w ? fromPeaks(w) : null;
  });
  const [decodeError, setDecodeError] = useState<string | null>(null);
  const [width, setWidth] = useState(0);
  const [position, setPosition] = useState<number | null>(null);
  const trackRef = useRef<HTMLDivElement>(null);
  // read by the audio's event handlers, which outlive a render
  const lanesRef = useRef(lanes);
  lanesRef.current = lanes;
  const onLaneRef = useRef(props.onLane);
  onLaneRef.current = props.onLane;

  useEffect(() => {
    if (!a.url || decoded?.from === "peaks") return;
    let stop = false;
    setDecodeError(null);
    // the receiver's peaks first (a few kB, drawn at once); decoding the whole recording in the browser
    // takes seconds for a long call, so it is only the fallback for a recording kept without them
    const kept = a.waveform_url
      ? (takeEarly(a.waveform_url) ?? fetch(a.waveform_url, { credentials: "same-origin" }))
        .then((r) => (r.ok ? (r.json() as Promise<KeptWaveform>) : null))
        .then((w) => (w ? fromPeaks(w) : null))
        .catch(() => null)
      : Promise.resolve(null);
    kept
      .then((d) => d ?? fetch(a.url!, { credentials: "same-origin" })
        .then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); return r.arrayBuffer(); })
        .then((buf) => new OfflineAudioContext(1, 1, 48000).decodeAudioData(buf))
        .then((ab) => {
          const channels: Float32Array[] = [];
          for (let i = 0; i < ab.numberOfChannels; i++) channels.push(ab.getChannelData(i));
          return { channels, full: 1, rate: ab.sampleRate, duration: ab.duration, from: "audio" as const };
        }))
      .then((d) => { if (!stop) setDecoded(d); })
      .catch((e: unknown) => { if (!stop) setDecodeError(e instanceof Error ? e.message || e.name : String(e)); });
    return () => { stop = true; };
  }, [a.url, a.waveform_url]);

  // measured before the browser paints, so the waveform is drawn in the same frame as the page
  useLayoutEffect(() => {
    const el = trackRef.current;
    if (!el) return;
    const measure = () => setWidth(Math.max(50, Math.floor(el.clientWidth)));
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // the playhead: the audio's position on the call axis, every frame while playing
  useEffect(() => {
    const audio = props.audioRef.current;
    if (!audio) return;
    let raf = 0;
    let lastKey: string | null | undefined;
    const report = () => {
      const ms = offset + audio.currentTime * 1000;
      setPosition(ms);
      const key = laneAt(lanesRef.current, ms);
      if (key !== lastKey) { lastKey = key; onLaneRef.current(key); }
    };
    const frame = () => { report(); raf = requestAnimationFrame(frame); };
    const onPlay = () => { cancelAnimationFrame(raf); raf = requestAnimationFrame(frame); };
    const onStop = () => { cancelAnimationFrame(raf); report(); };
    audio.addEventListener("play", onPlay);
    audio.addEventListener("pause", onStop);
    audio.addEventListener("ended", onStop);
    audio.addEventListener("seeked", report);
    audio.addEventListener("timeupdate", report);
    return () => {
      cancelAnimationFrame(raf);
      audio.removeEventListener("play", onPlay);
      audio.removeEventListener("pause", onStop);
      audio.removeEventListener("ended", onStop);
      audio.removeEventListener("seeked", report);
      audio.removeEventListener("timeupdate", report);
    };
  }, [a.url, offset]);

  const audioMs = (decoded ? decoded.duration : a.duration_s ?? 0) * 1000;
  const laneEnd = lanes.reduce((m, l) => Math.max(m, l.end_ms, l.first_audio_ms ?? 0), 0);
  const axisStart = Math.min(0, offset);
  const axisEnd = Math.max(laneEnd, props.callEndMs ?? 0, offset + audioMs, axisStart + 1000);
  const span = axisEnd - axisStart;
  const pct = (ms: number) => `${Math.max(0, Math.min(100, ((ms - axisStart) / span) * 100))}%`;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => axisStart + f * span);
  const wave = useMemo(() => (decoded && width > 0 ? peaks(decoded, width, offset, axisStart, axisEnd) : null),
    [decoded, width, offset, axisStart, axisEnd]);
  const names = decoded && decoded.channels.length >= 2 ? a.channels : ["mixed"];
  const clickSeek = (e: MouseEvent) => {
    const el = e.currentTarget as HTMLElement;
    const r = el.getBoundingClientRect();
    props.onSeek(axisStart + ((e.clientX - r.left) / Math.max(1, r.width)) * span);
  };
  const gaps = lanes.filter((l) => l.speech_end_ms != null && l.first_audio_ms != null);
  const barges = lanes.flatMap((l) => (l.interruptions || []).filter((i) => i.event === "interruption"));
  const playable = a.url != null;

  return (
    <section class="card recording" data-testid="recording" data-audio-state={a.state} data-offset-ms={offset}
      data-axis-start={axisStart} data-axis-end={axisEnd} aria-label={t("rec.title")}>
      <header class="lane-head">
        <h2>{t("rec.title")}</h2>
        <span class="muted small">{t("rec.axis")}</span>
        {(decoded || a.duration_s != null) && (
          <span class="muted small" data-testid="audio-length">{t("rec.length", { v: fmtMs((decoded ? decoded.duration : a.duration_s!) * 1000) })}</span>
        )}
      </header>
      {a.state === "broken" && <p class="notice bad-notice" data-testid="audio-broken">{t("rec.broken", { e: a.problem || "?" })}</p>}
      {a.state === "missing" && <p class="notice" data-testid="audio-missing">{t("rec.missing")}</p>}
      {a.state === "dropped" && <p class="notice" data-testid="audio-dropped">{t("rec.dropped")}</p>}
      {a.state === "none" && <p class="muted small" data-testid="audio-none">{t("rec.none")}</p>}
      {(a.state === "present" || a.state === "broken") && !a.allowed && (
        <p class="notice" data-testid="audio-forbidden">{t("rec.forbidden")}</p>
      )}
      {decodeError && <p class="notice bad-notice" data-testid="audio-decode-error">{t("rec.undecodable", { e: decodeError })}</p>}
      <div class="timeline">
        <div class="tl-row tl-axis" aria-hidden="true">
          <span class="tl-name"></span>
          <span class="tl-track">{ticks.map((x) => <span class="wf-tick" style={{ left: pct(x) }}>{fmtMs(x)}</span>)}</span>
        </div>
        {lanes.map((l) => (
          <div class={`tl-row ${props.current === l.key ? "current" : ""}`} data-testid="timeline-turn" data-turn={l.key}
            aria-current={props.current === l.key ? "true" : undefined}>
            <button type="button" class="tl-name" data-testid="seek-turn" data-turn={l.key} data-start-ms={l.start_ms}
              disabled={!playable} onClick={() => props.onSeek(l.start_ms)} title={t("rec.seek")}>
              {playable ? "▶ " : ""}{laneTitle(l)}
            </button>
            <span class="tl-track">
              <span class={`tl-bar ${l.index != null ? "k-turn" : "k-other"}`} style={{ left: pct(l.start_ms), width: `max(2px, calc(${pct(l.end_ms)} - ${pct(l.start_ms)}))` }}
                onClick={() => playable && props.onSeek(l.start_ms)}></span>
            </span>
          </div>
        ))}
        <div class="tl-row tl-wave">
          <span class="tl-name wv-names">{t("rec.waveform")}</span>
          <div class="tl-track wv-track" ref={trackRef} onClick={playable ? clickSeek : undefined} data-testid="waveform"
            data-channels={decoded ? decoded.channels.length : 0} data-decoded={decoded ? "true" : "false"}
            data-drawn-from={decoded ? decoded.from : ""}>
            {wave ? names.map((n, i) => <Wave samples={wave} index={i} width={width} label={n} cls={`ch-${n}`} />)
              : <div class="wv-empty muted small">{playable && !decodeError ? t("common.loading") : ""}</div>}
            <div class="wv-overlay" aria-hidden="true">
              {offset > axisStart && <span class="wv-before" style={{ left: "0", width: pct(offset) }} title={t("rec.not_recorded")}></span>}
              {gaps.map((l) => (
                <span class={`wv-gap ${l.ttfw_over_objective ? "bad" : ""}`} data-testid="wave-ttfw" data-turn={l.key}
                  style={{ left: pct(l.speech_end_ms!), width: `calc(${pct(l.first_audio_ms!)} - ${pct(l.speech_end_ms!)})` }}
                  title={`TTFW ${fmtMs(l.ttfw_ms)}`}><span>TTFW {fmtMs(l.ttfw_ms)}</span></span>
              ))}
              {barges.map((i) => (
                <span class="wf-marker interruption" data-testid="wave-barge-in" style={{ left: pct(i.t_ms) }}>
                  <span>{i.direction === "agent" ? t("cv.agent_over_caller") : t("cv.barge_in")}</span>
                </span>
              ))}
              {position != null && <span class="wv-playhead" data-testid="playhead" style={{ left: pct(position) }}></span>}
            </div>
          </div>
        </div>
      </div>
      {playable && (
        <audio ref={props.audioRef} class="player" data-testid="player" controls preload="metadata" src={a.url!}>
          {t("rec.no_player")}
        </audio>
      )}
      {ins.transcript.length > 0 && <Transcript lines={ins.transcript} heard={lineAt(ins.transcript, position)}
        onSeek={playable ? props.onSeek : null} />}
    </section>
  );
}

function Transcript(props: { lines: TranscriptLine[]; heard: number | null; onSeek: ((ms: number) => void) | null }) {
  return (
    <details class="transcript" open data-testid="transcript">
      <summary class="muted small">{t("rec.transcript")}</summary>
      <ol>
        {props.lines.map((l, i) => (
          <li class={`tr-line role-${l.role} ${props.heard === i ? "current" : ""}`} data-testid="transcript-line"
            data-role={l.role} data-offset-ms={l.offset_ms ?? ""} aria-current={props.heard === i ? "true" : undefined}>
            <button type="button" class="ghost small-button tr-at" disabled={!props.onSeek || l.offset_ms == null}
              onClick={() => l.offset_ms != null && props.onSeek?.(l.offset_ms)} title={t("rec.seek")}>
              {l.offset_ms != null ? fmtMs(l.offset_ms) : "—"}
            </button>
            <span class="tr-role">{t(`rec.role.${l.role}`)}</span>
            <span class="tr-text">{l.text}{l.interrupted ? " …" : ""}</span>
          </li>
        ))}
      </ol>
    </details>
  );
}
