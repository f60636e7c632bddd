// The console's JSON API: same-origin fetches with the session cookie; state changes carry the
// CSRF token. A 401 sends the browser to the login page.
import { fetchJson, takeEarly, takeReady } from "./prefetch";
import { leave } from "./router";

let csrf = "";

export class ApiError extends Error {
  constructor(public status: number, message: string, public body: unknown = null) {
    super(message);
  }
}

export function setCsrf(token: string): void {
  csrf = token;
}

function toLogin(): void {
  const next = location.pathname + location.search;
  leave(`/login?next=${encodeURIComponent(next)}`);
}

export async function getJson<T>(path: string, params?: Record<string, string | undefined>): Promise<T> {
  let url = path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  const parsed = takeReady<T>(url);
  if (parsed !== undefined) return parsed;  // asked for as the page started, and already in
  const ask = () => fetchJson(url);
  const early = takeEarly(url);
  const r = await (early ? early.catch(ask) : ask());  // asked for early and failed: asked again
  if (r.status === 401) {
    toLogin();
    throw new ApiError(401, "login required");
  }
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, (body && (body as { error?: string }).error) || r.statusText, body);
  return body as T;
}

export async function postJson<T>(path: string, data: unknown): Promise<T> {
  // a post as the page opens (a click on "log out" before the session's token was in) waits for it;
  // without a token the server refuses the post (403) and nothing happens
  if (!csrf) setCsrf((await getJson<{ csrf: string }>("/api/session")).csrf);
  const r = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(data),
  });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, (body && (body as { error?: string }).error) || r.statusText, body);
  return body as T;
}

export interface Source { ok: boolean; error?: string | null; url?: string; kind?: string | null }
export type Sources = Record<"db" | "prometheus" | "traces" | "live", Source>;

export interface Meta {
  user: string;
  can_view_pii: boolean;
  can_play_audio: boolean;
  objective_ms: number;
  timezone: string;
  windows: string[];
  filters: { scenario: string[]; outcome: string[]; judge: string[] };
  stages: string[];
  sources: Sources;
  trace_store: string | null;
}

export interface CallRow {
  call_id: string;
  started_at: number | null;
  ended_at: number | null;
  status: string | null;
  outcome: string | null;
  transfer_reason: string | null;
  scenario: string | null;
  direction: string | null;
  duration_s: number | null;
  cost_usd: number | null;
  turns: number | null;
  caller: string | null;
  trace_id: string | null;
  max_ttfw_ms: number | null;
  has_errors: boolean;
  // from the insights receiver (LiveKit's tagger and judges)
  tags: string[];
  insight_outcome: string | null;
  /** "insights": only the insights receiver knows this call (an agent without VoxPulse) */
  source?: "history" | "insights";
  failed_judges: string[];
  has_audio: boolean;
}

export interface AlertRow {
  id: number;
  alertname: string;
  severity: string | null;
  service: string | null;
  status: "firing" | "resolved";
  message: string;
  summary: string | null;
  labels: Record<string, string>;
  starts_at: number | null;
  resolved_at: number | null;
  received_at: number | null;
  generator_url: string | null;
  op?: string;
}
